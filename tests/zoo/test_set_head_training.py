"""zoo/train_set_heads.py pieces: clean-only set sampling, the QAN quality anchor, epoch choice,
the LFW-sets-like held-out pairs."""

import sys

import keras
import numpy as np
import pytest

from tests.conftest import LFW_DIR, REPO, require

sys.path.insert(0, str(REPO / "zoo"))

import train_set_heads as training  # noqa: E402


def test_clean_sets_hold_only_clean_frames_and_default_stream_is_unchanged():
    frame_index = np.arange(30).reshape(10, 3)  # 10 images x (clean, 2 degraded)
    people = [np.arange(0, 5), np.arange(5, 10)]
    index, mask, labels = training.sample_sets(
        frame_index, people, 2, 20, np.random.default_rng(0), clean_sets=1.0
    )
    assert np.all(index[mask] % 3 == 0)  # version 0 rows only
    assert np.all(mask.sum(1) >= 1) and set(labels) == {0, 1}
    default = training.sample_sets(frame_index, people, 2, 5, np.random.default_rng(1))
    explicit = training.sample_sets(frame_index, people, 2, 5, np.random.default_rng(1), 0.0)
    for a, b in zip(default, explicit, strict=True):
        np.testing.assert_array_equal(a, b)
    assert np.any(default[0][default[1]] % 3 != 0)  # degraded frames drawn by default


def test_quality_anchor_is_a_hinge_on_the_best_frame():
    loss = training.quality_anchor(0.1)
    quality = np.array([[0.5, 0.01, 0.0], [0.02, 0.05, 0.0]], np.float32)
    out = keras.ops.convert_to_numpy(loss(None, quality))
    expected = np.maximum(0.0, np.log(0.1) - np.log(quality.max(1, keepdims=True) + 1e-7))
    np.testing.assert_allclose(out, np.broadcast_to(expected, quality.shape), rtol=1e-5)
    assert out[0].max() == 0 and out[1, 0] > 0.69


def test_select_epoch_prefers_clean_ok_epochs_then_degraded_score():
    base = {"auc": 0.99, "tar@far=0.01": 0.99, "tar@far=0.001": 0.95}

    def epoch(degraded_tar, clean_tar):
        return {
            "degraded": {**base, "tar@far=0.001": degraded_tar},
            "clean": {**base, "tar@far=0.001": clean_tar},
        }

    reports = [epoch(0.90, 0.95), epoch(0.95, 0.90), epoch(0.92, 0.948), epoch(0.92, 0.96)]
    assert training.select_epoch(reports, base) == 2  # epoch 1 fails clean; first of ties
    assert training.select_epoch([epoch(0.90, 0.5), epoch(0.80, 0.7)], base) == 1


def test_select_epoch_can_weigh_the_spearman():
    base = {"auc": 0.99, "tar@far=0.01": 0.99, "tar@far=0.001": 0.95}
    reports = [
        {"degraded": {**base, "tar@far=0.001": 0.96, "spearman": -0.2}, "clean": base},
        {"degraded": {**base, "tar@far=0.001": 0.955, "spearman": -0.4}, "clean": base},
    ]
    assert training.select_epoch(reports, base) == 0
    assert training.select_epoch(reports, base, spearman_weight=1.0) == 1


@pytest.mark.slow
def test_held_out_pairs_follow_the_lfw_sets_rules_on_unseen_devtrain_people():
    from keras_faceset.data import LFW

    lfw = LFW(require(LFW_DIR))
    exclude = set(training.select_images(lfw, 2400).identity[:1000])
    clean = training.held_out_protocol(lfw, exclude)
    degraded = training.held_out_protocol(lfw, exclude, degraded=True)
    assert len(clean) == 800 and clean["same"].sum() == 400
    assert not (set(clean["name_a"]) | set(clean["name_b"])) & exclude
    sizes = clean["set_a"].map(len)
    assert sizes.between(2, 6).all() and (sizes == clean["set_b"].map(len)).all()
    assert 2.7 < sizes.mean() < 3.6  # LFW-sets 3.16; here 2.90; training split 3.20
    assert (clean["set_a"] == degraded["set_a"]).all()
    specs = [s for column in ("degrade_a", "degrade_b") for row in degraded[column] for s in row]
    assert 0.77 < np.mean([s is not None for s in specs]) < 0.83  # LFW-sets: 0.80
    assert all(0.3 <= s["severity"] <= 1.0 for s in specs if s is not None)
    assert all(s is None for row in clean["degrade_a"] for s in row)
