import keras
import numpy as np
import pytest

from keras_faceset.losses import GaussianPrecisionLoss, precision_nll


def _np(x):
    return keras.ops.convert_to_numpy(x)


def test_matches_the_gaussian_likelihood_loop(rng):
    residuals = rng.uniform(0.5, 4.0, size=(6, 3)).astype("float32")
    precision = rng.uniform(0.05, 1.0, size=(6, 3)).astype("float32")
    expected = [
        [a * mu - np.log(mu) for a, mu in zip(ra, rm, strict=True)]
        for ra, rm in zip(residuals, precision, strict=True)
    ]
    np.testing.assert_allclose(_np(precision_nll(residuals, precision)), expected, rtol=1e-6)
    np.testing.assert_allclose(
        _np(GaussianPrecisionLoss()(residuals, precision)), np.mean(expected), rtol=1e-6
    )


def test_a_constant_precision_is_best_at_the_inverse_mean_residual(rng):
    residuals = rng.exponential(2.5, size=500).astype("float32") + 1.0
    grid = np.linspace(0.05, 1.0, 1901, dtype="float32")
    losses = [
        float(np.mean(_np(precision_nll(residuals, np.full_like(residuals, g))))) for g in grid
    ]
    assert grid[int(np.argmin(losses))] == pytest.approx(1.0 / residuals.mean(), abs=1e-3)


def test_fit_learns_each_groups_precision():
    """Three kinds of frame whose residuals average 1.25, 2.5 and 5: a sigmoid quality trained
    with the loss gives them precisions 1 / 1.25, 1 / 2.5 and 1 / 5."""
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    means = np.array([1.25, 2.5, 5.0])
    group = rng.integers(0, 3, size=3000)
    residuals = rng.exponential(means[group]).astype("float32")
    x = np.eye(3, dtype="float32")[group]
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1, activation="sigmoid")])
    model.compile(keras.optimizers.Adam(0.05), GaussianPrecisionLoss())
    model.fit(x, residuals[:, None], batch_size=300, epochs=60, verbose=0)
    learnt = model.predict(np.eye(3, dtype="float32"), verbose=0)[:, 0]
    observed = np.array([1.0 / residuals[group == g].mean() for g in range(3)])
    np.testing.assert_allclose(learnt, observed, rtol=0.03)


def test_zero_precision_stays_finite_and_shapes_must_match():
    assert np.isfinite(_np(precision_nll(np.ones(2), np.zeros(2)))).all()
    with pytest.raises(ValueError, match="same shape"):
        precision_nll(np.ones((4, 1)), np.ones(4))
