"""Metric-learning losses for face embeddings (triplet, contrastive, center, ...)."""

from keras_faceset.losses._validation import validate_labels
from keras_faceset.losses.center import CenterLoss, center_loss, updated_centers
from keras_faceset.losses.contrastive import ContrastiveLoss, contrastive_loss
from keras_faceset.losses.distances import paired_distance, pairwise_distance
from keras_faceset.losses.dsa import DSALoss, allowed_negatives, dsa_loss, sample_negative_mask
from keras_faceset.losses.lsr import LSRLoss, lsr_loss
from keras_faceset.losses.mining import identity_adjacency
from keras_faceset.losses.precision import GaussianPrecisionLoss, precision_nll
from keras_faceset.losses.triplet import TripletLoss, triplet_loss

__all__ = [
    "validate_labels",
    "pairwise_distance",
    "paired_distance",
    "identity_adjacency",
    "triplet_loss",
    "TripletLoss",
    "contrastive_loss",
    "ContrastiveLoss",
    "center_loss",
    "updated_centers",
    "CenterLoss",
    "dsa_loss",
    "sample_negative_mask",
    "allowed_negatives",
    "DSALoss",
    "lsr_loss",
    "LSRLoss",
    "precision_nll",
    "GaussianPrecisionLoss",
]
