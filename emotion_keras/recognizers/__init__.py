"""Recognisers: file in, emotions out. One per modality, all sharing the same result shape.

``RECOGNIZERS`` is the one task -> class map (a card's ``task`` names its recogniser); the classes are
imported on demand (:func:`emotion_keras.recognizers.base.recognizer_class`), so importing this
package stays free of Keras.
"""

RECOGNIZERS = {
    "face": ("emotion_keras.recognizers.face", "FaceEmotionRecognizer"),
    "speech": ("emotion_keras.recognizers.speech", "SpeechEmotionRecognizer"),
    "fusion": ("emotion_keras.recognizers.multimodal", "MultimodalEmotionRecognizer"),
}
