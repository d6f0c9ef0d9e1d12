"""Face detection (MTCNN) and alignment: the crops the pretrained backbones were trained on."""

from keras_faceset.align.cache import ChipCache
from keras_faceset.align.crop import box_crop, centre_crop, crop_face, five_point_crop
from keras_faceset.align.detect import Detections, MtcnnDetector, select_face
from keras_faceset.align.pipeline import (
    AlignedBatch,
    FoundFaces,
    align_faces,
    crop_like,
    default_detector,
    find_faces,
    to_rgb_uint8,
)
from keras_faceset.align.spec import CropSpec
from keras_faceset.align.templates import (
    ARCFACE_112,
    DLIB_150,
    DLIB_WEIGHTS,
    arcface_template,
    dlib_template,
)
from keras_faceset.align.transform import apply_affine, invert_affine, umeyama, warp_affine
from keras_faceset.detect import LANDMARK_NAMES

__all__ = [
    "ARCFACE_112",
    "DLIB_150",
    "DLIB_WEIGHTS",
    "LANDMARK_NAMES",
    "AlignedBatch",
    "ChipCache",
    "CropSpec",
    "Detections",
    "FoundFaces",
    "MtcnnDetector",
    "align_faces",
    "apply_affine",
    "arcface_template",
    "box_crop",
    "centre_crop",
    "crop_face",
    "crop_like",
    "default_detector",
    "dlib_template",
    "find_faces",
    "five_point_crop",
    "invert_affine",
    "select_face",
    "to_rgb_uint8",
    "umeyama",
    "warp_affine",
]
