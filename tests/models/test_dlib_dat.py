"""dlib .dat parser: codec round trip, a synthetic anet_type file, clear errors; slow: parity
of the converted model with dlib itself on real aligned LFW chips."""

import importlib.util
import math
import sys

import keras
import numpy as np
import pytest

from keras_faceset.files import sha256_file
from keras_faceset.models.backbones.dlib_resnet import DLIB_MEAN, DlibResNet
from keras_faceset.models.convert.dlib_dat import (
    DatReader,
    _anet_nodes,
    convert_dlib_dat,
    load_dlib_weights,
    read_dlib_dat,
)
from tests.conftest import DLIB_DAT, LFW_DIR, REPO, require

# --- a writer of dlib's serialization format (dlib/serialize.h, dnn/core.h, dnn/layers.h) ---


def enc_int(value: int) -> bytes:
    magnitude = abs(value)
    data = magnitude.to_bytes(max(1, (magnitude.bit_length() + 7) // 8), "little")
    return bytes([len(data) | (0x80 if value < 0 else 0)]) + data


def enc_float(value: float) -> bytes:
    mantissa, exponent = math.frexp(value)
    return enc_int(int(mantissa * 2**53)) + enc_int(exponent - 53)


def enc_str(text: str) -> bytes:
    return enc_int(len(text)) + text.encode()


def enc_bool(flag: bool) -> bytes:
    return b"1" if flag else b"0"


def enc_tensor(array) -> bytes:
    array = np.asarray(array, np.float32)
    shape = (array.shape + (1, 1, 1, 1))[:4] if array.size else (0, 0, 0, 0)
    return enc_int(2) + b"".join(map(enc_int, shape)) + array.astype("<f4").tobytes()


def enc_alias(*shape: int) -> bytes:
    return enc_int(1) + b"".join(enc_int(d) for d in shape)


def _record(node, weights) -> bytes:
    """The newest dlib record versions (con_6, affine_2, relu_2, fc_3); the real file has the
    oldest (con_4, affine_, relu_, fc_2), so together both branches are read."""
    multipliers = b"".join(enc_float(m) for m in (1.0, 1.0, 1.0, 0.0))
    if node.kind == "con":
        kernel, bias = weights
        filters, channels, size, stride = node.args
        padding = 0 if stride != 1 else size // 2
        params = np.concatenate([kernel.transpose(3, 2, 0, 1).ravel(), bias])
        return (
            enc_str("con_6")
            + enc_tensor(params[:, None, None, None])
            + b"".join(enc_int(v) for v in (filters, size, size, stride, stride, padding, padding))
            + enc_alias(filters, channels, size, size)
            + enc_alias(1, filters, 1, 1)
            + multipliers
            + enc_bool(True)
            + enc_bool(False)
        )
    if node.kind == "affine":
        gamma, beta = weights
        return (
            enc_str("affine_2")
            + enc_tensor(np.concatenate([gamma, beta])[None, :, None, None])
            + enc_alias(1, len(gamma), 1, 1)
            + enc_alias(1, len(gamma), 1, 1)
            + enc_int(0)
            + enc_bool(False)
        )
    if node.kind == "fc":
        (kernel,) = weights
        rows, cols = kernel.shape
        return (
            enc_str("fc_3")
            + enc_int(cols)
            + enc_int(rows)
            + enc_tensor(kernel)
            + enc_alias(rows, cols, 1, 1)
            + enc_alias(1, cols, 1, 1)
            + enc_int(1)
            + multipliers
            + enc_bool(False)
        )
    if node.kind == "relu":
        return enc_str("relu_2") + enc_bool(False)
    if node.kind in ("max_pool", "avg_pool"):
        return enc_str(f"{node.kind}_2") + b"".join(map(enc_int, node.args))
    return enc_str("add_prev_")


def write_anet_dat(path, weights: list[list[np.ndarray]], mean=DLIB_MEAN) -> bytes:
    """A dlib `anet_type` file holding `weights` (Keras layout, dlib record order)."""
    nodes = _anet_nodes()
    empty = enc_tensor(np.zeros(0))
    flags = enc_bool(True) + enc_bool(False) + enc_bool(False)
    head = [enc_int(1), enc_str("loss_metric_2"), enc_float(0.04), enc_float(0.6)]
    head += [enc_int(1 if node.kind in ("tag", "skip") else 2) for node in reversed(nodes[1:])]
    head.append(enc_int(3))  # the add_layer over the input layer
    body = [enc_str("input_rgb_image_sized"), *map(enc_float, mean), enc_int(150), enc_int(150)]
    remaining = iter(weights)
    for index, node in enumerate(nodes):
        if node.kind in ("tag", "skip"):
            continue
        body.append(_record(node, next(remaining) if node.kind in ("con", "affine", "fc") else ()))
        body.append(flags + empty + empty + empty + (enc_int(1) if index == 0 else b""))
    assert next(remaining, None) is None
    data = b"".join(head + body)
    path.write_bytes(data)
    return data


@pytest.fixture(scope="module")
def random_model():
    keras.utils.set_random_seed(3)
    model = DlibResNet()
    rng = np.random.default_rng(4)
    model.set_weights(
        [
            rng.normal(0, 0.05, w.shape).astype("float32") + (w.ndim == 1)
            for w in model.get_weights()
        ]
    )
    return model


@pytest.fixture(scope="module")
def synthetic_dat(random_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("dat") / "anet.dat"
    write_anet_dat(path, [layer.get_weights() for layer in random_model.dlib_layers()])
    return path


def _reader(data: bytes) -> DatReader:
    import io

    return DatReader(io.BytesIO(data), "mem.dat")


@pytest.mark.parametrize("value", [0, 1, -1, 255, 256, -300, 2**31 - 1, -(2**40), 2**63 - 1])
def test_int_codec_round_trip(value):
    reader = _reader(enc_int(value))
    assert reader.read_int() == value
    assert reader.offset == len(enc_int(value))


def test_int_matches_dlib_bytes():
    # dlib's pack_int: 1 -> 01 01, 0 -> 01 00, -28 -> 81 1c, 150 -> 01 96, 256 -> 02 00 01
    assert enc_int(1) == b"\x01\x01" and enc_int(0) == b"\x01\x00"
    assert _reader(b"\x81\x1c").read_int() == -28
    assert _reader(b"\x02\x00\x01").read_int() == 256


@pytest.mark.parametrize("value", [0.0, 0.6, -122.782, 1e-30, 3.0e38, 0.1])
def test_float_codec_round_trip(value):
    assert _reader(enc_float(value)).read_float() == value


def test_float_matches_dlib_bytes():
    # loss_metric_2's margin and threshold as dlib wrote them in the real file: 0.04f and 0.6f
    reader = _reader(bytes.fromhex("030ad7a3811c039a99998118"))
    assert reader.read_float() == np.float32(0.04)
    assert reader.read_float() == np.float32(0.6)


def test_string_bool_tensor_codec_round_trip(rng):
    array = rng.normal(size=(2, 3, 4, 5)).astype("float32")
    reader = _reader(
        enc_str("con_4")
        + enc_bool(True)
        + enc_bool(False)
        + enc_tensor(array)
        + enc_alias(1, 32, 1, 1)
    )
    assert reader.read_string() == "con_4"
    assert reader.read_bool() is True and reader.read_bool() is False
    np.testing.assert_array_equal(reader.read_tensor(), array)
    assert reader.read_alias("alias") == (1, 32, 1, 1)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x00", "bad integer control byte"),
        (b"\x03\x01", "truncated: needed 3 bytes"),
        (b"", "truncated: needed 1 bytes"),
    ],
)
def test_int_errors_name_file_and_offset(data, message):
    with pytest.raises(ValueError, match=f"mem.dat: at byte \\d+: .*{message}"):
        _reader(data).read_int()


def test_bool_and_tensor_errors():
    with pytest.raises(ValueError, match="bad bool byte"):
        _reader(b"x").read_bool()
    with pytest.raises(ValueError, match="version of a tensor = 2, found 1"):
        _reader(enc_int(1)).read_tensor()


def test_synthetic_file_round_trip(random_model, synthetic_dat):
    records = read_dlib_dat(synthetic_dat)
    assert [r.kind for r in records[:4]] == ["input", "con", "affine", "con"]
    assert records[-1].kind == "fc" and len(records) == 1 + 29 + 29 + 1
    assert sum(w.size for r in records[1:] for w in r.weights) == 5_614_592
    np.testing.assert_array_equal(records[0].weights[0], np.float32(DLIB_MEAN))
    loaded = DlibResNet()
    load_dlib_weights(loaded, synthetic_dat, sha256=sha256_file(synthetic_dat))
    for ours, theirs in zip(loaded.get_weights(), random_model.get_weights(), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_truncated_file_names_file_and_offset(synthetic_dat, tmp_path):
    data = synthetic_dat.read_bytes()
    for cut in (5, 300, len(data) // 2, len(data) - 1):
        path = tmp_path / "cut.dat"
        path.write_bytes(data[:cut])
        with pytest.raises(ValueError, match="cut.dat: at byte \\d+: file truncated"):
            read_dlib_dat(path)


def test_trailing_bytes_and_wrong_sha(synthetic_dat, tmp_path):
    path = tmp_path / "long.dat"
    path.write_bytes(synthetic_dat.read_bytes() + b"\x00\x01")
    with pytest.raises(ValueError, match="2 trailing bytes"):
        read_dlib_dat(path)
    with pytest.raises(ValueError, match="sha256 .* does not match"):
        read_dlib_dat(synthetic_dat, sha256="0" * 64)


def test_wrong_shapes_and_layers_are_rejected(random_model, tmp_path):
    weights = [layer.get_weights() for layer in random_model.dlib_layers()]
    path = tmp_path / "bad.dat"
    write_anet_dat(path, weights[:-1] + [[np.zeros((256, 64), np.float32)]])
    with pytest.raises(
        ValueError,
        match=r"fc_ \(num_outputs, num_inputs\) = \(128, 256\), "
        r"found \(64, 256\)",
    ):
        read_dlib_dat(path)
    write_anet_dat(
        path, [[np.zeros((7, 7, 3, 16), np.float32), np.zeros(16, np.float32)]] + weights[1:]
    )
    with pytest.raises(ValueError, match="con_ params hold 2368 floats, expected 4736"):
        read_dlib_dat(path)
    write_anet_dat(path, weights, mean=(120.0, 117.001, 104.298))
    with pytest.raises(ValueError, match="input means"):
        load_dlib_weights(DlibResNet(), path)
    data = path.read_bytes()
    loss = len(enc_int(1) + enc_str("loss_metric_2") + enc_float(0.04) + enc_float(0.6))
    path.write_bytes(data[:loss] + enc_int(2) + data[loss:])  # one more layer: another network
    with pytest.raises(
        ValueError,
        match="bad.dat: at byte 4.: unexpected version 2 of layer "
        r"\d+ \(skip\); is this dlib's face ResNet",
    ):
        read_dlib_dat(path)


# --- the real file, against dlib itself ---


def _convert_script():
    spec = importlib.util.spec_from_file_location(
        "convert_dlib_resnet", REPO / "zoo" / "convert_dlib_resnet.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def real_model():
    return convert_dlib_dat(require(DLIB_DAT), sha256=sha256_file(DLIB_DAT))


@pytest.mark.slow
def test_real_file_is_parsed_exactly():
    import time

    start = time.perf_counter()
    records = read_dlib_dat(require(DLIB_DAT))
    assert time.perf_counter() - start < 2.0
    assert sum(w.size for r in records[1:] for w in r.weights) == 5_614_592
    np.testing.assert_array_equal(records[0].weights[0], np.float32(DLIB_MEAN))


@pytest.mark.slow
def test_parity_with_dlib_on_aligned_lfw_chips(real_model, tmp_path):
    pytest.importorskip("dlib")
    require(LFW_DIR)
    script = _convert_script()
    result = script.parity(real_model, DLIB_DAT, LFW_DIR / "lfw-deepfunneled", 50)
    print(result)
    assert result["chips"] >= 50
    assert result["max_abs_diff"] <= 1e-5
    assert result["min_cosine"] > 1 - 1e-6


@pytest.mark.slow
def test_descriptor_distances_separate_people(real_model):
    pytest.importorskip("dlib")
    script = _convert_script()
    distances = script.distance_stats(real_model, require(LFW_DIR) / "lfw-deepfunneled", 20)
    print({kind: np.round(d, 3).tolist() for kind, d in distances.items()})
    # dlib's decision threshold is 0.6
    assert np.mean(distances["same"] < 0.6) >= 0.9
    assert np.mean(distances["different"] >= 0.6) >= 0.9
    assert distances["same"].mean() < distances["different"].mean() - 0.2
