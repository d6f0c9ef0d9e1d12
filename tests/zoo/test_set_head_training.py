"""zoo/train_set_heads.py pieces: the QAN quality anchor and the epoch choice (its data:
tests/data/test_devtrain_sets.py, tests/data/test_held_out_sets.py)."""

import importlib.util

import keras
import numpy as np

from tests.conftest import REPO


def load_script(name: str):
    """A zoo/ script as a module (scripts are not a package)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "zoo" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


training = load_script("train_set_heads")


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


def test_heads_train_at_temperature_one_whatever_the_preset():
    """The shipped weights were trained at T = 1; the presets' temperature is for inference."""
    from keras_faceset.zoo import build_head

    for name in ("nan", "nan1", "qan"):
        head, _ = training.head_and_loss(name)
        assert head.temperature == training.TRAIN_TEMPERATURE == 1.0
        assert head.get_layer("aggregation").temperature == 1.0
        assert head.get_config() == build_head(name, temperature=1.0).get_config()
    assert training.head_and_loss("qan", {"temperature": 2.0})[0].temperature == 2.0


def test_precision_targets_are_residuals_in_units_of_the_clean_5th_percentile():
    residuals = np.linspace(0.01, 0.2, 20)
    clean = np.arange(20) < 10
    unit = np.percentile(residuals[:10], training.PRECISION_UNIT_PERCENTILE)
    np.testing.assert_allclose(
        training.precision_targets(residuals, clean), residuals / unit, rtol=1e-6
    )


def test_train_precision_learns_frame_precisions_and_keeps_the_best_held_out_epoch(capsys):
    """Frames of three kinds (told apart by their texture) whose residuals average 1.5, 3 and 6:
    QAN's quality trained by `train_precision` ranks them by precision, near 1 / mean."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    means = np.array([1.5, 3.0, 6.0])
    kind = rng.integers(0, 3, size=1500)
    texture = np.zeros((1500, 448), np.float32)
    texture[np.arange(1500), kind] = 1.0
    arrays = {"embedding": rng.normal(size=(1500, 128)).astype(np.float32), "texture": texture}
    targets = rng.exponential(means[kind]).astype(np.float32)
    head, loss = training.head_and_loss("qan")
    head.compile(optimizer=keras.optimizers.Adam(3e-3), loss={"quality": loss})
    train_rows, held_out_rows = np.arange(1200), np.arange(1200, 1500)
    kept = training.train_precision(head, arrays, targets, train_rows, held_out_rows, 8, 100, 0)
    held_out = [float(line.split("held out ")[1]) for line in capsys.readouterr().out.splitlines()]
    assert kept == int(np.argmin(held_out))
    frames = training.head_inputs(head, arrays, held_out_rows[:, None], np.ones((300, 1), bool))
    quality = head.predict(frames, verbose=0)["quality"][:, 0]
    learnt = np.array([quality[kind[held_out_rows] == k].mean() for k in range(3)])
    assert learnt[0] > learnt[1] > learnt[2]
    np.testing.assert_allclose(learnt, 1 / means, rtol=0.25)
