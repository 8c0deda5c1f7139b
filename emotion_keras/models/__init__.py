"""Keras models and layers. Importing this package imports keras (set the backend first)."""
