"""Evaluation: verification protocols and metrics."""

from keras_faceset.eval.lfw import embed_paths, evaluate_lfw, pair_scores
from keras_faceset.eval.verification import (
    best_threshold,
    eer,
    kfold_accuracy,
    roc_auc,
    roc_curve,
    tar_at_far,
    verification_report,
)

__all__ = [
    "best_threshold",
    "eer",
    "embed_paths",
    "evaluate_lfw",
    "kfold_accuracy",
    "pair_scores",
    "roc_auc",
    "roc_curve",
    "tar_at_far",
    "verification_report",
]
