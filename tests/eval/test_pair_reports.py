"""keras_faceset.eval.pair_reports against direct computations."""

import keras
import numpy as np
from scipy.stats import spearmanr

from keras_faceset.eval.pair_reports import head_report, pairs_spearman, report_line
from keras_faceset.eval.sets import pool_sets, set_verification
from keras_faceset.models import head_sets, pad_sets
from keras_faceset.zoo import build_head


def variant(seed: int = 0) -> dict:
    """40 pairs of 1-5 frames over 120 frames of 20 people, sides of unequal widths."""
    rng = np.random.default_rng(seed)
    person = rng.integers(0, 20, 120)
    centres = rng.normal(size=(20, 128))
    severity = np.where(rng.random(120) < 0.5, 0.0, rng.uniform(0.3, 1.0, 120))
    embedding = centres[person] + rng.normal(size=(120, 128)) * (0.5 + severity[:, None])
    by_person = [np.flatnonzero(person == p) for p in range(20)]
    rows_a, rows_b, same = [], [], []
    for i in range(40):
        a = by_person[i % 20]
        b = a if i < 20 else by_person[(i + 1) % 20]
        rows_a.append(list(a[: 1 + i % 3]))
        rows_b.append(list(b[-(1 + i % 5) :]))
        same.append(i < 20)
    return {
        "rows_a": rows_a,
        "rows_b": rows_b,
        "same": np.array(same),
        "fold": np.arange(40) % 4,
        "embedding": embedding.astype(np.float32),
        "texture": rng.uniform(0, 2, (120, 448)).astype(np.float32),
        "pooled": rng.uniform(size=(120, 256)).astype(np.float32),
        "severity": severity,
    }


def test_pairs_spearman_pools_both_sides_frame_by_frame():
    v = variant()
    rng = np.random.default_rng(1)
    masks = [pad_sets(v[side])[1] for side in ("rows_a", "rows_b")]
    weights = [rng.uniform(size=m.shape) * m for m in masks]
    relative, severity = [], []  # every frame of every set of >= 2 frames, one by one
    for side, w in zip(("rows_a", "rows_b"), weights, strict=True):
        for rows, set_weights in zip(v[side], w, strict=True):
            if len(rows) >= 2:
                relative += list(set_weights[: len(rows)] * len(rows))
                severity += list(v["severity"][rows])
    expected = spearmanr(relative, severity).statistic
    np.testing.assert_allclose(pairs_spearman(v, weights, masks), expected, rtol=1e-12)


def test_mean_head_report_is_mean_pooling():
    v = variant()
    report = head_report(build_head("dlib_resnet"), v, spearman=False)
    mean = set_verification(
        pool_sets(v["embedding"], v["rows_a"]),
        pool_sets(v["embedding"], v["rows_b"]),
        v["same"],
        v["fold"],
    )
    assert report.keys() == mean.keys()
    for key in mean:
        np.testing.assert_allclose(report[key], mean[key], atol=1e-6)


def test_head_report_spearman_reads_the_heads_weights_and_features():
    keras.utils.set_random_seed(0)
    head = build_head("nan")
    v = variant()
    report = head_report(head, v)
    sides = [head_sets(head, v["embedding"], v[s], v["texture"]) for s in ("rows_a", "rows_b")]
    assert report["spearman"] == pairs_spearman(v, [s[1] for s in sides], [s[2] for s in sides])
    expected = set_verification(sides[0][0], sides[1][0], v["same"], v["fold"])
    assert {k: report[k] for k in expected} == expected


def test_report_line():
    report = {"accuracy": 0.95125, "auc": 0.99061, "tar@far=0.01": 0.87, "tar@far=0.001": 0.79}
    assert report_line(report) == (
        "accuracy 0.9513, auc 0.9906, tar@far=0.01 0.8700, tar@far=0.001 0.7900"
    )
