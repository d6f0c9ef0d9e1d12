"""keras-faceset: face recognition on images and on sets of images with Keras 3."""

__version__ = "0.1.0"
