"""The seqface preset: SeqFace's projection head (zoo/train_seqface.py) on dlib_resnet, offline."""

import keras
import numpy as np
import pytest

from keras_faceset import zoo
from keras_faceset.embedder import FaceEmbedder
from keras_faceset.losses import LSRLoss
from keras_faceset.models import SeqFace, SeqFaceHead
from keras_faceset.models.seqface import lsr_targets
from keras_faceset.zoo.registry import SHIPPED_WEIGHTS
from tests.checks import assert_fit_reduces_loss
from tests.conftest import LFW_DIR, REPO, require

IMAGES = sorted((REPO / "examples" / "images").glob("*.jpg"))
# Outputs of the shipped head on `reference_inputs` when it was trained: weights (2, 4) and
# the first 4 dimensions of the set embedding.
REFERENCE_WEIGHTS = [[0.25, 0.25, 0.25, 0.25], [1 / 3, 1 / 3, 1 / 3, 0.0]]
REFERENCE_EMBEDDING = [
    [-0.059669, -0.097629, -0.113503, 0.137974],
    [-0.078591, 0.021716, 0.052569, -0.040141],
]


def reference_inputs() -> dict:
    rng = np.random.default_rng(0)
    return {
        "frame_embeddings": rng.normal(size=(2, 4, 128)).astype(np.float32),
        "mask": np.array([[1, 1, 1, 1], [1, 1, 1, 0]], bool),
    }


def shipped_projection() -> tuple[np.ndarray, np.ndarray]:
    head = SeqFaceHead(128, projection_dim=128)
    head.load_weights(SHIPPED_WEIGHTS / zoo.get_preset("seqface").head.weights)
    kernel, bias = (np.asarray(w, np.float64) for w in head.get_layer("projection").get_weights())
    return kernel, bias


def unit(x):
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_head_loads_offline_and_is_the_shipped_projection(monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_FACESET_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("KERAS_FACESET_SOURCES", str(tmp_path / "none"))
    head = zoo.load("seqface", form="head")
    assert isinstance(head, SeqFaceHead) and head.projection_dim == 128
    kernel, bias = shipped_projection()
    loaded = head.get_layer("projection").get_weights()
    np.testing.assert_array_equal(loaded[0], kernel.astype(np.float32))
    np.testing.assert_array_equal(loaded[1], bias.astype(np.float32))
    assert not (tmp_path / "empty").exists()  # the head needs no download and no conversion
    preset = zoo.get_preset("seqface")
    assert preset.task == "set-embedding" and preset.head.results_model == "seqface_dlib"


def test_set_embedding_is_mean_of_normalised_projections_with_uniform_weights():
    """`r = normalize(Σ_k f_k / K)`, `f_k = normalize(W x_k + b)`; one frame gives `f_1`."""
    head = zoo.load("seqface", form="head")
    kernel, bias = shipped_projection()
    inputs = reference_inputs()
    out = head(inputs)
    frames = unit(inputs["frame_embeddings"].astype(np.float64) @ kernel + bias)
    mask = inputs["mask"]
    weights = mask / mask.sum(1, keepdims=True)
    np.testing.assert_allclose(np.asarray(out["weights"]), weights, atol=1e-7)
    expected = unit(np.einsum("bt,btd->bd", weights, frames))
    np.testing.assert_allclose(np.asarray(out["embedding"]), expected, atol=2e-6)
    single = head({"frame_embeddings": inputs["frame_embeddings"][:, :1], "mask": mask[:, :1]})
    np.testing.assert_allclose(np.asarray(single["embedding"]), frames[:, 0], atol=2e-6)
    np.testing.assert_allclose(np.asarray(single["weights"]), 1.0)
    encoded = head.encode_frames(inputs["frame_embeddings"][0])
    np.testing.assert_allclose(np.asarray(encoded), frames[0], atol=2e-6)


def test_shipped_weights_reproduce_reference_outputs():
    out = zoo.load("seqface", form="head")(reference_inputs())
    np.testing.assert_allclose(np.asarray(out["weights"]), REFERENCE_WEIGHTS, atol=1e-7)
    np.testing.assert_allclose(np.asarray(out["embedding"])[:, :4], REFERENCE_EMBEDDING, atol=2e-6)


def test_image_set_model_equals_backbone_then_head():
    model = zoo.load("seqface")
    assert isinstance(model, SeqFace)
    chips = FaceEmbedder("dlib_resnet", weights=None).chips(IMAGES[:3]).astype("float32")
    mask = np.array([[True, True, False]])
    out = model({"images": chips[None], "mask": mask})
    frames = keras.ops.convert_to_numpy(model.backbone(chips[:2]))
    expected = model.head({"frame_embeddings": frames[None], "mask": mask[:, :2]})
    np.testing.assert_allclose(out["embedding"], expected["embedding"], atol=1e-5)
    np.testing.assert_allclose(out["weights"], [[0.5, 0.5, 0.0]], atol=1e-6)
    kernel, bias = shipped_projection()
    projected = unit(np.asarray(frames, np.float64) @ kernel + bias)
    np.testing.assert_allclose(out["embedding"][0], unit(projected.sum(0)), atol=1e-5)


def _identity_head() -> SeqFaceHead:
    head = SeqFaceHead(128, projection_dim=128)
    head.get_layer("projection").set_weights(
        [np.eye(128, dtype="float32"), np.zeros(128, "float32")]
    )
    return head


def _train(frames: np.ndarray, labels: np.ndarray, num_identities: int, num_sequences: int):
    keras.utils.set_random_seed(0)
    train = _identity_head().training_model(
        num_identities, num_sequences, classifier="l2_sphereface", dsa_options={"p": 0.5}, seed=0
    )
    x = {"frame_embeddings": frames.astype("float32"), "labels": labels.astype("int32")}
    y = {"logits": lsr_targets(labels, num_identities)}
    return assert_fit_reduces_loss(train, x, y, {"logits": LSRLoss()}, epochs=15)


def test_seqface_training_from_the_identity_projection_lowers_the_loss(rng):
    """A small synthetic stand-in for cached dlib descriptors: 4 identities + 3 sequences."""
    num_identities, num_sequences = 4, 3
    labels = np.repeat(np.arange(num_identities + num_sequences), 6)
    centres = rng.normal(0, 0.09, (num_identities + num_sequences, 128))  # dlib-like norms ~1
    frames = centres[labels] + rng.normal(0, 0.03, (len(labels), 128))
    _train(frames, labels, num_identities, num_sequences)


@pytest.mark.slow
def test_seqface_training_on_real_dlib_descriptors_lowers_the_loss():
    """Real frame embeddings: dlib descriptors of LFW DevTrain people, 3 identities (labelled)
    and 3 sequences (labels hidden), 4 images each."""
    from keras_faceset.data import LFW

    lfw = LFW(require(LFW_DIR))
    table = lfw.images("dev_train")
    counts = table.identity.value_counts()
    people = sorted(counts[counts >= 4].index)[:6]
    rows = table[table.identity.isin(people)].groupby("identity").head(4)
    embedder = FaceEmbedder("dlib_resnet")
    chips = embedder.chips(list(rows.path)).astype("float32")
    frames = np.asarray(embedder.task.backbone.predict(chips, verbose=0))
    labels = rows.identity.map({p: i for i, p in enumerate(people)}).to_numpy()
    _train(frames, labels, 3, 3)
