"""Converters: an original weights file -> Keras weights, with checks that every weight is used."""
