from pathlib import Path

import numpy as np
import pytest
from scipy.stats import spearmanr

import keras_faceset
from keras_faceset.eval.sets import pool_sets, set_verification, weight_severity_spearman
from keras_faceset.models import NANHead, QANHead
from keras_faceset.models.set_inference import head_sets, pad_sets
from keras_faceset.zoo import get_preset

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
        [[0.373259, 0.170479, 0.212644, 0.243618], [0.410581, 0.285669, 0.30375, 0.0]],
        [[-0.0623612, -0.0495035, -0.0543174], [-0.104679, 0.0361529, 0.102176]],
    ),
    "nan2_dlib": (
        [[0.307434, 0.109105, 0.291967, 0.291493], [0.419925, 0.244638, 0.335437, 0.0]],
        [[-0.0729763, -0.0394568, -0.0699002], [-0.105978, 0.0369405, 0.111903]],
    ),
    "qan_dlib": (
        [[0.303474, 0.183196, 0.235328, 0.278002], [0.416899, 0.208438, 0.374663, 0.0]],
        [[-0.0732666, -0.0529344, -0.0740841], [-0.107273, 0.0388341, 0.119103]],
    ),
}


def shipped_inputs() -> dict:
    rng = np.random.default_rng(0)
    return {
        "frame_embeddings": rng.normal(size=(2, 4, 128)).astype(np.float32),
        "frame_features": rng.uniform(0, 2, size=(2, 4, 448)).astype(np.float32),
        "mask": np.array([[1, 1, 1, 1], [1, 1, 1, 0]], bool),
    }


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_shipped_head_weights_reproduce_reference_outputs(name):
    inputs = shipped_inputs()
    preset = {"nan1_dlib": "nan1", "nan2_dlib": "nan", "qan_dlib": "qan"}[name]
    # The reference outputs pin the weights file: the trained weighting (T = 1), not the
    # preset's softened one.
    kwargs = {**get_preset(preset).head.kwargs, "temperature": 1.0}
    head = (NANHead if name.startswith("nan") else QANHead)(**kwargs)
    head.load_weights(SHIPPED / f"{name}.weights.h5")
    outputs = head(inputs)
    weights, embedding = REFERENCE[name]
    np.testing.assert_allclose(np.asarray(outputs["weights"]), weights, atol=2e-6)
    np.testing.assert_allclose(np.asarray(outputs["embedding"])[:, :3], embedding, atol=2e-6)
