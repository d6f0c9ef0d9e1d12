"""Export options (batch-norm folding, XLA, float16), NAN and QAN set models, and ExportSpec
checks."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from tensorflow.core.protobuf import saved_model_pb2

from keras_faceset.export import ExportSpec, export_saved_model
from keras_faceset.models import NAN, QAN, MeanHead, QANHead
from keras_faceset.models.backbones.inception_resnet_v1 import PerImageStandardization
from tests.export.helpers import (
    DIM,
    SIZE,
    encode,
    reference_embed,
    reference_frames,
    reference_sets,
    saved_variable_count,
    tiny_backbone,
)
from tests.models.set_helpers import TinyBackbone, randomize


def _library(model_dir):
    saved = saved_model_pb2.SavedModel.FromString((model_dir / "saved_model.pb").read_bytes())
    return saved.meta_graphs[0].graph_def.library.function


def _convolutions_in(model_dir, dtype: tf.DType) -> list:
    """The saved graph's Conv2D nodes computing in `dtype`."""
    return [
        node
        for function in _library(model_dir)
        for node in function.node_def
        if node.op == "Conv2D" and node.attr["T"].type == dtype.as_datatype_enum
    ]


def _export(spec, tmp_path, **options):
    return tf.saved_model.load(
        str(export_saved_model(spec, tmp_path, warmup_requests=False, **options))
    )


def test_the_export_folds_batch_norm_by_default_and_serves_the_same_outputs(tmp_path, rng):
    """Folded (default) and unfolded (`fold=False`) exports of a backbone whose batch norm has
    non-trivial statistics agree on every signature; the folded one has no batch-norm
    variables (the tiny backbone: conv kernel and bias, dense kernel and bias)."""
    spec = ExportSpec.from_model(tiny_backbone(), "tiny")
    folded = export_saved_model(spec, tmp_path, warmup_requests=False)
    unfolded = export_saved_model(spec, tmp_path, fold=False, warmup_requests=False)
    assert (saved_variable_count(folded), saved_variable_count(unfolded)) == (4, 8)
    sets = rng.integers(0, 256, (2, 3, SIZE, SIZE, 3), dtype=np.uint8)
    mask = np.array([[1, 1, 0], [1, 1, 1]], bool)
    photos = rng.integers(0, 256, (3, 41, 37, 3), dtype=np.uint8)  # resized in the graph
    png = np.array([encode(photo, "png") for photo in photos], object)
    calls = {
        "serving_default": {"images": sets, "mask": mask},
        "embed_images": {"images": photos},
        "aggregate": {"embeddings": rng.normal(size=(2, 3, DIM)).astype("f4"), "mask": mask},
        "embed_encoded": {"image_bytes": png},
    }
    signatures = [tf.saved_model.load(str(d)).signatures for d in (folded, unfolded)]
    for name, inputs in calls.items():
        got, expected = (functions[name](**inputs) for functions in signatures)
        for key, value in expected.items():
            np.testing.assert_allclose(got[key], value, atol=1e-4, rtol=0, err_msg=name)
    # the unfolded export is the Keras model (the contract tests check every signature)
    np.testing.assert_allclose(
        signatures[1]["embed_images"](images=photos)["embedding"],
        reference_embed(spec.backbone, photos, (SIZE, SIZE)),
        atol=1e-5,
        rtol=0,
    )


@keras.saving.register_keras_serializable(package="keras_faceset_tests")
class _Shift(keras.layers.Layer):
    """A layer without a config (its argument is an array): it cannot be cloned."""

    def __init__(self, shift, **kwargs):
        super().__init__(**kwargs)
        self.shift = shift

    def call(self, x):
        return x + self.shift


def test_a_backbone_that_cannot_be_folded_names_the_opt_out(tmp_path):
    backbone = tiny_backbone(preprocessing=_Shift(np.full(3, -127.5, "float32")))
    with pytest.raises(ValueError, match=r"folding batch norm .* fold=False, CLI: --no-fold\): "):
        export_saved_model(ExportSpec.from_model(backbone, "tiny"), tmp_path, warmup_requests=False)
    model_dir = export_saved_model(
        ExportSpec.from_model(backbone, "tiny"), tmp_path, fold=False, warmup_requests=False
    )
    assert saved_variable_count(model_dir) == 8


def test_xla_export_is_jit_compiled_and_matches_keras(tmp_path, rng):
    backbone = tiny_backbone()
    loaded = _export(ExportSpec.from_model(backbone, "tiny"), tmp_path, xla=True)
    assert any(f.attr["_XlaMustCompile"].b for f in _library(tmp_path / "tiny" / "1"))
    images = rng.integers(0, 256, (2, 3, 40, 40, 3), dtype=np.uint8)
    mask = np.array([[1, 1, 0], [1, 1, 1]], bool)
    served = loaded.signatures["serving_default"](images=images, mask=mask)
    expected = reference_sets(backbone, images, mask, (SIZE, SIZE))
    for key in ("embedding", "weights"):
        np.testing.assert_allclose(served[key], expected[key], atol=1e-5, rtol=0)


def test_float16_export_computes_in_half_precision_and_returns_float32(tmp_path, rng):
    # FaceNet's per-image standardisation sums a whole image: it overflows float16 (-> NaN)
    # unless the export keeps the input preprocessing in float32.
    backbone = tiny_backbone(preprocessing=PerImageStandardization())
    loaded = _export(ExportSpec.from_model(backbone, "tiny"), tmp_path, float16=True)
    assert _convolutions_in(tmp_path / "tiny" / "1", tf.float16)
    assert saved_variable_count(tmp_path / "tiny" / "1") == 4  # folded, as by default
    images = rng.integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    embedding = loaded.signatures["embed_images"](images=images)["embedding"].numpy()
    assert embedding.dtype == np.float32
    expected = reference_embed(backbone, images, (SIZE, SIZE))
    np.testing.assert_allclose(embedding, expected, atol=5e-3, rtol=0)
    assert backbone.dtype_policy.name == "float32"  # the exported copy, not the model, changed


def test_bfloat16_export_computes_in_bfloat16_and_returns_float32(tmp_path, rng):
    backbone = tiny_backbone()
    loaded = _export(ExportSpec.from_model(backbone, "tiny"), tmp_path, precision="bfloat16")
    assert _convolutions_in(tmp_path / "tiny" / "1", tf.bfloat16)
    images = rng.integers(0, 256, (4, SIZE, SIZE, 3), dtype=np.uint8)
    embedding = loaded.signatures["embed_images"](images=images)["embedding"].numpy()
    assert embedding.dtype == np.float32
    expected = reference_embed(backbone, images, (SIZE, SIZE))
    cosine = np.sum(embedding * expected, axis=1)  # both unit vectors
    assert cosine.min() > 0.999, cosine  # bfloat16 keeps 8 bits of mantissa
    assert np.abs(embedding - expected).max() > 1e-6  # not the float32 graph
    for options in ({"float16": True}, {"fold": False}, {"precision": "int4"}):
        with pytest.raises(ValueError, match="precision"):
            export_saved_model(
                ExportSpec.from_model(backbone, "tiny"),
                tmp_path / "refused",
                warmup_requests=False,
                **{"precision": "bfloat16", **options},
            )


def _set_model(kind: str, rng) -> keras.Model:
    """A NAN (with a per-frame projection, so its head needs the raw frame embeddings) or a QAN
    (quality from the frame embeddings) on the tiny backbone, head weights random."""
    backbone = tiny_backbone()
    if kind == "nan":
        model = NAN.from_backbone(backbone, projection_dim=8)
    else:
        model = QAN.from_backbone(backbone, quality_input="embedding")
    weights = model.head.get_weights()
    model.head.set_weights([rng.normal(0, 0.5, w.shape).astype("float32") for w in weights])
    return model


@pytest.mark.parametrize("kind", ["nan", "qan"])
def test_a_set_model_exports_and_serves_its_own_outputs(tmp_path, rng, kind):
    model = _set_model(kind, rng)
    loaded = _export(ExportSpec.from_model(model, kind), tmp_path)
    images = rng.integers(0, 256, (2, 4, SIZE, SIZE, 3), dtype=np.uint8)
    mask = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)
    expected = model({"images": images, "mask": mask})
    served = loaded.signatures["serving_default"](images=images, mask=mask)
    frames = reference_frames(model.backbone, images.reshape(8, SIZE, SIZE, 3), (SIZE, SIZE))
    aggregated = loaded.signatures["aggregate"](embeddings=frames.reshape(2, 4, DIM), mask=mask)
    for key in ("embedding", "weights"):
        np.testing.assert_allclose(served[key], expected[key], atol=1e-5, rtol=0)
        np.testing.assert_allclose(aggregated[key], expected[key], atol=1e-5, rtol=0)
    weights = served["weights"].numpy()
    assert weights[0, 3] == 0 and np.ptp(weights[1]) > 1e-3  # masked frame out, not uniform
    np.testing.assert_allclose(weights.sum(-1), 1.0, atol=1e-6)


def test_a_head_on_frame_features_needs_a_backbone_with_a_feature_extractor():
    spec = ExportSpec("qan", tiny_backbone(), SIZE, head=QANHead(DIM, feature_shape=8))
    assert (spec.feature_shape, spec.frame_dim) == ((8,), DIM + 8)
    with pytest.raises(ValueError, match="needs a feature_extractor"):
        spec.resolved_head()


@pytest.mark.parametrize(
    ("feature_shape", "options", "atol"),
    [(12, {"xla": True}, 1e-5), ((8, 8, 12), {"float16": True}, 5e-3)],
    ids=["pooled-xla", "map-float16"],
)
def test_a_qan_on_features_exports_with_the_options(tmp_path, feature_shape, options, atol):
    """Pooled (C,) or map (h, w, C) features, flattened into the frame features; the float16
    copy of the backbone keeps its class, hence its feature_extractor()."""
    rng = np.random.default_rng(4)
    model = QAN(TinyBackbone(), randomize(QANHead(DIM, feature_shape=feature_shape), rng, 0.3))
    loaded = _export(ExportSpec.from_model(model, "qan"), tmp_path, **options)
    images = rng.integers(0, 256, (2, 3, SIZE, SIZE, 3), dtype=np.uint8)
    mask = np.array([[1, 1, 0], [1, 1, 1]], bool)
    served = loaded.signatures["serving_default"](images=images, mask=mask)
    expected = model({"images": images.astype("float32"), "mask": mask})
    frames = loaded.signatures["embed_images"](images=images.reshape(6, SIZE, SIZE, 3))
    frames = frames["frame_features"].numpy().reshape(2, 3, -1) * mask[..., None]
    assert frames.shape[-1] == DIM + int(np.prod(feature_shape))
    aggregated = loaded.signatures["aggregate"](embeddings=frames, mask=mask)
    for key in ("embedding", "weights"):
        np.testing.assert_allclose(served[key], expected[key], atol=atol, rtol=0)
        np.testing.assert_allclose(aggregated[key], served[key], atol=1e-5, rtol=0)


def test_from_model_reads_the_input_size_and_the_default_head_is_the_mean_head():
    spec = ExportSpec.from_model(tiny_backbone(), "tiny")
    assert (spec.input_size, spec.embedding_dim, spec.head) == ((SIZE, SIZE), DIM, None)
    head = spec.resolved_head()
    assert isinstance(head, MeanHead) and (head.dim, head.output_dim) == (DIM, DIM)
    frames = np.eye(3, DIM, dtype="float32")[None]
    out = head({"frame_embeddings": 3 * frames, "mask": np.array([[1, 1, 0]], bool)})
    np.testing.assert_allclose(out["weights"], [[0.5, 0.5, 0.0]])
    np.testing.assert_allclose(out["embedding"][0, :3], [2**-0.5, 2**-0.5, 0.0], atol=1e-7)


def test_from_preset_takes_the_presets_name_and_input_size():
    spec = ExportSpec.from_preset("dlib_resnet", weights=None)
    assert (spec.name, spec.input_size, spec.embedding_dim) == ("dlib_resnet", (150, 150), 128)


def _wrong_head(outputs, frames_name="frame_embeddings"):
    inputs = {
        frames_name: keras.Input((None, DIM), name=frames_name),
        "mask": keras.Input((None,), dtype="bool", name="mask"),
    }
    frames = inputs[frames_name]
    return keras.Model(inputs, outputs(keras.layers.GlobalAveragePooling1D()(frames), frames))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"name": "face net"}, "model name 'face net' must be"),
        ({"input_size": 48}, r"input_size \(48, 48\) does not match"),
        ({"input_size": (32, 0)}, "input_size must be an int or"),
        ({"head": _wrong_head(lambda p, f: p)}, "keys 'embedding' and 'weights', got [A-Z]"),
        (
            {"head": _wrong_head(lambda p, f: {"embedding": p, "weights": p}, "frames")},
            r"takes inputs \['frames', 'mask'\]; the export feeds it .* 'frame_features'",
        ),
        ({"head": _wrong_head(lambda p, f: {"embedding": p})}, r"got \['embedding'\]"),
        (
            {"head": _wrong_head(lambda p, f: {"embedding": p, "weights": f[..., 0:2]})},
            r"weights \(B, T\); got",
        ),
    ],
)
def test_spec_problems_are_clear_value_errors(kwargs, message):
    spec = {"name": "tiny", "backbone": tiny_backbone(), "input_size": SIZE} | kwargs
    with pytest.raises(ValueError, match=message):
        ExportSpec(**spec).resolved_head()


def test_a_backbone_without_a_static_input_size_needs_one():
    images = keras.Input((None, None, 3))
    pooled = keras.layers.GlobalAveragePooling2D()(keras.layers.Conv2D(4, 3)(images))
    backbone = keras.Model(images, keras.layers.Dense(DIM)(pooled))
    with pytest.raises(ValueError, match="give input_size"):
        ExportSpec.from_model(backbone, "any")
    assert ExportSpec.from_model(backbone, "any", input_size=(24, 20)).embedding_dim == DIM
