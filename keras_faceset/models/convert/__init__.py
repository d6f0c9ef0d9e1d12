"""Converters: an original weights file -> Keras weights, with checks that every weight is used."""

from keras_faceset.models.convert.dlib_dat import convert_dlib_dat, read_dlib_dat
from keras_faceset.models.convert.facenet_h5 import convert_facenet_h5, read_facenet_h5

__all__ = ["convert_dlib_dat", "convert_facenet_h5", "read_dlib_dat", "read_facenet_h5"]
