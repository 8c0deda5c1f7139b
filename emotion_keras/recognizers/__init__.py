"""Recognisers: file in, emotions out. One per modality, all sharing the same result shape."""
