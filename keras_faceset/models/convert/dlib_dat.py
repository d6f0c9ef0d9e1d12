"""dlib's `dlib_face_recognition_resnet_model_v1.dat` -> `DlibResNet` weights (no dlib needed).

dlib's serialization (dlib/serialize.h, dlib/dnn/core.h, layers.h, input.h, cuda/tensor.h):
- integer: a control byte (low 4 bits = byte count N, bit 7 = sign) + N little-endian bytes;
- float/double: two integers, mantissa then exponent, value = ldexp(mantissa, exponent);
- string: integer length + bytes; bool: the character '0' or '1';
- tensor: integer version 2, n, k, nr, nc, then n*k*nr*nc little-endian IEEE float32.
`add_loss_layer` writes its version and loss record, then its subnetwork; every `add_layer`
writes its version, its subnetwork, then its layer record and a trailer (state flags, cached
tensors); tag and skip layers write only their version. So the versions of all layers come
first, top-down, and the layer records follow bottom-up, in execution order; reading them needs
the network definition (`anet_type`), rebuilt here from `dlib_resnet.STAGES`.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from keras_faceset.files import sha256_file
from keras_faceset.models.backbones.dlib_resnet import (
    DLIB_MEAN,
    EMBEDDING_DIM,
    IMAGE_SIZE,
    STAGES,
    STEM_FILTERS,
    DlibResNet,
)

_CONV_MODE = 0
_FC_NO_BIAS = 1


@dataclass(frozen=True)
class DlibRecord:
    """One parsed layer record holding numbers, with its weights in Keras layout.

    kind "input": (mean (3,),); "con": (kernel (kh, kw, C, F), bias (F,));
    "affine": (gamma (C,), beta (C,)); "fc": (kernel (in, out),).
    """

    kind: str
    weights: tuple[np.ndarray, ...]
    offset: int
    """Byte offset of the record in the file (for error messages)."""


class DatReader:
    """Streaming reader of dlib's serialization primitives; errors name the file and offset."""

    def __init__(self, stream: BinaryIO, name: str):
        self.stream = stream
        self.name = name
        self.offset = 0

    def error(self, message: str, offset: int | None = None) -> ValueError:
        at = self.offset if offset is None else offset
        return ValueError(f"{self.name}: at byte {at}: {message}")

    def read_bytes(self, count: int, what: str) -> bytes:
        data = self.stream.read(count)
        if len(data) != count:
            raise self.error(
                f"file truncated: needed {count} bytes for {what}, only {len(data)} left"
            )
        self.offset += count
        return data

    def read_int(self, what: str = "an integer") -> int:
        start = self.offset
        control = self.read_bytes(1, what)[0]
        size = control & 0x0F
        if size == 0 or size > 8 or control & 0x70:
            raise self.error(f"bad integer control byte 0x{control:02x} for {what}", start)
        value = int.from_bytes(self.read_bytes(size, what), "little")
        return -value if control & 0x80 else value

    def read_float(self, what: str = "a float") -> float:
        mantissa = self.read_int(what)
        exponent = self.read_int(what)
        return math.ldexp(mantissa, exponent)

    def read_string(self, what: str = "a string") -> str:
        length = self.read_int(what)
        if length < 0 or length > 1024:
            raise self.error(f"implausible string length {length} for {what}")
        return self.read_bytes(length, what).decode("latin-1")

    def read_bool(self, what: str = "a bool") -> bool:
        char = self.read_bytes(1, what)
        if char not in (b"0", b"1"):
            raise self.error(f"bad bool byte {char!r} for {what}", self.offset - 1)
        return char == b"1"

    def read_tensor(self, what: str = "a tensor") -> np.ndarray:
        """A `resizable_tensor`, shape (n, k, nr, nc), float32."""
        self.expect_int(2, f"the version of {what}")
        shape = tuple(self.read_int(f"the shape of {what}") for _ in range(4))
        if any(dim < 0 for dim in shape):
            raise self.error(f"negative shape {shape} for {what}")
        count = math.prod(shape)
        data = self.read_bytes(4 * count, f"{count} floats of {what}")
        return np.frombuffer(data, "<f4").astype(np.float32).reshape(shape)

    def read_alias(self, what: str) -> tuple[int, int, int, int]:
        """An `alias_tensor`: version 1 then its shape (n, k, nr, nc), no data."""
        self.expect_int(1, f"the version of {what}")
        return tuple(self.read_int(f"the shape of {what}") for _ in range(4))

    def expect_alias(self, expected: tuple[int, int, int, int], what: str) -> None:
        start = self.offset
        if (found := self.read_alias(what)) != expected:
            raise self.error(f"expected {what} of shape {expected}, found {found}", start)

    def expect_int(self, expected: int, what: str) -> None:
        start = self.offset
        found = self.read_int(what)
        if found != expected:
            raise self.error(f"expected {what} = {expected}, found {found}", start)

    def expect_ints(self, expected: tuple[int, ...], what: str) -> None:
        start = self.offset
        found = tuple(self.read_int(what) for _ in expected)
        if found != expected:
            raise self.error(f"expected {what} = {expected}, found {found}", start)

    def expect_false(self, what: str) -> None:
        if self.read_bool(what):
            raise self.error(f"{what} is set; dlib's anet_type has it unset")

    def read_version(self, allowed: tuple[str, ...], what: str) -> str:
        start = self.offset
        version = self.read_string(f"the version of {what}")
        if version not in allowed:
            raise self.error(
                f"expected {what} record {' or '.join(allowed)}, found {version!r}", start
            )
        return version


@dataclass(frozen=True)
class _Node:
    """One wrapper of dlib's network type: an add_layer ("con", "affine", ...), "tag" or "skip"."""

    kind: str
    args: tuple[int, ...] = ()


def _anet_nodes() -> list[_Node]:
    """dlib's `anet_type` below the loss, bottom-up (execution order), input layer excluded."""
    nodes = [
        _Node("con", (STEM_FILTERS, 3, 7, 2)),
        _Node("affine", (STEM_FILTERS,)),
        _Node("relu"),
        _Node("max_pool", (3, 3, 2, 2, 0, 0)),
    ]
    channels = STEM_FILTERS
    for filters, units, downsample in STAGES:
        for unit in range(units):
            down = downsample and unit == 0
            nodes += [
                _Node("tag", (1,)),
                _Node("con", (filters, channels, 3, 2 if down else 1)),
                _Node("affine", (filters,)),
                _Node("relu"),
                _Node("con", (filters, filters, 3, 1)),
                _Node("affine", (filters,)),
            ]
            if down:
                nodes += [
                    _Node("tag", (2,)),
                    _Node("skip", (1,)),
                    _Node("avg_pool", (2, 2, 2, 2, 0, 0)),
                    _Node("add_prev", (2,)),
                ]
            else:
                nodes.append(_Node("add_prev", (1,)))
            nodes.append(_Node("relu"))
            channels = filters
    return nodes + [_Node("avg_pool", (0, 0, 1, 1, 0, 0)), _Node("fc", (EMBEDDING_DIM, channels))]


def _read_input(reader: DatReader) -> DlibRecord:
    start = reader.offset
    reader.read_version(("input_rgb_image_sized",), "input_rgb_image_sized")
    mean = np.array([reader.read_float("an input mean") for _ in range(3)], np.float32)
    reader.expect_ints((IMAGE_SIZE, IMAGE_SIZE), "the input size")
    return DlibRecord("input", (mean,), start)


def _read_con(reader: DatReader, filters: int, channels: int, size: int, stride: int) -> DlibRecord:
    start = reader.offset
    version = reader.read_version(("con_4", "con_5", "con_6"), "con_")
    params = reader.read_tensor("con_ params")
    padding = 0 if stride != 1 else size // 2
    reader.expect_ints(
        (filters, size, size, stride, stride, padding, padding),
        "con_ (filters, nr, nc, stride_y, stride_x, padding_y, padding_x)",
    )
    reader.expect_alias((filters, channels, size, size), "con_ filters")
    reader.expect_alias((1, filters, 1, 1), "con_ biases")
    for what in ("learning rate", "weight decay", "bias learning rate", "bias weight decay"):
        reader.read_float(f"con_ {what} multiplier")
    if version in ("con_5", "con_6") and not reader.read_bool("con_ use_bias"):
        raise reader.error("con_ has use_bias unset; dlib's anet_type convolutions have biases")
    if version == "con_6":
        reader.expect_false("con_ use_relu")
    n_kernel = filters * channels * size * size
    if params.size != n_kernel + filters:
        raise reader.error(
            f"con_ params hold {params.size} floats, expected {n_kernel + filters}", start
        )
    flat = params.reshape(-1)
    kernel = flat[:n_kernel].reshape(filters, channels, size, size).transpose(2, 3, 1, 0)
    return DlibRecord("con", (np.ascontiguousarray(kernel), flat[n_kernel:].copy()), start)


def _read_affine(reader: DatReader, channels: int) -> DlibRecord:
    start = reader.offset
    version = reader.read_version(("affine_", "affine_2"), "affine_")
    params = reader.read_tensor("affine_ params")
    for what in ("gamma", "beta"):
        reader.expect_alias((1, channels, 1, 1), f"affine_ {what}")
    reader.expect_int(_CONV_MODE, "affine_ mode (CONV_MODE)")
    if version == "affine_2":
        reader.expect_false("affine_ disabled")
    if params.size != 2 * channels:
        raise reader.error(
            f"affine_ params hold {params.size} floats, expected {2 * channels}", start
        )
    flat = params.reshape(-1)
    return DlibRecord("affine", (flat[:channels].copy(), flat[channels:].copy()), start)


def _read_fc(reader: DatReader, outputs: int, inputs: int) -> DlibRecord:
    start = reader.offset
    version = reader.read_version(("fc_2", "fc_3"), "fc_")
    reader.expect_ints((outputs, inputs), "fc_ (num_outputs, num_inputs)")
    params = reader.read_tensor("fc_ params")
    if params.shape != (inputs, outputs, 1, 1):
        raise reader.error(
            f"fc_ params have shape {params.shape}, expected {(inputs, outputs, 1, 1)}", start
        )
    reader.expect_alias((inputs, outputs, 1, 1), "fc_ weights")
    reader.read_alias("fc_ biases")
    reader.expect_int(_FC_NO_BIAS, "fc_ bias mode (FC_NO_BIAS)")
    for what in ("learning rate", "weight decay", "bias learning rate", "bias weight decay"):
        reader.read_float(f"fc_ {what} multiplier")
    if version == "fc_3":
        reader.expect_false("fc_ use_bias")
    return DlibRecord("fc", (params.reshape(inputs, outputs).copy(),), start)


def _read_details(reader: DatReader, node: _Node) -> DlibRecord | None:
    """The layer record of one add_layer; the weights for con/affine/fc, else None."""
    if node.kind == "con":
        return _read_con(reader, *node.args)
    if node.kind == "affine":
        return _read_affine(reader, *node.args)
    if node.kind == "fc":
        return _read_fc(reader, *node.args)
    if node.kind == "relu":
        if reader.read_version(("relu_", "relu_2"), "relu_") == "relu_2":
            reader.expect_false("relu_ disabled")
    elif node.kind in ("max_pool", "avg_pool"):
        reader.read_version((f"{node.kind}_2",), f"{node.kind}_")
        reader.expect_ints(
            node.args, f"{node.kind}_ (nr, nc, stride_y, stride_x, padding_y, padding_x)"
        )
    elif node.kind == "add_prev":
        reader.read_version(("add_prev_",), "add_prev_")
    else:
        raise ValueError(f"unknown dlib layer kind {node.kind!r}")
    return None


def _read_trailer(reader: DatReader, version: int, over_input: bool) -> None:
    """add_layer state after its record: flags and cached tensors, all discarded."""
    for what in (
        "this_layer_setup_called",
        "gradient_input_is_stale",
        "get_output_and_gradient_input_disabled",
    ):
        reader.read_bool(f"add_layer {what}")
    reader.read_tensor("add_layer x_grad")
    reader.read_tensor("add_layer cached_output")
    if over_input:
        reader.read_tensor("add_layer grad_final")
        if version >= 3:
            reader.read_int("add_layer sample_expansion_factor")
    elif version >= 2:
        reader.read_tensor("add_layer params_grad")


def _versions_allowed(node: _Node, over_input: bool) -> tuple[int, ...]:
    if node.kind in ("tag", "skip"):
        return (1,)
    return (2, 3) if over_input else (1, 2)


def read_dlib_dat(path: str | os.PathLike, sha256: str | None = None) -> list[DlibRecord]:
    """Parse a dlib `anet_type` file into its records in execution order: the input means, then
    each con/affine/fc's weights. The whole file must be consumed; any mismatch with
    `anet_type` (versions, sizes, strides, paddings, flags) raises ValueError."""
    name = os.fspath(path)
    if sha256 is not None and (found := sha256_file(path)) != sha256.lower():
        raise ValueError(f"{name}: sha256 {found} does not match the expected {sha256}")
    nodes = _anet_nodes()
    records: list[DlibRecord] = []
    with open(path, "rb") as stream:
        reader = DatReader(stream, name)
        reader.expect_int(1, "the add_loss_layer version")
        if reader.read_version(("loss_metric_", "loss_metric_2"), "loss") == "loss_metric_2":
            reader.read_float("loss_metric_ margin")
            reader.read_float("loss_metric_ dist_thresh")
        versions = []
        for index in range(len(nodes) - 1, -1, -1):
            node, over_input = nodes[index], index == 0
            start = reader.offset
            version = reader.read_int(f"the version of layer {index} ({node.kind})")
            if version not in _versions_allowed(node, over_input):
                raise reader.error(
                    f"unexpected version {version} of layer {index} "
                    f"({node.kind}); is this dlib's face ResNet?",
                    start,
                )
            versions.append(version)
        versions.reverse()
        records.append(_read_input(reader))
        for index, (node, version) in enumerate(zip(nodes, versions, strict=True)):
            if node.kind in ("tag", "skip"):
                continue
            record = _read_details(reader, node)
            if record is not None:
                records.append(record)
            _read_trailer(reader, version, over_input=index == 0)
        if extra := len(stream.read()):
            raise reader.error(f"{extra} trailing bytes after the network ended")
    return records


def load_dlib_weights(
    model: DlibResNet, path: str | os.PathLike, sha256: str | None = None
) -> None:
    """Set `model`'s weights from a dlib .dat file; every parsed tensor is used exactly once.
    Every record is checked against its layer first: on a mismatch nothing is assigned."""
    if not isinstance(model, DlibResNet):
        raise ValueError(f"load_dlib_weights needs a DlibResNet, got {type(model).__name__}")
    records = read_dlib_dat(path, sha256)
    mean = records[0].weights[0]
    expected_mean = (
        model.get_layer("preprocessing").mean if model.include_preprocessing else DLIB_MEAN
    )
    if not np.array_equal(mean, np.asarray(expected_mean, np.float32)):
        raise ValueError(
            f"{path}: input means {mean.tolist()} differ from the model's {list(expected_mean)}"
        )
    layers = model.dlib_layers()
    weighted = records[1:]
    if len(weighted) != len(layers):
        raise ValueError(f"{path}: {len(weighted)} weighted records for {len(layers)} layers")
    kinds = {"Conv2D": "con", "Affine": "affine", "Dense": "fc"}
    for layer, record in zip(layers, weighted, strict=True):
        shapes = [tuple(weight.shape) for weight in layer.weights]
        if kinds.get(type(layer).__name__) != record.kind or shapes != [
            w.shape for w in record.weights
        ]:
            raise ValueError(
                f"{path}: record at byte {record.offset} ({record.kind}, "
                f"{[w.shape for w in record.weights]}) does not fit layer "
                f"{layer.name} {shapes}"
            )
    for layer, record in zip(layers, weighted, strict=True):
        layer.set_weights(list(record.weights))
    used = sum(w.size for record in weighted for w in record.weights)
    assert used == model.count_params(), (used, model.count_params())


def convert_dlib_dat(path: str | os.PathLike, sha256: str | None = None) -> DlibResNet:
    """Build a `DlibResNet` (with preprocessing) holding the weights of a dlib .dat file."""
    model = DlibResNet()
    load_dlib_weights(model, path, sha256)
    return model
