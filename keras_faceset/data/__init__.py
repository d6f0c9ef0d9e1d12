"""Datasets and input pipelines."""

from keras_faceset.data.images import (
    CenterCropResize,
    center_crop_resize,
    image_dataset,
    load_image,
)
from keras_faceset.data.lfw import LFW

__all__ = ["LFW", "CenterCropResize", "center_crop_resize", "image_dataset", "load_image"]
