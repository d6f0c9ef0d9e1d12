"""Datasets and input pipelines: LFW and LFW-sets protocols, folders, tf.data, degradations."""

from keras_faceset.data.degrade import random_degradation
from keras_faceset.data.folders import image_folder, set_folder
from keras_faceset.data.images import (
    CenterCropResize,
    center_crop_resize,
    image_dataset,
    load_image,
)
from keras_faceset.data.lfw import LFW
from keras_faceset.data.lfw_sets import load_protocol, make_lfw_sets
from keras_faceset.data.sets import embedding_set_dataset, padded_set_batches, pk_batches

__all__ = [
    "LFW",
    "CenterCropResize",
    "center_crop_resize",
    "embedding_set_dataset",
    "image_dataset",
    "image_folder",
    "load_image",
    "load_protocol",
    "make_lfw_sets",
    "padded_set_batches",
    "pk_batches",
    "random_degradation",
    "set_folder",
]
