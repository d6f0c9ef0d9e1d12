"""`convert_tflite`, the one TFLite converter behind `precision="int8"` (full-integer) and
`precision="int8-dynamic"` (dynamic-range) and the benchmark's float32 TFLite: each against
the Keras model it came from, on face photos (the example photos' central crops), and its
errors."""

import cv2
import numpy as np
import pytest

from keras_faceset.models.quantize import CONVERSIONS, Int8FrameModel, convert_tflite
from tests.test_embedder_int8 import PHOTOS, _variants
from tests.test_precision_int8 import _embeddings, _frame_model, _unit

DYNAMIC_COSINE = 0.9999
"""Worst cosine of int8-dynamic to float32 on the 18 photo chips below: measured 0.999990
(full int8 calibrated on them: 0.99976; another network's embeddings: 0.51)."""
FLOAT32_ATOL = 1e-6
"""float32 TFLite against Keras, per raw embedding component (measured 4.5e-8; int8-dynamic
differs by 1.1e-3)."""


@pytest.fixture(scope="module")
def photo_chips() -> np.ndarray:
    """16x16 central crops of six views of each example photo, as float32 0..255."""
    chips = []
    for photo in PHOTOS:
        for view in _variants(cv2.imread(str(photo))[:, :, ::-1]):
            side = min(view.shape[:2])
            top, left = (view.shape[0] - side) // 2, (view.shape[1] - side) // 2
            crop = view[top : top + side, left : left + side]
            chips.append(cv2.resize(crop, (16, 16), interpolation=cv2.INTER_AREA))
    return np.stack(chips).astype(np.float32)


@pytest.fixture(scope="module")
def converted(tmp_path_factory, photo_chips):
    """The small network of tests/test_precision_int8.py in each of `CONVERSIONS`."""
    model, folder = _frame_model(), tmp_path_factory.mktemp("tflite")
    paths = {}
    for precision in CONVERSIONS:
        chips = photo_chips.astype(np.uint8) if precision == "int8" else None
        paths[precision] = convert_tflite(model, folder / f"{precision}.tflite", precision, chips)
    return model, paths


def _cosines(model, path, chips):
    out = Int8FrameModel(path, threads=1).predict_on_batch(chips)["frame_embeddings"]
    return np.sum(_unit(out) * _embeddings(model, chips), axis=1), out


def test_int8_dynamic_follows_float32_closer_than_full_int8(converted, photo_chips):
    model, paths = converted
    dynamic, raw = _cosines(model, paths["int8-dynamic"], photo_chips)
    full, _ = _cosines(model, paths["int8"], photo_chips)
    assert dynamic.min() > DYNAMIC_COSINE, dynamic
    assert dynamic.min() > full.min(), (dynamic.min(), full.min())
    float32 = model.predict_on_batch(photo_chips)["frame_embeddings"]
    assert np.abs(raw - float32).max() > 1e-4  # quantized, not float32
    other = np.sum(_unit(raw) * _embeddings(_frame_model(seed=1), photo_chips), axis=1)
    assert other.max() < 0.9, other  # the bound has teeth


def test_float32_tflite_is_the_keras_model(converted, photo_chips):
    model, paths = converted
    out = Int8FrameModel(paths["float32"], threads=1).predict_on_batch(photo_chips)
    expected = model.predict_on_batch(photo_chips)["frame_embeddings"]
    np.testing.assert_allclose(out["frame_embeddings"], expected, atol=FLOAT32_ATOL, rtol=0)


def test_int8_dynamic_keeps_int8_weights_and_float32_activations(converted):
    """The kernels of at least 1,024 weights (TFLite's threshold: here the second convolution's,
    16x3x3x8) are int8 per channel, everything else float32: no activation is int8 in the
    file (full int8 has int8 activations)."""
    _, paths = converted
    tensors = Int8FrameModel(paths["int8-dynamic"], threads=1).interpreter.get_tensor_details()
    (kernel,) = [t for t in tensors if np.dtype(t["dtype"]) == np.int8]
    assert list(kernel["shape"]) == [16, 3, 3, 8]
    assert len(kernel["quantization_parameters"]["scales"]) == 16  # per output channel
    full = Int8FrameModel(paths["int8"], threads=1).interpreter.get_tensor_details()
    assert sum(np.dtype(t["dtype"]) == np.int8 for t in full) >= 6


def test_a_dynamic_embedding_does_not_depend_on_its_batch(converted, photo_chips):
    """Activations are quantized per image: one chip alone gives what it gives in a batch."""
    _, paths = converted
    model = Int8FrameModel(paths["int8-dynamic"], threads=1)
    batch = model.predict_on_batch(photo_chips)["frame_embeddings"]
    alone = np.concatenate(
        [model.predict_on_batch(chip[None])["frame_embeddings"] for chip in photo_chips]
    )
    np.testing.assert_array_equal(alone, batch)  # measured: bit for bit


@pytest.mark.parametrize(
    "precision, chips, message",
    [
        ("int4", None, "unknown TFLite precision 'int4'; expected one of ('float32', 'int8', "),
        ("int8", None, "needs calibration chips"),
        ("int8-dynamic", np.zeros((1, 16, 16, 3), np.uint8), "int8-dynamic take none"),
        ("float32", np.zeros((1, 16, 16, 3), np.uint8), "chips given"),
    ],
)
def test_conversion_errors_name_the_remedy(tmp_path, precision, chips, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        convert_tflite(_frame_model(), tmp_path / "x.tflite", precision, chips)
    assert not (tmp_path / "x.tflite").exists()
