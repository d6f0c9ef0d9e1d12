"""Margin heads against brute-force NumPy loops over samples and classes."""

import math

import keras
import numpy as np
import pytest

from keras_faceset.layers.margins import (
    ArcFace,
    CosFace,
    L2SphereFace,
    NormalizedSoftmax,
    SphereFace,
)
from tests import checks
from tests.checks import gradients

DIM, NUM_CLASSES, BATCH = 6, 5, 12

HEADS = {
    "normface": (NormalizedSoftmax, {"scale": 16.0}),
    "cosface": (CosFace, {}),
    "arcface": (ArcFace, {}),
    "sphereface": (SphereFace, {}),
    "sphereface_m3_lambda": (SphereFace, {"margin": 3, "lambda_": 0.5}),
    "l2sphereface": (L2SphereFace, {"feature_scale": 20.0}),
}


def _reference_target(kind: str, config: dict, c: float) -> float:
    """Margined target cosine f(cos θ_y) straight from the papers' formulas."""
    theta = math.acos(c)
    if kind == "normface":
        return c
    if kind == "cosface":
        return c - config["margin"]
    if kind == "arcface":
        m = config["margin"]
        return math.cos(theta + m) if c > math.cos(math.pi - m) else c - math.sin(math.pi - m) * m
    m, lam = config["margin"], config["lambda_"]
    k = min(math.floor(m * theta / math.pi), m - 1)
    psi = (-1) ** k * math.cos(m * theta) - 2 * k
    return (lam * c + psi) / (1 + lam)


def _reference_logits(layer, x: np.ndarray, w: np.ndarray, labels) -> np.ndarray:
    config = layer.get_config()
    kind = {NormalizedSoftmax: "normface", CosFace: "cosface", ArcFace: "arcface"}.get(
        type(layer), "sphereface"
    )
    out = np.zeros((len(x), w.shape[1]))
    for i in range(len(x)):
        norm = np.linalg.norm(x[i])
        scale = config.get("scale") or config.get("feature_scale") or norm
        for j in range(w.shape[1]):
            c = float(np.clip(x[i] @ w[:, j] / (norm * np.linalg.norm(w[:, j])), -1, 1))
            target = labels is not None and j == labels[i]
            out[i, j] = scale * (_reference_target(kind, config, c) if target else c)
    return out


def _data(rng, opposite: int = 3):
    """Embeddings, weights and repeated labels; the first rows point nearly opposite their class."""
    w = rng.normal(size=(DIM, NUM_CLASSES))
    labels = rng.integers(0, NUM_CLASSES, size=BATCH)
    x = rng.normal(size=(BATCH, DIM)) * 2.0
    x[:opposite] = -w[:, labels[:opposite]].T + 0.01 * rng.normal(size=(opposite, DIM))
    return x.astype("float32"), w.astype("float32"), labels.astype("int32")


def _built(name: str, w: np.ndarray):
    cls, kwargs = HEADS[name]
    layer = cls(NUM_CLASSES, **kwargs)
    layer.build([(None, DIM), (None,)])
    layer.kernel.assign(w)
    return layer


def _close(actual, expected, scale: float):
    # Float32 layer vs float64 loop: compare in cosine units (logits / scale) to 1e-5.
    np.testing.assert_allclose(
        keras.ops.convert_to_numpy(actual) / scale, expected / scale, atol=1e-5, rtol=0
    )


@pytest.mark.parametrize("name", HEADS)
def test_logits_match_numpy_reference(name, rng):
    x, w, labels = _data(rng)
    layer = _built(name, w)
    scale = 64.0 if name in ("cosface", "arcface") else 20.0
    _close(layer([x, labels]), _reference_logits(layer, x, w, labels), scale)
    # Without labels: the un-margined scaled cosine logits.
    _close(layer(x), _reference_logits(layer, x, w, None), scale)
    _close(layer([x]), _reference_logits(layer, x, w, None), scale)


def test_arcface_fallback_is_exercised(rng):
    x, w, labels = _data(rng)
    layer = _built("arcface", w)
    c = np.sum(x[:3] * w[:, labels[:3]].T, -1) / (
        np.linalg.norm(x[:3], axis=-1) * np.linalg.norm(w[:, labels[:3]], axis=0)
    )
    assert np.all(np.arccos(c) + 0.5 > math.pi)  # θ + m > π: the fallback branch
    logits = keras.ops.convert_to_numpy(layer([x, labels]))
    expected = 64.0 * (c - math.sin(math.pi - 0.5) * 0.5)
    np.testing.assert_allclose(logits[np.arange(3), labels[:3]] / 64, expected / 64, atol=1e-5)


def test_sphereface_annealing_lambda_is_a_variable(rng):
    x, w, labels = _data(rng)
    layer = _built("sphereface", w)
    layer.lambda_var.assign(2.0)
    reference = _reference_logits(SphereFace(NUM_CLASSES, lambda_=2.0), x, w, labels)
    _close(layer([x, labels]), reference, 20.0)


@pytest.mark.parametrize("m", [1, 2, 3, 4, 5])
def test_sphereface_psi_monotone_continuous(m):
    layer = SphereFace(2, margin=m)
    layer.build((None, 2))
    layer.kernel.assign(np.eye(2, dtype="float32"))  # class 0 is the x axis

    def psi(theta):
        x = np.stack([np.cos(theta), np.sin(theta)], -1).astype("float32")
        logits = layer([x, np.zeros(len(x), "int32")])
        return keras.ops.convert_to_numpy(logits)[:, 0]  # ‖x‖ = 1

    grid = np.linspace(0.0, math.pi, 2001)
    values = psi(grid)
    np.testing.assert_allclose(values[[0, -1]], [1.0, 1.0 - 2.0 * m], atol=1e-5)
    assert np.all(np.diff(values) <= 1e-6), "ψ must not increase with θ"
    boundaries = np.arange(1, m) * math.pi / m
    left, right = psi(boundaries - 1e-4), psi(boundaries + 1e-4)
    np.testing.assert_array_less(np.abs(right - left), 4e-4 * m)
    reference = [(-1) ** k * math.cos(m * b) - 2 * k for k, b in enumerate(boundaries, 1)]
    np.testing.assert_allclose(psi(boundaries), reference, atol=1e-4)


def _logit_gradients(layer, x, labels, probe):
    """d(Σ probe · logits)/d(embeddings, kernel): every logit gets a nonzero upstream gradient
    (a saturated cross-entropy would hide an infinite local derivative behind a zero)."""
    non_trainable = [v.value for v in layer.non_trainable_variables]

    def objective(embeddings, kernel):
        logits, _ = layer.stateless_call([kernel], non_trainable, [embeddings, labels])
        return keras.ops.sum(logits * probe)

    return gradients(objective, x, keras.ops.convert_to_numpy(layer.kernel))


@pytest.mark.parametrize("name", HEADS)
def test_gradients_finite_at_extremes(name, rng):
    w = rng.normal(size=(DIM, NUM_CLASSES)).astype("float32")
    w[:, 0] = np.eye(DIM)[0]
    x = rng.normal(size=(6, DIM)).astype("float32")
    x[0] = [4, 0, 0, 0, 0, 0]  # cos θ = 1 exactly with its class (4 · rsqrt(16) is exact)
    x[1] = [-1, 0, 0, 0, 0, 0]  # cos θ = -1 exactly
    x[2] = 0.0  # zero embedding
    x[3] = 1e-20  # zero-ish embedding
    x[4] = w[:, 3]  # equal to another weight column
    labels = np.array([0, 0, 1, 2, 3, 4], "int32")
    layer = _built(name, w)
    probe = rng.normal(size=(len(x), NUM_CLASSES)).astype("float32")
    for grad in _logit_gradients(layer, x, labels, probe):
        assert np.all(np.isfinite(grad)), grad
    # The aligned sample (cos θ = 1) gets a larger target logit than the opposite one.
    logits = keras.ops.convert_to_numpy(layer([x, labels]))
    assert logits[0, 0] > logits[1, 0]


@pytest.mark.parametrize("name", ["arcface", "sphereface"])
def test_label_dtypes_and_shapes_agree(name, rng):
    x, w, labels = _data(rng)
    layer = _built(name, w)
    expected = keras.ops.convert_to_numpy(layer([x, labels]))
    for dtype in ("int32", "int64", "uint8"):
        for shape in ((BATCH,), (BATCH, 1)):
            got = layer([x, labels.astype(dtype).reshape(shape)])
            np.testing.assert_array_equal(keras.ops.convert_to_numpy(got), expected)


def test_bad_inputs_raise(rng):
    x, w, labels = _data(rng)
    layer = _built("cosface", w)
    with pytest.raises(ValueError, match="labels.*integer"):
        layer([x, labels.astype("float32")])
    with pytest.raises(ValueError, match="labels must have shape"):
        layer([x, labels.reshape(3, 4)])
    with pytest.raises(ValueError, match="labels batch"):
        layer([x, labels[:5]])
    with pytest.raises(ValueError, match="embeddings must have rank 2"):
        layer([x[None], labels])
    with pytest.raises(ValueError, match="embeddings must have shape"):
        CosFace(3)([np.zeros((2, 3, 4), "float32"), np.zeros(2, "int32")])
    with pytest.raises(ValueError, match="labels.*integer"):
        CosFace(3)([keras.Input((4,)), keras.Input((), dtype="float32")])


@pytest.mark.parametrize(
    ("cls", "kwargs", "match"),
    [
        (CosFace, {"num_classes": 1}, "num_classes"),
        (NormalizedSoftmax, {"num_classes": 3, "scale": 0.0}, "scale"),
        (CosFace, {"num_classes": 3, "margin": -0.1}, "margin"),
        (ArcFace, {"num_classes": 3, "margin": 3.2}, "margin"),
        (SphereFace, {"num_classes": 3, "margin": 1.5}, "margin"),
        (SphereFace, {"num_classes": 3, "lambda_": -1.0}, "lambda_"),
        (L2SphereFace, {"num_classes": 3, "feature_scale": None}, "feature_scale"),
    ],
)
def test_bad_hyperparameters_raise(cls, kwargs, match):
    with pytest.raises(ValueError, match=match):
        cls(**kwargs)


def _model(name: str) -> keras.Model:
    cls, kwargs = HEADS[name]
    features = keras.Input((8,))
    labels = keras.Input((), dtype="int32")
    embeddings = keras.layers.Dense(DIM)(features)
    return keras.Model([features, labels], cls(4, **kwargs)([embeddings, labels]))


def _blobs(rng, per_class: int = 16):
    centres = rng.normal(size=(4, 8)) * 3.0
    y = np.repeat(np.arange(4), per_class).astype("int32")
    x = (centres[y] + rng.normal(size=(len(y), 8))).astype("float32")
    return x, y


@pytest.mark.parametrize("name", HEADS)
def test_fit_reduces_loss(name, rng):
    x, y = _blobs(rng)
    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    checks.assert_fit_reduces_loss(_model(name), [x, y], y, loss, epochs=8)
