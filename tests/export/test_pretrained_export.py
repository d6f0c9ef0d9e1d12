"""Real-weights exports (slow): FaceNet, dlib ResNet and the nan and qan presets served in a
fresh process equal Keras."""

import json

import numpy as np
import pytest
import tensorflow as tf

from keras_faceset.export import ExportSpec, export_saved_model
from keras_faceset.models.convert import convert_dlib_dat, convert_facenet_h5
from tests.conftest import DLIB_DAT, REPO, require
from tests.export.helpers import (
    SetModelContract,
    decode,
    fresh_results,
    nonstandard_ops,
    reference_embed,
    reference_mean,
    reference_outputs,
    reference_sets,
    start_fresh_process,
)

pytestmark = pytest.mark.slow
FACES = sorted((REPO / "examples" / "images").glob("*.jpg"))  # LFW 250 x 250 JPEGs


def _model(name, request):
    if name == "facenet":
        return convert_facenet_h5(request.getfixturevalue("facenet_h5"))
    return convert_dlib_dat(require(DLIB_DAT))


@pytest.mark.parametrize("name", ["facenet", "dlib_resnet"])
def test_real_weights_export_matches_keras_in_a_fresh_process(name, request, tmp_path):
    model = _model(name, request)
    spec = ExportSpec.from_model(model, name)
    size = spec.input_size
    target = export_saved_model(spec, tmp_path / "models")
    jpegs = [require(path).read_bytes() for path in FACES]
    faces = np.stack([decode(data) for data in jpegs])  # (3, 250, 250, 3): resized in the graph
    crops = tf.image.resize(faces[:, 45:205, 45:205].astype("float32"), size).numpy()
    crops = np.round(crops).astype(np.uint8)
    sets, mask = np.stack([crops, crops[::-1]]), np.array([[1, 1, 0], [1, 1, 1]], bool)
    frames = reference_embed(model, crops, size)
    calls = {
        "sets": ("serving_default", {"images": sets, "mask": mask}),
        "faces": ("embed_images", {"images": faces}),
        "crops": ("embed_images", {"images": crops}),
        "aggregate": ("aggregate", {"embeddings": np.stack([frames, frames]), "mask": mask}),
        "jpeg": ("embed_encoded", {"image_bytes": np.array(jpegs, object)}),
    }
    expected = {
        "sets": reference_sets(model, sets, mask, size),
        "faces": {"embedding": reference_embed(model, faces, size)},
        "crops": reference_outputs(model, crops, size),
        "aggregate": reference_mean(np.stack([frames, frames]), mask),
        "jpeg": {"embedding": reference_embed(model, faces, size)},
    }
    results = fresh_results(start_fresh_process(target, calls, tmp_path), tmp_path)
    assert "keras_faceset" not in set(results["modules"])
    diffs = {}
    for loader in ("tf2", "v1"):
        for call, outputs in expected.items():
            for key, value in outputs.items():
                got = results[f"{loader}|{call}|{key}"]
                diffs[f"{loader} {call} {key}"] = float(np.max(np.abs(got - value)))
                np.testing.assert_allclose(got, value, atol=1e-5, rtol=0, err_msg=call)
    print(json.dumps({name: max(diffs.values())}))
    same, other = frames[1] @ frames[2], frames[0] @ frames[1]  # Serena twice vs Powell
    assert same > other


@pytest.mark.parametrize("name", ["facenet", "dlib_resnet"])
def test_float16_export_stays_close_to_float32(name, request, tmp_path):
    model = _model(name, request)
    spec = ExportSpec.from_model(model, name)
    loaded = tf.saved_model.load(
        str(export_saved_model(spec, tmp_path, float16=True, warmup_requests=False))
    )
    jpegs = [require(path).read_bytes() for path in FACES]
    embedding = loaded.signatures["embed_encoded"](image_bytes=jpegs)["embedding"].numpy()
    expected = reference_embed(model, np.stack([decode(data) for data in jpegs]), spec.input_size)
    cosine = np.sum(embedding * expected, axis=-1)
    print(json.dumps({f"{name} float16 cosine to float32": cosine.tolist()}))
    assert embedding.dtype == np.float32 and np.all(cosine > 0.999), cosine


def test_cli_export_of_the_nan_preset_serves_its_set_embedding(tmp_path):
    """`keras-faceset export nan BASE` (the user's command) answers like `zoo.load("nan")`."""
    import subprocess
    import sys

    import keras

    from keras_faceset import zoo
    from keras_faceset.embedder import FaceEmbedder

    command = [sys.executable, "-m", "keras_faceset.cli", "export", "nan", str(tmp_path / "m")]
    subprocess.run(command, check=True, capture_output=True, timeout=900)
    target = tmp_path / "m" / "nan" / "1"
    chips = FaceEmbedder("dlib_resnet", weights=None).chips(FACES)  # (3, 150, 150, 3) uint8
    sets, mask = np.stack([chips, chips[::-1]]), np.array([[1, 1, 0], [1, 1, 1]], bool)
    model = zoo.load("nan")
    keras_out = model(
        {
            "images": keras.ops.convert_to_tensor(sets.astype("float32")),
            "mask": keras.ops.convert_to_tensor(mask),
        }
    )
    calls = {"sets": ("serving_default", {"images": sets, "mask": mask})}
    results = fresh_results(start_fresh_process(target, calls, tmp_path), tmp_path)
    assert "keras_faceset" not in set(results["modules"])
    for loader in ("tf2", "v1"):
        for key in ("embedding", "weights"):
            np.testing.assert_allclose(
                results[f"{loader}|sets|{key}"], keras_out[key], atol=1e-5, rtol=0
            )


@pytest.mark.parametrize("name", ["nan", "qan"])
def test_set_preset_export_keeps_the_serving_contract(name, monkeypatch, tmp_path):
    """The shipped set heads (reading dlib's 448 texture statistics): every signature in a
    fresh TF-only process (eager and TF1 graph mode) equals `zoo.load(name)` in process, a
    cached gallery (`embed_images` -> `aggregate`) equals `serving_default`, warm-up replays,
    `saved_model_cli` lists the documented signatures, and every op is a standard kernel."""
    from keras_faceset import zoo
    from keras_faceset.embedder import FaceEmbedder

    monkeypatch.setenv("KERAS_FACESET_SOURCES", str(require(DLIB_DAT).parent))
    model = zoo.load(name)
    assert model.head.feature_shape == (448,)
    jpegs = [require(path).read_bytes() for path in FACES]
    chips = FaceEmbedder("dlib_resnet", weights=None).chips(FACES)  # (3, 150, 150, 3) uint8
    sets, mask = np.stack([chips, chips[::-1]]), np.array([[1, 1, 0], [1, 1, 1]], bool)
    faces = np.stack([decode(data) for data in jpegs])  # 250 x 250: resized in the graph
    contract = SetModelContract(
        model, name, (150, 150), tmp_path / "models", tmp_path, sets, mask, faces, jpegs
    )
    try:
        assert contract.frame_dim == 128 + int(np.prod(model.head.feature_shape or (0,)))
        worst = contract.check_parity(1e-5)
        contract.check_cached_gallery(1e-5)
        contract.check_warmup()
        contract.check_cli()
        assert not nonstandard_ops(contract.model_dir)
    finally:
        contract.close()
    weights = contract.expected["sets"]["weights"]
    print(json.dumps({f"{name} max |exported - keras|": worst, "weights": weights.tolist()}))
