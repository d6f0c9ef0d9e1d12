"""Evaluation: verification (image and set pairs), identification, calibration, reports."""

from keras_faceset.eval.folder import evaluate_folder, folder_pairs
from keras_faceset.eval.identification import cmc_curve, identification_report
from keras_faceset.eval.lfw import embed_paths, evaluate_lfw, pair_scores
from keras_faceset.eval.sets import evaluate_lfw_sets
from keras_faceset.eval.verification import (
    best_threshold,
    calibrate,
    eer,
    kfold_accuracy,
    measurable_fars,
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
    "evaluate_folder",
    "evaluate_lfw",
    "evaluate_lfw_sets",
    "folder_pairs",
    "identification_report",
    "kfold_accuracy",
    "measurable_fars",
    "pair_scores",
    "roc_auc",
    "roc_curve",
    "tar_at_far",
    "threshold_at_far",
    "verification_report",
]
