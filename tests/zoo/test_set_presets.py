"""The set presets (nan, nan1, qan): shipped head weights on dlib_resnet, loaded offline."""

import keras
import numpy as np
import pytest

from keras_faceset import zoo
from keras_faceset.data.degrade import degrade
from keras_faceset.embedder import FaceEmbedder
from keras_faceset.losses import ContrastiveLoss
from keras_faceset.models import MeanHead, MeanSet, NANHead, QANHead, SeqFaceHead
from keras_faceset.zoo.registry import SHIPPED_WEIGHTS
from tests.conftest import REPO

SET_PRESETS = tuple(n for n, p in zoo.PRESETS.items() if "feature_shape" in p.head.kwargs)
"""The presets whose trained head reads frame features (nan, nan1, qan)."""
IMAGES = sorted((REPO / "examples" / "images").glob("Serena_*.jpg"))


@pytest.fixture(scope="module")
def serena_chips():
    """Two real five-point chips of one person, plus a heavily blurred + noisy copy of one."""
    chips = FaceEmbedder("dlib_resnet", weights=None).chips(IMAGES)
    ruined = degrade(degrade(chips[0], "blur", 1.0, (1, 2)), "noise", 1.0, (3, 4)).numpy()
    return np.stack([chips[0], chips[1], ruined]).astype("float32")


@pytest.mark.parametrize("name", SET_PRESETS)
def test_head_loads_offline_from_the_shipped_weights(name, monkeypatch, tmp_path):
    monkeypatch.setenv("KERAS_FACESET_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("KERAS_FACESET_SOURCES", str(tmp_path / "none"))
    head = zoo.load(name, form="head")
    spec = zoo.get_preset(name).head
    expected = NANHead if "NAN" in spec.builder else QANHead
    assert isinstance(head, expected)
    fresh = expected(**spec.kwargs)
    fresh.load_weights(SHIPPED_WEIGHTS / spec.weights)
    for loaded, reference in zip(head.get_weights(), fresh.get_weights(), strict=True):
        np.testing.assert_array_equal(loaded, reference)
    assert not (tmp_path / "empty").exists()  # a head needs no download and no conversion


def test_unknown_form_is_refused_and_an_image_preset_has_the_mean_head():
    with pytest.raises(ValueError, match="unknown form 'heads'"):
        zoo.load("nan", form="heads")
    head = zoo.load("dlib_resnet", form="head")
    assert isinstance(head, MeanHead) and not head.weights
    frames = np.random.default_rng(0).normal(size=(1, 3, 128)).astype("float32")
    out = head({"frame_embeddings": 5 * frames, "mask": np.array([[True, True, False]])})
    unit = frames[0, :2] / np.linalg.norm(frames[0, :2], axis=1, keepdims=True)
    mean = unit.mean(axis=0)
    np.testing.assert_allclose(out["embedding"][0], mean / np.linalg.norm(mean), atol=1e-6)
    np.testing.assert_allclose(out["weights"], [[0.5, 0.5, 0.0]], atol=1e-7)


def test_task_form_of_an_image_preset_is_backbone_then_mean(serena_chips):
    task = zoo.load("dlib_resnet", form="task")
    assert isinstance(task, MeanSet) and not task.backbone.trainable
    out = task({"images": serena_chips[None], "mask": np.ones((1, 3), bool)})
    frames = keras.ops.convert_to_numpy(task.backbone(serena_chips))
    mean = (frames / np.linalg.norm(frames, axis=1, keepdims=True)).mean(axis=0)
    np.testing.assert_allclose(out["embedding"][0], mean / np.linalg.norm(mean), atol=1e-5)
    assert zoo.load("dlib_resnet", form="backbone").trainable


@pytest.mark.slow
def test_a_loaded_set_preset_fine_tunes_its_head_only_unless_asked(serena_chips, tmp_path):
    model = zoo.load("nan")
    assert not model.backbone.trainable and model.head.trainable
    backbone_params = sum(int(np.prod(w.shape)) for w in model.backbone.weights)
    trainable = sum(int(np.prod(w.shape)) for w in model.trainable_weights)
    assert trainable == sum(int(np.prod(w.shape)) for w in model.head.trainable_weights)
    assert trainable < backbone_params / 100
    before = [w.copy() for w in model.backbone.get_weights()]
    images = np.stack([serena_chips[:2], serena_chips[[1, 2]]])
    x = {"images": images, "mask": np.ones((2, 2), bool)}
    reference = model.predict(x, verbose=0)["embedding"]
    model.compile(
        optimizer=keras.optimizers.Adam(1e-4), loss={"embedding": ContrastiveLoss(pairs="batch")}
    )
    model.fit(x, {"embedding": np.array([0, 0])}, epochs=1, verbose=0)
    for old, new in zip(before, model.backbone.get_weights(), strict=True):
        np.testing.assert_array_equal(old, new)  # batch norm statistics included
    after = model.predict(x, verbose=0)["embedding"]
    assert np.min(np.sum(reference * after, axis=1)) > 0.99  # one small head step
    model.save(tmp_path / "tuned.keras")
    restored = keras.saving.load_model(tmp_path / "tuned.keras")
    assert [w.path for w in restored.trainable_weights] == [w.path for w in model.trainable_weights]
    end_to_end = zoo.load("nan", trainable_backbone=True)
    assert end_to_end.backbone.trainable
    assert len(end_to_end.trainable_weights) > len(model.trainable_weights)


@pytest.mark.parametrize("name", ("nan", "qan"))
def test_set_model_equals_backbone_then_head_and_weights_sum_to_one(name, serena_chips):
    model = zoo.load(name)
    images = keras.ops.convert_to_tensor(serena_chips[None])  # one set of 3 frames
    mask = keras.ops.convert_to_tensor([[True, True, False]])  # the ruined frame is padding
    out = model({"images": images, "mask": mask})
    frames = {"frame_embeddings": model.backbone(serena_chips[:2])[None], "mask": mask[:, :2]}
    texture = model.backbone.feature_extractor()(serena_chips[:2])["texture"]
    frames["frame_features"] = texture[None]
    expected = model.head(frames)
    np.testing.assert_allclose(out["embedding"], expected["embedding"], atol=1e-5)
    weights = keras.ops.convert_to_numpy(out["weights"])
    assert weights[0, 2] == 0 and abs(weights.sum() - 1) < 1e-5


@pytest.mark.parametrize("name", ("nan", "qan"))
def test_a_ruined_frame_moves_the_trained_head_less_than_the_mean(name, serena_chips):
    """Adding a blurred, noisy frame to a clean set of two: the trained head's set embedding
    turns by a smaller angle than the plain mean of normalised frames (SeqFace's set rule)."""
    model = zoo.load(name)
    backbone = model.backbone
    frames = backbone(serena_chips)[None]
    clean = keras.ops.convert_to_tensor([[True, True, False]])
    full = keras.ops.convert_to_tensor([[True, True, True]])

    def turn(head, **extra):
        before = head({"frame_embeddings": frames, "mask": clean, **extra})["embedding"]
        after = head({"frame_embeddings": frames, "mask": full, **extra})["embedding"]
        return 1 - float(np.sum(np.asarray(before) * np.asarray(after)))

    extra = {"frame_features": backbone.feature_extractor()(serena_chips)["texture"][None]}
    trained, mean = turn(model.head, **extra), turn(SeqFaceHead(128))
    assert trained < 0.7 * mean, (trained, mean)
