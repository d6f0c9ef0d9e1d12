"""Backbones: aligned face image -> frame embedding (+ the feature map before it)."""

from keras_faceset.models.backbones.dlib_resnet import DlibResNet
from keras_faceset.models.backbones.inception_resnet_v1 import InceptionResNetV1

__all__ = ["DlibResNet", "InceptionResNetV1"]
