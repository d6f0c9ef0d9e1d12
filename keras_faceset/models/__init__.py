"""Models: backbones (image -> embedding) and tasks (backbone + set head)."""

from keras_faceset.models.backbones import DlibResNet, InceptionResNetV1

__all__ = ["DlibResNet", "InceptionResNetV1"]
