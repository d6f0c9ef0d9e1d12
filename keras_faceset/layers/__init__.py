"""Layers: set aggregation (NAN, QAN, masked pooling), normalisation and margin heads."""

from keras_faceset.layers.attention import AttentionAggregation
from keras_faceset.layers.margins import (
    ArcFace,
    CosFace,
    L2SphereFace,
    NormalizedSoftmax,
    SphereFace,
)
from keras_faceset.layers.normalize import L2Normalize
from keras_faceset.layers.pooling import MaskedMaxPooling, MaskedMeanPooling
from keras_faceset.layers.quality import QualityHead, QualityPooling, TextureStatistics

__all__ = [
    "AttentionAggregation",
    "L2Normalize",
    "MaskedMaxPooling",
    "MaskedMeanPooling",
    "QualityHead",
    "QualityPooling",
    "TextureStatistics",
    "ArcFace",
    "CosFace",
    "L2SphereFace",
    "NormalizedSoftmax",
    "SphereFace",
]
