from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

import keras_faceset
from keras_faceset.eval.sets import (
    head_sets,
    pad_sets,
    pool_sets,
    set_verification,
    weight_severity_spearman,
)
from keras_faceset.models import NANHead, QANHead

ROWS = [[0, 1], [2], [3, 4, 5]]


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_pad_sets():
    index, mask = pad_sets(ROWS)
    np.testing.assert_array_equal(index, [[0, 1, 0], [2, 0, 0], [3, 4, 5]])
    np.testing.assert_array_equal(mask, [[1, 1, 0], [1, 0, 0], [1, 1, 1]])
    with pytest.raises(ValueError, match="set 1 is empty"):
        pad_sets([[0], []])


def test_poolings_match_numpy(rng):
    x = rng.normal(size=(6, 4)) * rng.uniform(0.5, 2.0, size=(6, 1))
    norms = np.linalg.norm(x, axis=1)
    expected = {
        "mean": [unit(unit(x[r]).mean(0)) for r in ROWS],
        "norm_weighted": [unit(x[r].sum(0)) for r in ROWS],
        "best_frame": [unit(x[r][np.argmax(norms[r])]) for r in ROWS],
    }
    for pooling, want in expected.items():
        np.testing.assert_allclose(pool_sets(x, ROWS, pooling), want, atol=1e-12)
    with pytest.raises(ValueError, match="Unknown pooling 'max'"):
        pool_sets(x, ROWS, "max")


def test_perfect_separation_gives_accuracy_one(rng):
    # 10 folds x (4 genuine + 4 impostor): genuine sets share their person's direction.
    people = unit(np.eye(8)[:, :8])
    same = np.tile([True] * 4 + [False] * 4, 10)
    person = np.arange(80) % 8
    frames_a = people[person][:, None, :] + 0.05 * rng.normal(size=(80, 3, 8))
    other = np.where(same, person, (person + 1) % 8)
    frames_b = people[other][:, None, :] + 0.05 * rng.normal(size=(80, 3, 8))
    frames = np.concatenate([frames_a.reshape(-1, 8), frames_b.reshape(-1, 8)])
    rows_a = [np.arange(3 * i, 3 * i + 3) for i in range(80)]
    rows_b = [240 + r for r in rows_a]
    report = set_verification(
        pool_sets(frames, rows_a), pool_sets(frames, rows_b), same, np.repeat(np.arange(10), 8)
    )
    assert report["accuracy"] == 1.0 and report["std"] == 0.0
    assert report["auc"] == 1.0 and report["tar@far=0.001"] == 1.0


def test_known_scores():
    # cosines 1, 0.6 (same) and 0, 0 (different): AUC 1, best threshold midway at 0.3.
    a = np.array([[1.0, 0.0], [1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    b = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0], [1.0, 0.0]])
    report = set_verification(a, b, [True, True, False, False], folds=2)
    assert report["auc"] == 1.0
    np.testing.assert_allclose(report["threshold"], 0.3)  # midway between 0 and 0.6
    with pytest.raises(ValueError, match="two"):
        set_verification(a, b[:3], [True, True, False], folds=1)


def test_head_sets_at_initialisation_is_mean_pooling(rng):
    x = rng.normal(size=(6, 8)).astype(np.float32)
    embedding, weights, mask = head_sets(NANHead(8, num_blocks=2), x, ROWS)
    np.testing.assert_allclose(embedding, pool_sets(x, ROWS, "mean"), atol=1e-5)
    np.testing.assert_allclose(weights[mask], [0.5, 0.5, 1.0, 1 / 3, 1 / 3, 1 / 3], atol=1e-6)


def test_weight_severity_spearman_matches_scipy(rng):
    weights = unit(rng.uniform(size=(5, 4)) ** 2) ** 2
    mask = np.ones((5, 4), bool)
    mask[0, 1:] = False  # a one-frame set is left out
    mask[1, 3] = False
    severity = np.round(rng.uniform(size=(5, 4)), 1)  # ties
    keep = mask.copy()
    keep[0] = False
    relative = weights * mask.sum(1, keepdims=True)
    expected = spearmanr(relative[keep], severity[keep]).statistic
    np.testing.assert_allclose(weight_severity_spearman(weights, mask, severity), expected)


SHIPPED = Path(keras_faceset.__file__).parent / "zoo" / "weights"
# Outputs of the shipped heads on the inputs of `shipped_inputs` when they were trained
# (zoo/train_set_heads.py): weights (2, 4) and the first 3 dimensions of the set embedding.
REFERENCE = {
    "nan1_dlib": (
        [[0.39821, 0.175565, 0.079162, 0.347063], [0.39842, 0.359822, 0.241758, 0.0]],
        [[-0.056211, -0.058163, -0.046418], [-0.099373, 0.033232, 0.082449]],
    ),
    "nan2_dlib": (
        [[0.302444, 0.234205, 0.168775, 0.294575], [0.379536, 0.35151, 0.268955, 0.0]],
        [[-0.071528, -0.063613, -0.074874], [-0.102469, 0.036509, 0.08439]],
    ),
    "qan_dlib": (
        [[0.124017, 0.18748, 0.262425, 0.426077], [0.416185, 0.254775, 0.32904, 0.0]],
        [[-0.090792, -0.054869, -0.111359], [-0.105891, 0.036976, 0.109569]],
    ),
}


def shipped_inputs() -> dict:
    rng = np.random.default_rng(0)
    return {
        "frame_embeddings": rng.normal(size=(2, 4, 128)).astype(np.float32),
        "frame_features": rng.uniform(0, 2, size=(2, 4, 256)).astype(np.float32),
        "mask": np.array([[1, 1, 1, 1], [1, 1, 1, 0]], bool),
    }


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_shipped_head_weights_reproduce_reference_outputs(name):
    inputs = shipped_inputs()
    if name.startswith("nan"):
        head = NANHead(128, num_blocks=int(name[3]))
        del inputs["frame_features"]
    else:
        head = QANHead(128, feature_shape=256)
    head.load_weights(SHIPPED / f"{name}.weights.h5")
    outputs = head(inputs)
    weights, embedding = REFERENCE[name]
    np.testing.assert_allclose(np.asarray(outputs["weights"]), weights, atol=2e-6)
    np.testing.assert_allclose(np.asarray(outputs["embedding"])[:, :3], embedding, atol=2e-6)
