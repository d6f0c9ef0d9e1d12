"""Export and serving: paths in the way, a kill mid-export, fully masked sets and non-finite
frame features at the served signatures."""

import numpy as np
import pytest
import tensorflow as tf

from keras_faceset.export import ExportSpec, export_saved_model, next_version
from keras_faceset.export.module import NOT_FINITE
from keras_faceset.models import QAN, QANHead
from tests.export.helpers import DIM, SIZE, fresh_results, start_fresh_process, tiny_backbone
from tests.export.test_options import _set_model
from tests.models.set_helpers import TinyBackbone, randomize
from tests.reliability.helpers import hidden_leftovers, kill_when, start_child


@pytest.fixture(scope="module")
def spec():
    return ExportSpec.from_model(tiny_backbone(), "tiny")


# --- 12. where the export goes --------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "file"),
    [("models", "models"), ("models", "models/tiny"), ("file/models", "file")],
    ids=["base is a file", "model folder is a file", "a parent is a file"],
)
def test_an_export_path_with_a_file_in_the_way_is_a_clear_error(spec, tmp_path, base, file):
    in_the_way = tmp_path / file
    in_the_way.parent.mkdir(parents=True, exist_ok=True)
    in_the_way.write_text("not a folder")
    with pytest.raises(NotADirectoryError, match=f"{in_the_way} is a file. Give base_dir a folder"):
        export_saved_model(spec, tmp_path / base, warmup_requests=False)
    assert in_the_way.read_text() == "not a folder"


def test_an_export_killed_before_its_rename_shows_no_version_and_the_next_one_cleans_up(
    spec, tmp_path
):
    base, signal_file, log = tmp_path / "models", tmp_path / "written", tmp_path / "child.log"
    kill_when(signal_file, start_child("export", base, signal_file, log=log), log)
    model_dir = base / "tiny"
    assert next_version(model_dir) == 1 and not [p for p in model_dir.iterdir() if p.name.isdigit()]
    (leftover,) = hidden_leftovers(model_dir)  # the complete but unrenamed SavedModel
    assert leftover.startswith(".tmp-1-") and (model_dir / leftover / "saved_model.pb").is_file()
    target = export_saved_model(spec, base, warmup_requests=False)
    assert target == model_dir / "1" and hidden_leftovers(model_dir) == []
    images = np.zeros((1, SIZE, SIZE, 3), np.uint8)
    served = tf.saved_model.load(str(target)).signatures["embed_images"](images=images)
    np.testing.assert_allclose(np.linalg.norm(served["embedding"], axis=-1), 1.0, atol=1e-6)


# --- 13. fully masked sets and non-finite features ------------------------------------------


def _set_models():
    """A NAN with a projection and a QAN scoring pooled backbone features, random heads."""
    rng = np.random.default_rng(3)
    qan = QAN(TinyBackbone(), randomize(QANHead(DIM, feature_shape=12), rng, 0.3))
    return {"nan": _set_model("nan", rng), "qan": qan}


@pytest.fixture(scope="module")
def served_sets(tmp_path_factory):
    """Each set model exported and served a batch holding a fully masked set, with the
    in-process expectations: the NAN in a fresh TensorFlow-only process (eager and TF1 graph
    mode), the QAN by the SavedModel loaded here (one fresh process is enough of a proof)."""
    rng = np.random.default_rng(5)
    images = rng.integers(0, 256, (3, 4, SIZE, SIZE, 3), dtype=np.uint8)
    mask = np.array([[1, 1, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]], bool)
    runs, results = {}, {}
    for name, model in _set_models().items():
        base = tmp_path_factory.mktemp(name)
        model_dir = export_saved_model(ExportSpec.from_model(model, name), base)
        signatures = tf.saved_model.load(str(model_dir)).signatures
        frames = signatures["embed_images"](images=images.reshape(12, SIZE, SIZE, 3))
        frames = frames["frame_features"].numpy().reshape(3, 4, -1)
        calls = {
            "sets": ("serving_default", {"images": images, "mask": mask}),
            "aggregate": ("aggregate", {"embeddings": frames, "mask": mask}),
        }
        expected = model({"images": images.astype("float32"), "mask": mask})
        if name == "nan":
            work = tmp_path_factory.mktemp(f"{name}-fresh")
            runs[name] = (start_fresh_process(model_dir, calls, work), work, expected)
            continue
        served = {
            f"tf2|{call}|{key}": value.numpy()
            for call, (signature, inputs) in calls.items()
            for key, value in signatures[signature](**inputs).items()
        }
        results[name] = served, expected
    for name, (process, work, expected) in runs.items():
        results[name] = fresh_results(process, work), expected
    return results


@pytest.mark.parametrize("name", ["nan", "qan"])
@pytest.mark.parametrize("call", ["sets", "aggregate"])
def test_a_fully_masked_set_is_served_a_zero_vector_and_zero_weights(served_sets, name, call):
    results, expected = served_sets[name]
    loaders = [loader for loader in ("tf2", "v1") if f"{loader}|{call}|embedding" in results]
    assert loaders == (["tf2", "v1"] if name == "nan" else ["tf2"])
    for loader in loaders:
        embedding = results[f"{loader}|{call}|embedding"]
        weights = results[f"{loader}|{call}|weights"]
        assert np.isfinite(embedding).all() and np.isfinite(weights).all()
        np.testing.assert_array_equal(embedding[1], 0.0)
        np.testing.assert_array_equal(weights[1], 0.0)
        for row in (0, 2):  # the other sets of the batch are untouched
            np.testing.assert_allclose(embedding[row], expected["embedding"][row], atol=1e-5)
            np.testing.assert_allclose(weights[row], expected["weights"][row], atol=1e-5)


@pytest.fixture(scope="module")
def aggregate(spec, tmp_path_factory):
    model_dir = export_saved_model(spec, tmp_path_factory.mktemp("models"), warmup_requests=False)
    return tf.saved_model.load(str(model_dir)).signatures["aggregate"]


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_a_non_finite_unmasked_frame_fails_the_request_and_a_masked_one_is_ignored(
    aggregate, value
):
    frames = np.random.default_rng(0).normal(size=(2, 3, DIM)).astype("float32")
    mask = np.array([[1, 1, 0], [1, 0, 0]], bool)
    clean = aggregate(embeddings=frames, mask=mask)
    frames[0, 2, 5] = value  # a masked frame
    ignored = aggregate(embeddings=frames, mask=mask)
    for key in ("embedding", "weights"):
        np.testing.assert_array_equal(ignored[key], clean[key])
    frames[1, 0, 3] = value  # an unmasked one
    with pytest.raises(tf.errors.InvalidArgumentError, match=NOT_FINITE.split(":")[0]):
        aggregate(embeddings=frames, mask=mask)
