"""Verification metrics on pair scores (NumPy only).

Every function takes one score per pair and a boolean label per pair (True = same identity).
Scores are similarities (higher = more likely the same person) unless `higher_is_same=False`,
in which case they are distances. Internally distances are negated, so one decision rule holds
everywhere: a pair is declared *same* iff ``score >= threshold`` (similarities) or
``distance <= threshold`` (distances). Thresholds are always returned in the caller's units.

The functions only see scores, so they serve image pairs and set (template) pairs alike.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

TAR_FARS = (1e-1, 1e-2, 1e-3)
CALIBRATION_FARS = (1e-2, 1e-3, 1e-4)


class KFoldAccuracy(NamedTuple):
    """Result of `kfold_accuracy`: mean and population std over folds, and each fold's values."""

    mean: float
    std: float
    accuracies: np.ndarray
    thresholds: np.ndarray


def _check(scores, labels, higher_is_same: bool) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 similarity scores (distances negated) and boolean labels."""
    scores = np.asarray(scores)
    labels = np.asarray(labels)
    if scores.ndim != 1 or labels.ndim != 1:
        raise ValueError(
            f"scores and labels must be 1-D, got shapes {scores.shape} and {labels.shape}"
        )
    if scores.shape != labels.shape:
        raise ValueError(f"scores ({len(scores)}) and labels ({len(labels)}) differ in length")
    if scores.size == 0:
        raise ValueError("scores are empty")
    if scores.dtype.kind not in "iuf":
        raise ValueError(f"scores must be real numbers, got dtype {scores.dtype}")
    scores = scores.astype(np.float64)
    if not np.all(np.isfinite(scores)):
        raise ValueError("scores contain NaN or infinite values")
    if labels.dtype != bool:
        if not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be bool or integer 0/1, got dtype {labels.dtype}")
        if not np.isin(labels, (0, 1)).all():
            raise ValueError("integer labels must be 0 (different) or 1 (same)")
        labels = labels.astype(bool)
    return (scores if higher_is_same else -scores), labels


def _both_classes(labels: np.ndarray) -> None:
    if labels.all() or not labels.any():
        raise ValueError("labels must contain both same (1) and different (0) pairs")


def _units(threshold: float | np.ndarray, higher_is_same: bool):
    """Map a threshold on internal (similarity) scores back to the caller's units."""
    return threshold if higher_is_same else -threshold


def _roc(scores: np.ndarray, labels: np.ndarray):
    """(fpr, tpr, thresholds) on validated similarity scores; thresholds descending, +inf first."""
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_labels = scores[order], labels[order]
    # Last index of each run of equal scores: the ROC point after accepting that score.
    last = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    true_pos = np.cumsum(sorted_labels)[last]
    false_pos = (last + 1) - true_pos
    tpr = np.r_[0.0, true_pos / labels.sum()]
    fpr = np.r_[0.0, false_pos / (~labels).sum()]
    return fpr, tpr, np.r_[np.inf, sorted_scores[last]]


def roc_curve(scores, labels, higher_is_same: bool = True):
    """ROC curve: ``fpr[i], tpr[i]`` are the rates of declaring *same* at ``thresholds[i]``.

    One point per distinct score (like scikit-learn with ``drop_intermediate=False``), preceded
    by the point (0, 0) at threshold +inf (-inf for distances).
    """
    scores, labels = _check(scores, labels, higher_is_same)
    _both_classes(labels)
    fpr, tpr, thresholds = _roc(scores, labels)
    return fpr, tpr, _units(thresholds, higher_is_same)


def roc_auc(scores, labels, higher_is_same: bool = True) -> float:
    """Area under the ROC curve (trapezoidal, so tied scores count 1/2: Mann-Whitney U / PN)."""
    fpr, tpr, _ = roc_curve(scores, labels, higher_is_same)
    return float(np.sum(np.diff(fpr) * (tpr[1:] + tpr[:-1]) / 2))


def eer(scores, labels, higher_is_same: bool = True) -> float:
    """Equal error rate: where the ROC curve meets FAR = FRR, i.e. ``fpr = 1 - tpr``.

    The ROC points are joined by straight lines (as in FaceNet's ``brentq(1 - x - interp(x))``)
    and the crossing is solved exactly on the one segment where ``fpr + tpr - 1`` changes sign.
    """
    fpr, tpr, _ = roc_curve(scores, labels, higher_is_same)
    gap = fpr + tpr - 1.0  # -1 at (0, 0), +1 at (1, 1), non-decreasing along the curve
    i = int(np.argmax(gap >= 0))
    if gap[i] == 0:
        return float(fpr[i])
    t = -gap[i - 1] / (gap[i] - gap[i - 1])
    return float(fpr[i - 1] + t * (fpr[i] - fpr[i - 1]))


def tar_at_far(scores, labels, far: float, higher_is_same: bool = True) -> float:
    """Largest true accept rate among thresholds whose false accept rate is at most `far`.

    Thresholds range over the distinct scores (plus +inf); no interpolation between ROC points,
    so with N different pairs the achievable FAR values are multiples of 1/N (TAR is 0 when even
    the strictest distinct score exceeds `far`).
    """
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"far must be in [0, 1], got {far}")
    fpr, tpr, _ = roc_curve(scores, labels, higher_is_same)
    return float(tpr[fpr <= far].max())


def threshold_at_far(scores, labels, far: float, higher_is_same: bool = True) -> float:
    """The threshold of `tar_at_far`: declare *same* when score >= t (distance <= t for
    ``higher_is_same=False``). It is a measured score, so with N different pairs a `far` below
    1/N gives the strictest threshold, which accepts no different pair of the sample."""
    if not 0.0 <= far <= 1.0:
        raise ValueError(f"far must be in [0, 1], got {far}")
    fpr, _, thresholds = roc_curve(scores, labels, higher_is_same)
    return float(thresholds[np.flatnonzero(fpr <= far)[-1]])


def measurable_fars(num_different: int, fars=CALIBRATION_FARS) -> tuple[float, ...]:
    """The `fars` that `num_different` impostor pairs can measure: at least ``1 / far`` of them
    (one false accept at the threshold); below that a threshold only says "none of the sample"."""
    return tuple(far for far in fars if num_different * far >= 1 - 1e-9)


def calibrate(
    scores, labels, fars=CALIBRATION_FARS, higher_is_same: bool = False
) -> dict[str, float]:
    """Thresholds by false accept rate, ``{"1e-03": t, ...}``, fitted on labelled pairs (for
    distances by default, as `keras-faceset verify` compares cosine distances)."""
    return {f"{far:.0e}": threshold_at_far(scores, labels, far, higher_is_same) for far in fars}


def _accuracy_curve(scores: np.ndarray, labels: np.ndarray):
    """Candidate thresholds and the accuracy of each on validated similarity scores.

    Candidates: -inf (all same), the midpoints between consecutive distinct scores, +inf.
    """
    values, inverse = np.unique(scores, return_inverse=True)
    positives = np.bincount(inverse, weights=labels, minlength=values.size)
    negatives = np.bincount(inverse, weights=~labels, minlength=values.size)
    # Candidate k declares same every score above it: negatives below + positives above.
    neg_below = np.r_[0.0, np.cumsum(negatives)]
    pos_above = positives.sum() - np.r_[0.0, np.cumsum(positives)]
    middle = values[:-1] + (values[1:] - values[:-1]) / 2
    middle = np.where(middle > values[:-1], middle, values[1:])  # adjacent floats
    thresholds = np.r_[-np.inf, middle, np.inf]
    return thresholds, (neg_below + pos_above) / scores.size


def _best(scores: np.ndarray, labels: np.ndarray) -> tuple[float, float]:
    thresholds, accuracy = _accuracy_curve(scores, labels)
    tied = np.flatnonzero(accuracy == accuracy.max())
    k = tied[(tied.size - 1) // 2]
    return float(thresholds[k]), float(accuracy[k])


def _accuracy(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    return float(np.mean((scores >= threshold) == labels))


def best_threshold(scores, labels, higher_is_same: bool = True) -> tuple[float, float]:
    """(threshold, accuracy) maximising accuracy on these pairs.

    Candidates are -inf, the midpoints between consecutive distinct scores, and +inf; when
    several candidates reach the best accuracy the middle one is taken (the lower middle for an
    even count), which centres the threshold in a flat optimum.
    """
    scores, labels = _check(scores, labels, higher_is_same)
    threshold, accuracy = _best(scores, labels)
    return _units(threshold, higher_is_same), accuracy


def accuracy_at_threshold(scores, labels, threshold: float, higher_is_same: bool = True) -> float:
    """Fraction of pairs classified correctly by ``score >= threshold`` (distance <= threshold)."""
    scores, labels = _check(scores, labels, higher_is_same)
    return _accuracy(scores, labels, _units(threshold, higher_is_same))


def _fold_ids(folds, n: int) -> np.ndarray:
    if isinstance(folds, (int, np.integer)):
        if not 2 <= folds <= n:
            raise ValueError(f"number of folds must be in [2, {n}], got {folds}")
        # Contiguous blocks, the first n % folds one longer (sklearn KFold without shuffling).
        sizes = [len(block) for block in np.array_split(np.arange(n), folds)]
        return np.repeat(np.arange(folds), sizes)
    folds = np.asarray(folds)
    if folds.shape != (n,) or not np.issubdtype(folds.dtype, np.integer):
        raise ValueError(
            f"folds must be an int or {n} integer fold ids, "
            f"got {folds.dtype} of shape {folds.shape}"
        )
    if np.unique(folds).size < 2:
        raise ValueError("k-fold accuracy needs at least 2 distinct folds")
    return folds


def kfold_accuracy(scores, labels, folds=10, higher_is_same: bool = True) -> KFoldAccuracy:
    """The LFW protocol: each fold is scored at the `best_threshold` of the other folds.

    `folds` is either a fold id per pair (e.g. the ``fold`` column of `LFW.pairs`) or a number of
    contiguous folds. Returns the mean accuracy, its population standard deviation
    (``np.std``, as in FaceNet's ``evaluate``), and per fold the accuracy and the threshold.
    """
    scores, labels = _check(scores, labels, higher_is_same)
    fold_ids = _fold_ids(folds, scores.size)
    accuracies, thresholds = [], []
    for fold in np.unique(fold_ids):
        test = fold_ids == fold
        threshold, _ = _best(scores[~test], labels[~test])
        thresholds.append(threshold)
        accuracies.append(_accuracy(scores[test], labels[test], threshold))
    accuracies = np.asarray(accuracies)
    return KFoldAccuracy(
        float(accuracies.mean()),
        float(accuracies.std()),
        accuracies,
        _units(np.asarray(thresholds), higher_is_same),
    )


def verification_report(
    scores, labels, folds=10, higher_is_same: bool = True, threshold: float | None = None
) -> dict[str, float]:
    """Accuracy ± std, AUC, EER, TAR at FAR 1e-1/1e-2/1e-3 and a threshold, as one dict.

    Without `threshold`, accuracy and std come from `kfold_accuracy` over `folds` and
    ``threshold`` is the `best_threshold` on all pairs. With a `threshold` fixed elsewhere (e.g.
    on LFW View 1 DevTrain), accuracy is measured at it on all pairs and std is NaN.
    """
    auc = roc_auc(scores, labels, higher_is_same)  # validates first
    if threshold is None:
        kfold = kfold_accuracy(scores, labels, folds, higher_is_same)
        accuracy, std = kfold.mean, kfold.std
        threshold, _ = best_threshold(scores, labels, higher_is_same)
    else:
        accuracy = accuracy_at_threshold(scores, labels, threshold, higher_is_same)
        std = float("nan")
    report = {
        "accuracy": accuracy,
        "std": std,
        "auc": auc,
        "eer": eer(scores, labels, higher_is_same),
    }
    for far in TAR_FARS:
        report[f"tar@far={far:g}"] = tar_at_far(scores, labels, far, higher_is_same)
    report["threshold"] = float(threshold)
    return report
