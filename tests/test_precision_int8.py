"""`precision="int8"`: TFLite full-integer quantization of a frame model (`convert_tflite`) run by
`Int8FrameModel`, against the float32 model it came from; `FaceEmbedder`'s int8 path."""

import keras
import numpy as np
import pytest

from keras_faceset.embedder import FaceEmbedder
from keras_faceset.models.quantize import Int8FrameModel, convert_tflite
from tests.conftest import DLIB_DAT, LFW_DIR, REPO, require


def _unit(x):
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _frame_model(seed: int = 0) -> keras.Model:
    """A small conv net with the preprocessing inside and a `frame_embeddings` output, as the
    presets' frame models have."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((16, 16, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, 3, activation="relu")(x)
    x = keras.layers.Conv2D(16, 3, strides=2, activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, {"frame_embeddings": keras.layers.Dense(8)(x)})


def _embeddings(model, chips):
    return _unit(model.predict_on_batch(chips)["frame_embeddings"])


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    model = _frame_model()
    chips = np.random.default_rng(0).integers(0, 256, (64, 16, 16, 3), dtype=np.uint8)
    path = tmp_path_factory.mktemp("int8") / "tiny.int8.tflite"
    convert_tflite(model, path, "int8", chips)
    return model, path


def test_int8_embeddings_follow_float32_at_any_batch_size_and_on_mirrored_views(quantized):
    model, path = quantized
    int8 = Int8FrameModel(path, threads=1)
    chips = np.random.default_rng(1).integers(0, 256, (7, 16, 16, 3)).astype(np.float32)
    for batch in (chips[:5], chips[5:], chips[:, :, ::-1], chips):  # resized; a strided view
        out = int8.predict_on_batch(batch)["frame_embeddings"]
        assert out.shape == (len(batch), 8) and out.dtype == np.float32
        cosine = np.sum(_unit(out) * _embeddings(model, batch), axis=1)
        assert cosine.min() > 0.99, cosine
    # another network's embeddings are far from them: the check above has teeth
    other = np.sum(_unit(out) * _embeddings(_frame_model(seed=1), chips), axis=1)
    assert other.max() < 0.9, other


def test_the_quantized_model_computes_in_int8(quantized):
    """Only its input and output are float32: weights and activations int8, biases int32."""
    _, path = quantized
    interpreter = Int8FrameModel(path, threads=1).interpreter
    dtypes = [np.dtype(d["dtype"]).name for d in interpreter.get_tensor_details()]
    assert dtypes.count("float32") == 2 and dtypes.count("int8") >= 6, dtypes
    ops = {op["op_name"] for op in interpreter._get_ops_details()}
    assert {"QUANTIZE", "CONV_2D", "FULLY_CONNECTED", "DEQUANTIZE"} <= ops


def test_int8_is_refused_where_there_is_nothing_to_quantize():
    with pytest.raises(ValueError, match="image preset"):
        FaceEmbedder("nan", precision="int8")
    with pytest.raises(ValueError, match="int8"):
        FaceEmbedder("dlib_resnet", precision="int4")


@pytest.mark.slow
def test_dlib_resnet_int8_is_quantized_once_cached_and_close_to_float32(tmp_path, monkeypatch):
    """Quantized into the zoo cache on first use (calibrated on LFW), reused after."""
    monkeypatch.setenv("KERAS_FACESET_DATA", str(require(LFW_DIR)))
    monkeypatch.setenv("KERAS_FACESET_SOURCES", str(require(DLIB_DAT).parent))
    monkeypatch.setenv("KERAS_FACESET_HOME", str(tmp_path))
    images = sorted(str(p) for p in (REPO / "examples" / "images").glob("*.jpg"))
    float32 = FaceEmbedder("dlib_resnet").embed(images)
    first = FaceEmbedder("dlib_resnet", precision="int8")
    path = first.frame_model.path
    assert path.parent == tmp_path / "dlib_resnet"
    cached = sorted(p.name for p in path.parent.glob("*.int8.tflite*"))
    assert cached == ["dlib_resnet.int8.tflite", "dlib_resnet.int8.tflite.sha256"]
    written = path.stat().st_mtime_ns
    again = FaceEmbedder("dlib_resnet", precision="int8")
    assert again.frame_model.path == path and path.stat().st_mtime_ns == written
    int8 = again.embed(images)
    assert np.sum(int8 * float32, axis=1).min() > 0.99


def test_the_cli_offers_every_precision_and_keeps_float32_by_default():
    import argparse

    from keras_faceset.cli.common import add_model_options
    from keras_faceset.embedder import EMBEDDER_PRECISIONS

    parser = argparse.ArgumentParser()
    add_model_options(parser)
    (option,) = [a for a in parser._actions if a.dest == "precision"]
    assert tuple(option.choices) == EMBEDDER_PRECISIONS and option.default == "float32"
    assert parser.parse_args(["facenet", "--precision", "int8"]).precision == "int8"
    dynamic = parser.parse_args(["facenet", "--precision", "int8-dynamic"])
    assert dynamic.precision == "int8-dynamic" and dynamic.calibration is None


INT8_DYNAMIC_COSINE = 0.999
"""Worst cosine of a preset's int8-dynamic embeddings to its float32 ones on the example
photos: measured 0.99981 (dlib_resnet) and 0.99946 (facenet); on 256 LFW View 2 faces
0.99973 and 0.99832 (means 0.99983 and 0.99967)."""


@pytest.mark.slow
def test_dlib_resnet_int8_dynamic_needs_no_lfw_and_is_close_to_float32(tmp_path, monkeypatch):
    """Converted into the zoo cache with LFW out of reach; an image's embedding is the same
    alone as in a batch (activations quantized per image)."""
    monkeypatch.setenv("KERAS_FACESET_DATA", str(tmp_path / "no-lfw-here"))
    monkeypatch.setenv("KERAS_FACESET_SOURCES", str(require(DLIB_DAT).parent))
    monkeypatch.setenv("KERAS_FACESET_HOME", str(tmp_path))
    images = sorted(str(p) for p in (REPO / "examples" / "images").glob("*.jpg"))
    float32 = FaceEmbedder("dlib_resnet")
    dynamic = FaceEmbedder("dlib_resnet", precision="int8-dynamic")
    assert dynamic.frame_model.path == tmp_path / "dlib_resnet" / "dlib_resnet.int8-dynamic.tflite"
    chips = float32.chips(images)
    expected = _unit(float32.frame_outputs(chips)["frame_embeddings"])
    together = _unit(dynamic.frame_outputs(chips)["frame_embeddings"])
    cosine = np.sum(together * expected, axis=1)
    assert cosine.min() > INT8_DYNAMIC_COSINE, cosine
    assert np.abs(together - expected).max() > 1e-4  # quantized, not float32
    alone = np.concatenate(
        [_unit(dynamic.frame_outputs(chip[None])["frame_embeddings"]) for chip in chips]
    )
    np.testing.assert_array_equal(alone, together)
