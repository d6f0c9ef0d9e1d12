"""The serving contract of an exported SavedModel (tiny random-weight backbone, mean head):
fresh-process parity for every signature (eager and TF1 graph mode), standard ops only,
`saved_model_cli` listing, warm-up records, clean failures on bad requests."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_faceset.export import SIGNATURES, ExportSpec, export_saved_model
from keras_faceset.export.module import MASK_MISMATCH
from tests.conftest import REPO
from tests.export.helpers import (
    DIM,
    SIZE,
    VENV_BIN,
    decode,
    documented_signatures,
    encode,
    fresh_results,
    nonstandard_ops,
    op_types,
    parse_saved_model_cli,
    reference_mean,
    reference_outputs,
    reference_sets,
    start,
    start_fresh_process,
    tiny_backbone,
)

ATOL = 1e-5
DOCUMENTED = documented_signatures(DIM, DIM)
"""The signatures as docs/serving.md documents them (D = F = 16 for the tiny backbone)."""


def _requests(backbone, rng):
    """`{call: (signature, inputs)}` and the expected outputs computed with Keras and NumPy."""
    size = (SIZE, SIZE)

    def uint8(*shape):
        return rng.integers(0, 256, shape, dtype=np.uint8)

    sets, sets_mask = uint8(3, 3, SIZE, SIZE, 3), np.array([[1, 1, 0], [1, 0, 0], [0, 0, 0]], bool)
    other_sets, other_mask = uint8(2, 2, 40, 48, 3), np.array([[1, 1], [1, 0]], bool)
    images, other_images = uint8(4, SIZE, SIZE, 3), uint8(2, 45, 37, 3)
    frames = rng.normal(size=(2, 3, DIM)).astype("float32")
    frames_mask = np.array([[1, 0, 1], [0, 0, 0]], bool)
    small, photo = uint8(20, 24, 3), uint8(36, 30, 3)
    png, jpeg, native = encode(small, "png"), encode(photo, "jpeg"), encode(images[0], "png")
    assert np.array_equal(decode(png), small)  # PNG is lossless: the original pixels

    def embed(x):
        return reference_outputs(backbone, x, size)

    calls = {
        "sets": ("serving_default", {"images": sets, "mask": sets_mask}),
        "sets_resized": ("serving_default", {"images": other_sets, "mask": other_mask}),
        "images": ("embed_images", {"images": images}),
        "images_resized": ("embed_images", {"images": other_images}),
        "aggregate": ("aggregate", {"embeddings": frames, "mask": frames_mask}),
        "png": ("embed_encoded", {"image_bytes": np.array([png], object)}),
        "png_decoded": ("embed_images", {"images": decode(png)[None]}),
        "jpeg": ("embed_encoded", {"image_bytes": np.array([jpeg], object)}),
        "jpeg_decoded": ("embed_images", {"images": decode(jpeg)[None]}),
        "encoded_batch": ("embed_encoded", {"image_bytes": np.array([png, jpeg, native], object)}),
    }
    expected = {
        "sets": reference_sets(backbone, sets, sets_mask, size),
        "sets_resized": reference_sets(backbone, other_sets, other_mask, size),
        "images": embed(images),
        "images_resized": embed(other_images),
        "aggregate": reference_mean(frames, frames_mask),
        "png": embed(small[None]),
        "png_decoded": embed(small[None]),
        "jpeg": embed(decode(jpeg)[None]),
        "jpeg_decoded": embed(decode(jpeg)[None]),
        "encoded_batch": {
            key: np.concatenate([embed(x[None])[key] for x in (small, decode(jpeg), images[0])])
            for key in ("embedding", "frame_features")
        },
    }
    return calls, expected


class Contract:
    """One export of the tiny model, with a fresh process and saved_model_cli started on it."""

    def __init__(self, tmp_path_factory):
        keras.utils.set_random_seed(0)
        self.backbone = tiny_backbone()
        self.model_dir = export_saved_model(
            ExportSpec.from_model(self.backbone, "tiny"), tmp_path_factory.mktemp("models")
        )
        self.calls, self.expected = _requests(self.backbone, np.random.default_rng(1))
        self.work = tmp_path_factory.mktemp("fresh")
        self.fresh = start_fresh_process(self.model_dir, self.calls, self.work)
        cli = [str(VENV_BIN / "saved_model_cli"), "show", "--dir", str(self.model_dir), "--all"]
        self.cli = start(cli, self.work / "saved_model_cli.txt")

    def close(self):
        for process in (self.fresh, self.cli):
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def contract(tmp_path_factory):
    contract = Contract(tmp_path_factory)
    yield contract
    contract.close()


@pytest.fixture(scope="module")
def results(contract):
    return fresh_results(contract.fresh, contract.work)


@pytest.fixture(scope="module")
def loaded(contract):
    return tf.saved_model.load(str(contract.model_dir))


def test_the_fresh_process_imports_tensorflow_but_never_keras_faceset(results):
    modules = set(results["modules"])
    assert "tensorflow" in modules
    assert "keras_faceset" not in modules


@pytest.mark.parametrize("loader", ["tf2", "v1"])
def test_every_signature_matches_keras_in_a_fresh_process(contract, results, loader):
    assert {signature for signature, _ in contract.calls.values()} == set(SIGNATURES)
    for call, expected in contract.expected.items():
        for name, value in expected.items():
            got = results[f"{loader}|{call}|{name}"]
            assert got.dtype == np.float32 and got.shape == value.shape, (call, name, got.shape)
            np.testing.assert_allclose(got, value, atol=ATOL, rtol=0, err_msg=f"{call} {name}")


def test_masked_frames_get_zero_weight_and_an_all_masked_set_a_zero_embedding(results):
    weights, embedding = results["tf2|sets|weights"], results["tf2|sets|embedding"]
    np.testing.assert_array_equal(weights, [[0.5, 0.5, 0], [1, 0, 0], [0, 0, 0]])
    np.testing.assert_allclose(np.linalg.norm(embedding[:2], axis=-1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(embedding[2], 0.0)


def test_png_and_jpeg_bytes_embed_exactly_like_the_decoded_images(results):
    for fmt in ("png", "jpeg"):
        np.testing.assert_array_equal(
            results[f"tf2|{fmt}|embedding"], results[f"tf2|{fmt}_decoded|embedding"]
        )
    batch = results["tf2|encoded_batch|embedding"]
    np.testing.assert_allclose(batch[:1], results["tf2|png|embedding"], atol=ATOL, rtol=0)


def test_graph_mode_rejects_a_mismatched_mask_with_a_clear_message(results):
    assert MASK_MISMATCH in str(results["v1_mask_error"])


def test_warmup_records_are_prediction_logs_that_run_through_the_loaded_model(results):
    signatures = [str(results[f"warmup|{i}|signature"]) for i in range(len(SIGNATURES))]
    assert signatures == list(SIGNATURES)
    assert "warmup|4|model" not in results
    for i, signature in enumerate(SIGNATURES):
        assert str(results[f"warmup|{i}|model"]) == "tiny"
        embedding = results[f"warmup|{i}|embedding"]
        assert embedding.shape == (1, DIM)
        np.testing.assert_allclose(np.linalg.norm(embedding, axis=-1), 1.0, atol=1e-6)
        if signature in ("serving_default", "aggregate"):
            np.testing.assert_allclose(results[f"warmup|{i}|weights"], [[0.5, 0.5]])


def test_saved_model_cli_lists_the_documented_signatures(contract):
    assert contract.cli.wait(timeout=600) == 0
    listed = parse_saved_model_cli((contract.work / "saved_model_cli.txt").read_text())
    for name, documented in DOCUMENTED.items():
        assert listed[name] == documented | {"method": "tensorflow/serving/predict"}, name
    assert set(listed) == set(DOCUMENTED) | {"__saved_model_init_op"}


def test_docs_name_every_signature_input_and_output():
    docs = (REPO / "docs" / "serving.md").read_text()
    for name, documented in DOCUMENTED.items():
        assert f"`{name}`" in docs
        for entry in documented:
            assert f"`{entry.split()[1]}`" in docs, entry


def test_every_op_is_a_standard_tensorflow_kernel(contract):
    assert not nonstandard_ops(contract.model_dir)
    ops, _ = op_types(contract.model_dir)
    # the walk reaches the nested functions: backbone, decoding, resizing, input checks
    assert {"Conv2D", "DecodeImage", "ScaleAndTranslate", "EnsureShape", "Assert"} <= ops


def test_serving_default_equals_aggregate_of_embed_images(contract, loaded):
    """A cached gallery: `frame_features` of single images, re-aggregated into sets; for the
    mean head the L2-normalised `embedding`s aggregate the same (the earlier contract)."""
    images, mask = contract.calls["sets"][1]["images"], contract.calls["sets"][1]["mask"]
    frames = loaded.signatures["embed_images"](images=tf.reshape(images, (9, SIZE, SIZE, 3)))
    served = loaded.signatures["serving_default"](images=images, mask=mask)
    for output in ("frame_features", "embedding"):
        cached = tf.reshape(frames[output], (3, 3, DIM)) * tf.cast(mask[..., None], tf.float32)
        aggregated = loaded.signatures["aggregate"](embeddings=cached, mask=mask)
        for key in ("embedding", "weights"):
            np.testing.assert_allclose(aggregated[key], served[key], atol=ATOL, rtol=0)


def _images(*shape, dtype=tf.uint8):
    return tf.zeros(shape, dtype)


BAD_REQUESTS = {
    "images dtype": (
        "serving_default",
        {"images": _images(1, 2, SIZE, SIZE, 3, dtype=tf.float32), "mask": tf.ones((1, 2), bool)},
        "expected to be a uint8 tensor",
    ),
    "mask dtype": (
        "serving_default",
        {"images": _images(1, 2, SIZE, SIZE, 3), "mask": tf.ones((1, 2))},
        "expected to be a bool tensor",
    ),
    "images rank": (
        "serving_default",
        {"images": _images(2, SIZE, SIZE, 3), "mask": tf.ones((1, 2), bool)},
        "Shape of tensor images [2,32,32,3] is not compatible with expected shape [?,?,?,?,3]",
    ),
    "mask shape": (
        "serving_default",
        {"images": _images(1, 2, SIZE, SIZE, 3), "mask": tf.ones((1, 3), bool)},
        MASK_MISMATCH,
    ),
    "channels": (
        "embed_images",
        {"images": _images(1, SIZE, SIZE, 4)},
        "expected shape [?,?,?,3]",
    ),
    "embedding size": (
        "aggregate",
        {"embeddings": tf.zeros((1, 2, DIM + 1)), "mask": tf.ones((1, 2), bool)},
        f"expected shape [?,?,{DIM}]",
    ),
    "aggregate mask": (
        "aggregate",
        {"embeddings": tf.zeros((1, 2, DIM)), "mask": tf.ones((2, 2), bool)},
        MASK_MISMATCH,
    ),
    "not an image": (
        "embed_encoded",
        {"image_bytes": tf.constant([b"not an image"])},
        "Unknown image file format",
    ),
}


@pytest.mark.parametrize("case", BAD_REQUESTS, ids=list(BAD_REQUESTS))
def test_bad_requests_fail_at_the_signature_with_a_clear_message(loaded, case):
    signature, inputs, message = BAD_REQUESTS[case]
    with pytest.raises(tf.errors.InvalidArgumentError) as error:
        loaded.signatures[signature](**inputs)
    assert message in error.value.message


def test_the_restored_functions_refuse_wrong_dtypes_before_running(loaded):
    with pytest.raises(TypeError, match="uint8"):
        loaded.serving_default(
            _images(1, 2, SIZE, SIZE, 3, dtype=tf.float32), tf.ones((1, 2), bool)
        )
