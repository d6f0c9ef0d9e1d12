"""Triplet loss against a brute-force NumPy loop over pairs/triplets, edge cases, Keras use."""

import itertools

import keras
import numpy as np
import pytest

from keras_faceset.losses import TripletLoss, triplet_loss, validate_labels
from keras_faceset.losses.distances import DISTANCES
from keras_faceset.losses.mining import AVERAGES, MINING
from tests.checks import assert_fit_reduces_loss, value_and_gradients
from tests.losses.test_distances import numpy_pairwise

COMBINATIONS = list(itertools.product(MINING, DISTANCES))


def reference_triplet(labels, x, mining, margin, distance):
    """The definitions, looped: semi-hard as tfa, batch-hard, batch-all (mean of positives)."""
    labels = np.ravel(labels)
    d = numpy_pairwise(x, distance)
    size = len(labels)
    terms = []
    for a in range(size):
        positives = [p for p in range(size) if p != a and labels[p] == labels[a]]
        negatives = [n for n in range(size) if labels[n] != labels[a]]
        if not positives or not negatives:
            continue
        if mining == "hard":
            hardest = max(d[a, p] for p in positives) - min(d[a, n] for n in negatives)
            terms.append(max(hardest + margin, 0.0))
        for p in positives:
            if mining == "semi_hard":
                farther = [d[a, n] for n in negatives if d[a, n] > d[a, p]]
                d_an = min(farther) if farther else max(d[a, n] for n in negatives)
                terms.append(max(d[a, p] - d_an + margin, 0.0))
            for n in negatives:
                if mining == "all" and d[a, p] - d[a, n] + margin > 0:
                    terms.append(d[a, p] - d[a, n] + margin)
    return float(np.mean(terms)) if terms else 0.0


def reference_tfa_hard(labels, x, margin, distance):
    """tfa's `triplet_hard_loss`, looped: over every anchor, the farthest positive (0 when there
    is none: tfa's masked maximum falls back to the row minimum, the zero diagonal) and the
    closest negative (the farthest sample when there is none: the row maximum)."""
    labels = np.ravel(labels)
    d = numpy_pairwise(x, distance)
    size = len(labels)
    terms = []
    for a in range(size):
        positives = [d[a, p] for p in range(size) if p != a and labels[p] == labels[a]]
        negatives = [d[a, n] for n in range(size) if labels[n] != labels[a]]
        hardest_positive = max(positives, default=0.0)
        hardest_negative = min(negatives) if negatives else d[a].max()
        terms.append(max(hardest_positive - hardest_negative + margin, 0.0))
    return float(np.mean(terms))


def random_batch(seed, size=12, classes=4, dim=4):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(size, dim))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return rng.integers(0, classes, size=size), x.astype("float32")


def loss_value(labels, x, **kwargs):
    return float(keras.ops.convert_to_numpy(triplet_loss(labels, x, **kwargs)))


@pytest.mark.parametrize("mining,distance", COMBINATIONS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_brute_force(mining, distance, seed):
    labels, x = random_batch(seed)
    margin = 0.3
    expected = reference_triplet(labels, x, mining, margin, distance)
    assert expected > 0
    kwargs = dict(mining=mining, margin=margin, distance=distance)
    np.testing.assert_allclose(loss_value(labels, x, **kwargs), expected, atol=1e-5, rtol=1e-5)
    loss = keras.ops.convert_to_numpy(TripletLoss(**kwargs)(labels, x))
    np.testing.assert_allclose(loss, expected, atol=1e-5, rtol=1e-5)


SINGLETONS = np.array([0, 0, 0, 1, 1, 2, 3, 3, 4, 5, 5, 6])  # identities 2, 4, 6: one image


@pytest.mark.parametrize("distance", DISTANCES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_all_anchors_matches_tfa_triplet_hard_loss(distance, seed):
    _, x = random_batch(seed, size=len(SINGLETONS))
    x[5] = x[4] + 0.05  # a singleton close to a negative: its term max(alpha - d_an, 0) > 0
    margin = 1.0  # tfa's default
    expected = reference_tfa_hard(SINGLETONS, x, margin, distance)
    mined = reference_triplet(SINGLETONS, x, "hard", margin, distance)
    assert abs(expected - mined) > 1e-2  # the anchors without a positive count
    kwargs = dict(mining="hard", margin=margin, distance=distance, average="all_anchors")
    np.testing.assert_allclose(loss_value(SINGLETONS, x, **kwargs), expected, rtol=1e-5)
    loss = TripletLoss(**kwargs)
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loss(SINGLETONS, x)), expected, 1e-5)
    contributions = keras.ops.convert_to_numpy(TripletLoss(**kwargs, reduction=None)(SINGLETONS, x))
    np.testing.assert_allclose(contributions.mean(), expected, rtol=1e-5)


@pytest.mark.parametrize("labels", [[0, 1, 2, 3, 4], [7, 7, 7, 7, 7]], ids=["distinct", "same"])
@pytest.mark.parametrize("distance", DISTANCES)
def test_all_anchors_without_valid_triplets_is_tfa(labels, distance):
    # tfa gives every anchor max(alpha - min d_an, 0) without positives, alpha without negatives.
    x = np.random.default_rng(0).normal(size=(5, 3)).astype("float32") * 0.3
    expected = reference_tfa_hard(labels, x, 1.0, distance)
    assert expected > 0
    got = loss_value(
        np.array(labels), x, mining="hard", margin=1.0, distance=distance, average="all_anchors"
    )
    np.testing.assert_allclose(got, expected, rtol=1e-5)


@pytest.mark.parametrize("average,expected", [("mined", 1.96), ("all_anchors", 1.696)])
def test_hard_averages_on_a_line(average, expected):
    # d^2 as below plus a singleton at 2.0 (d^2 to the others: 4, 1, 1, 0.36). Hinges (margin 1)
    # of anchors 0-3: 0.04, 1.84, 2.56, 3.40; the singleton adds 1 - 0.36 = 0.64 over 5 anchors.
    x = np.array([[0.0], [1.0], [3.0], [1.4], [2.0]], "float32")
    labels = np.array([0, 0, 1, 1, 2])
    got = loss_value(labels, x, mining="hard", margin=1.0, average=average)
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_default_average_is_unchanged():
    _, x = random_batch(4, size=len(SINGLETONS))
    expected = reference_triplet(SINGLETONS, x, "hard", 0.2, "squared_l2")
    np.testing.assert_allclose(loss_value(SINGLETONS, x, mining="hard"), expected, rtol=1e-5)
    loss = TripletLoss(mining="hard")
    assert loss.average == "mined" and loss.get_config()["average"] == "mined"
    np.testing.assert_allclose(keras.ops.convert_to_numpy(loss(SINGLETONS, x)), expected, 1e-5)
    # A config saved before `average` existed loads with the same averaging.
    old_config = {k: v for k, v in loss.get_config().items() if k != "average"}
    assert TripletLoss.from_config(old_config).average == "mined"


def central_differences(fn, x, eps: float = 1e-6) -> np.ndarray:
    """d fn / d x by central differences in float64, one coordinate at a time."""
    x64 = np.float64(x)
    gradient = np.zeros_like(x64)
    for index in np.ndindex(x.shape):
        step = np.zeros_like(x64)
        step[index] = eps
        gradient[index] = (fn(x64 + step) - fn(x64 - step)) / (2 * eps)
    return gradient


@pytest.mark.parametrize("distance", DISTANCES)
def test_all_anchors_gradient_matches_finite_differences(distance):
    labels = np.array([0, 0, 1, 1, 1, 2, 3])  # identities 2 and 3 have no positive
    _, x = random_batch(3, size=7, dim=3)
    kwargs = dict(mining="hard", margin=1.0, distance=distance, average="all_anchors")
    _, (grad,) = value_and_gradients(lambda e: triplet_loss(labels, e, **kwargs), x)
    expected = central_differences(lambda e: reference_tfa_hard(labels, e, 1.0, distance), x)
    np.testing.assert_allclose(grad, expected, atol=2e-3, rtol=1e-3)
    mined = dict(kwargs, average="mined")
    _, (grad_mined,) = value_and_gradients(lambda e: triplet_loss(labels, e, **mined), x)
    assert np.abs(grad - grad_mined).max() > 1e-2  # the anchors without a positive pull too


@pytest.mark.parametrize("mining,expected", [("semi_hard", 0.41), ("hard", 1.32), ("all", 1.72)])
def test_known_figures_on_a_line(mining, expected):
    # d^2: d01=1, d02=9, d03=1.96, d12=4, d13=0.16, d23=2.56. Semi-hard: anchor 0 takes the
    # negative farther than its positive (1.96), anchor 3 has none and falls back to 1.96.
    x = np.array([[0.0], [1.0], [3.0], [1.4]], "float32")
    labels = np.array([0, 0, 1, 1])
    np.testing.assert_allclose(loss_value(labels, x, mining=mining, margin=1.0), expected, 1e-6)


@pytest.mark.parametrize("mining,distance", COMBINATIONS)
def test_gradient_matches_finite_differences(mining, distance):
    labels, x = random_batch(3, size=7, classes=3, dim=3)
    kwargs = dict(mining=mining, margin=0.5, distance=distance)
    _, (grad,) = value_and_gradients(lambda e: triplet_loss(labels, e, **kwargs), x)
    expected = central_differences(lambda e: reference_triplet(labels, e, mining, 0.5, distance), x)
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(grad, expected, atol=2e-3, rtol=1e-3)


@pytest.mark.parametrize("mining,distance", COMBINATIONS)
@pytest.mark.parametrize("labels", [[0, 1, 2, 3, 4], [7, 7, 7, 7, 7]], ids=["distinct", "same"])
def test_no_valid_triplet_gives_exact_zero_and_zero_gradients(mining, distance, labels):
    x = np.random.default_rng(0).normal(size=(5, 3)).astype("float32")
    kwargs = dict(mining=mining, distance=distance)
    value, (grad,) = value_and_gradients(lambda e: triplet_loss(np.array(labels), e, **kwargs), x)
    assert value == 0
    np.testing.assert_array_equal(grad, 0)


@pytest.mark.parametrize("mining,distance", COMBINATIONS)
def test_duplicate_embeddings_give_finite_gradients(mining, distance):
    x = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]], "float32")
    labels = np.array([0, 0, 1, 1, 2])  # duplicates within and across identities
    kwargs = dict(mining=mining, distance=distance, margin=0.2)
    value, (grad,) = value_and_gradients(lambda e: triplet_loss(labels, e, **kwargs), x)
    assert np.isfinite(value) and value > 0
    assert np.all(np.isfinite(grad))


def test_label_shapes_and_integer_dtypes_agree():
    labels, x = random_batch(4)
    expected = loss_value(labels, x)
    for variant in (
        labels[:, None],
        labels.astype("int8"),
        labels.astype("int64"),
        labels.astype("uint8")[:, None],
    ):
        assert loss_value(variant, x) == expected
        assert keras.ops.convert_to_numpy(TripletLoss()(variant, x)) == pytest.approx(expected)


def test_validate_labels():
    got = validate_labels(np.array([[3], [1]], "int64"))
    assert keras.backend.standardize_dtype(got.dtype) == "int32"
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(got), [3, 1])
    with pytest.raises(ValueError, match="labels must have an integer dtype"):
        validate_labels(np.array([0.0, 1.0], "float32"))
    with pytest.raises(ValueError, match=r"labels must have shape \(B,\) or \(B, 1\)"):
        validate_labels(np.zeros((4, 2), "int32"))
    with pytest.raises(ValueError, match="labels must have shape"):
        validate_labels(np.zeros((4, 1, 1), "int32"))


def test_bad_inputs_raise():
    labels, x = random_batch(0)
    with pytest.raises(ValueError, match="labels"):
        triplet_loss(labels.astype("float32"), x)
    with pytest.raises(ValueError, match="labels"):
        TripletLoss()(labels.astype("float32"), x)
    with pytest.raises(ValueError, match="Unknown mining 'easy'.*semi_hard"):
        triplet_loss(labels, x, mining="easy")
    with pytest.raises(ValueError, match="Unknown mining"):
        TripletLoss(mining="easy")
    with pytest.raises(ValueError, match="Unknown distance"):
        TripletLoss(distance="l1")
    with pytest.raises(ValueError, match="embeddings must have shape"):
        triplet_loss(labels, x[:, :, None])
    with pytest.raises(ValueError, match="Unknown average 'valid'.*mined"):
        TripletLoss(mining="hard", average="valid")
    for mining in set(MINING) - {"hard"}:
        with pytest.raises(ValueError, match="all_anchors.*mining='hard'"):
            triplet_loss(labels, x, mining=mining, average="all_anchors")
    assert AVERAGES == ("mined", "all_anchors")


def test_reduction_and_sample_weight():
    labels, x = random_batch(5)
    batch = loss_value(labels, x, mining="all")
    contributions = keras.ops.convert_to_numpy(TripletLoss("all", reduction=None)(labels, x))
    assert contributions.shape == (12,)
    np.testing.assert_allclose(contributions.mean(), batch, rtol=1e-6)
    summed = keras.ops.convert_to_numpy(TripletLoss("all", reduction="sum")(labels, x))
    np.testing.assert_allclose(summed, 12 * batch, rtol=1e-6)
    weights = np.random.default_rng(0).uniform(size=12).astype("float32")
    weighted = keras.ops.convert_to_numpy(TripletLoss("all")(labels, x, sample_weight=weights))
    np.testing.assert_allclose(weighted, np.mean(weights * contributions), rtol=1e-5)


def blobs(classes=4, per_class=8, dim=8, seed=0):
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(classes, dim)) * 1.5
    labels = np.repeat(np.arange(classes), per_class)
    return (centers[labels] + rng.normal(size=(len(labels), dim))).astype("float32"), labels


def embedding_model(dim=8, embedding=4):
    return keras.Sequential(
        [keras.Input((dim,)), keras.layers.Dense(embedding), keras.layers.UnitNormalization()]
    )


def test_fit_reduces_loss_on_blobs():
    x, labels = blobs()
    assert_fit_reduces_loss(embedding_model(), x, labels, TripletLoss(margin=0.5), epochs=15)


@pytest.mark.parametrize("mining", MINING)
def test_many_tied_distances_match_brute_force(mining):
    # Points on a small integer grid: many equal distances, positives tied with negatives, so
    # the sorted search must count "d_an <= d_ap" (semi-hard) and "d_an < d_ap + alpha" exactly.
    rng = np.random.default_rng(7)
    x = rng.integers(0, 3, size=(40, 2)).astype("float32")
    labels = rng.integers(0, 6, size=40)
    expected = reference_triplet(labels, x, mining, 1.0, "squared_l2")
    got = loss_value(labels, x, mining=mining, margin=1.0, distance="squared_l2")
    np.testing.assert_allclose(got, expected, rtol=1e-6)
