"""Metric-learning losses for face embeddings (triplet, contrastive, center, ...)."""

from keras_faceset.losses._validation import validate_labels
from keras_faceset.losses.distances import paired_distance, pairwise_distance

__all__ = [
    "validate_labels",
    "pairwise_distance",
    "paired_distance",
]
