"""Reports of set pairs on cached frame embeddings: a set head's verification on a protocol
variant (`keras_faceset.eval.protocol_cache`), the Spearman correlation of its frame weights
with the frames' degradation severity, and a one-line summary of a report."""

from __future__ import annotations

from collections.abc import Sequence

import keras
import numpy as np

from keras_faceset.eval.protocol_cache import head_features
from keras_faceset.eval.sets import set_verification, weight_severity_spearman
from keras_faceset.models.set_inference import head_sets, pad_sets

SIDES = ("rows_a", "rows_b")
SUMMARY_KEYS = ("accuracy", "auc", "tar@far=0.01", "tar@far=0.001")


def pairs_spearman(
    variant: dict, weights: Sequence[np.ndarray], masks: Sequence[np.ndarray]
) -> float:
    """`weight_severity_spearman` over both sides of the pairs of `variant` (its "rows_a" /
    "rows_b" sets and frame "severity"): `weights` and `masks` (N, T) per side."""
    rows = [pad_sets(variant[side])[0] for side in SIDES]
    width = max(part.shape[1] for part in rows)
    weights, masks, rows = (
        np.concatenate([np.pad(p, [(0, 0), (0, width - p.shape[1])]) for p in parts])
        for parts in (weights, masks, rows)
    )
    return weight_severity_spearman(weights, masks, variant["severity"][rows])


def head_report(head: keras.Model, variant: dict, spearman: bool = True) -> dict[str, float]:
    """`set_verification` of a set head's embeddings of the pairs of `variant` ("rows_a",
    "rows_b", "same", "fold": per-pair folds or a number of folds, and the frames'
    "embedding" and features), with ``"spearman"`` (`pairs_spearman` of the head's frame
    weights) unless `spearman` is False."""
    features = head_features(head, variant)
    sides = [head_sets(head, variant["embedding"], variant[side], features) for side in SIDES]
    report = set_verification(sides[0][0], sides[1][0], variant["same"], variant["fold"])
    if spearman:
        report["spearman"] = pairs_spearman(
            variant, [side[1] for side in sides], [side[2] for side in sides]
        )
    return report


def report_line(report: dict[str, float]) -> str:
    """``"accuracy 0.9512, auc 0.9906, tar@far=0.01 0.8700, tar@far=0.001 0.7900"``."""
    return ", ".join(f"{key} {report[key]:.4f}" for key in SUMMARY_KEYS)
