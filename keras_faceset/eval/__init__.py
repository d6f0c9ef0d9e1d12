"""Evaluation: verification (image and set pairs), identification, calibration, reports."""

from keras_faceset.eval.identification import cmc_curve, identification_report
from keras_faceset.eval.lfw import embed_paths, evaluate_lfw, pair_scores
from keras_faceset.eval.verification import (
    best_threshold,
    calibrate,
    eer,
    kfold_accuracy,
    roc_auc,
    roc_curve,
    tar_at_far,
    threshold_at_far,
    verification_report,
)

__all__ = [
    "best_threshold",
    "calibrate",
    "cmc_curve",
    "eer",
    "embed_paths",
    "evaluate_lfw",
    "identification_report",
    "kfold_accuracy",
    "pair_scores",
    "roc_auc",
    "roc_curve",
    "tar_at_far",
    "threshold_at_far",
    "verification_report",
]
