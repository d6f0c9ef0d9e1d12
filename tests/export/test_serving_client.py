"""`keras_faceset.export.client` against an exported tiny model, with TF Serving's request
handling emulated: the REST JSON (after a json.dumps/loads round trip) and the gRPC
PredictRequest, decoded as the server does and fed to the loaded SavedModel, give the
in-process Keras embeddings; `ServingClient` does the same over HTTP against a local server."""

import base64
import json
import re
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_faceset.export import SIGNATURES, ExportSpec, export_saved_model
from keras_faceset.export import client as serving
from keras_faceset.export.module import MASK_MISMATCH
from tests.export.helpers import (
    DIM,
    SIZE,
    decode,
    encode,
    reference_mean,
    reference_outputs,
    reference_sets,
    rest_predict,
    rest_server,
    tiny_backbone,
)

ATOL = 1e-5
MODEL = "tiny"


class Served:
    """One export of the tiny model, loaded as TF Serving would, plus requests and the
    in-process Keras results they must give."""

    def __init__(self, tmp_path_factory):
        keras.utils.set_random_seed(0)
        self.backbone = tiny_backbone()
        base = tmp_path_factory.mktemp("models")
        model_dir = export_saved_model(
            ExportSpec.from_model(self.backbone, MODEL), base, warmup_requests=False
        )
        self.loaded = tf.saved_model.load(str(model_dir))
        rng = np.random.default_rng(2)
        size = (SIZE, SIZE)
        self.sets = rng.integers(0, 256, (2, 3, SIZE, SIZE, 3), dtype=np.uint8)
        self.mask = np.array([[1, 1, 0], [1, 0, 0]], bool)
        self.images = rng.integers(0, 256, (3, 40, 36, 3), dtype=np.uint8)
        self.frames = rng.normal(size=(2, 3, DIM)).astype("float32")
        self.paths = []
        for i, fmt in enumerate(("png", "jpeg")):
            path = base / f"face{i}.{fmt}"
            path.write_bytes(encode(self.images[i], fmt))
            self.paths.append(path)
        decoded = np.stack([decode(path.read_bytes()) for path in self.paths])
        self.expected = {
            "serving_default": reference_sets(self.backbone, self.sets, self.mask, size),
            "embed_images": reference_outputs(self.backbone, self.images, size),
            "aggregate": reference_mean(self.frames, self.mask),
            "embed_encoded": reference_outputs(self.backbone, decoded, size),
        }
        self.rest = {
            "serving_default": serving.set_request(self.sets, self.mask),
            "embed_images": serving.embed_request(self.images),
            "aggregate": serving.aggregate_request(self.frames, self.mask),
            "embed_encoded": serving.encoded_images_request(self.paths),
        }
        self.inputs = {
            "serving_default": serving.set_inputs(self.sets, self.mask),
            "embed_images": serving.embed_inputs(self.images),
            "aggregate": serving.aggregate_inputs(self.frames, self.mask),
            "embed_encoded": serving.encoded_inputs(self.paths),
        }

    def run(self, signature: str, tensors: dict) -> dict[str, np.ndarray]:
        outputs = self.loaded.signatures[signature](**tensors)
        return {name: value.numpy() for name, value in outputs.items()}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    return Served(tmp_path_factory)


def _assert_close(actual: dict, expected: dict):
    assert set(actual) == set(expected)
    for name, value in expected.items():
        assert actual[name].dtype == np.float32, name
        np.testing.assert_allclose(actual[name], value, atol=ATOL, err_msg=name)


@pytest.mark.parametrize("signature", SIGNATURES)
def test_rest_request_through_emulated_tf_serving_gives_the_keras_result(served, signature):
    body = json.loads(json.dumps(served.rest[signature]))
    assert body["signature_name"] == signature
    response = json.loads(json.dumps(rest_predict(served.loaded, body)))
    _assert_close(serving.parse_rest_response(response), served.expected[signature])


@pytest.mark.parametrize("signature", SIGNATURES)
def test_grpc_request_through_emulated_tf_serving_gives_the_keras_result(served, signature):
    from tensorflow_serving.apis import predict_pb2

    request = serving.grpc_request(MODEL, signature, version=1, **served.inputs[signature])
    request = predict_pb2.PredictRequest.FromString(request.SerializeToString())
    assert (request.model_spec.name, request.model_spec.signature_name) == (MODEL, signature)
    assert request.model_spec.version.value == 1
    tensors = {name: tf.make_ndarray(proto) for name, proto in request.inputs.items()}
    response = predict_pb2.PredictResponse()
    for name, value in served.run(signature, tensors).items():
        response.outputs[name].CopyFrom(tf.make_tensor_proto(value))
    _assert_close(serving.parse_grpc_response(response), served.expected[signature])


def test_rest_json_is_columnar_with_b64_bytes(served):
    body = served.rest["embed_encoded"]
    assert set(body) == {"signature_name", "inputs"}
    encoded = body["inputs"]["image_bytes"]
    assert [base64.b64decode(item["b64"]) for item in encoded] == [
        path.read_bytes() for path in served.paths
    ]
    sets = served.rest["serving_default"]["inputs"]
    assert sets["mask"] == [[True, True, False], [True, False, False]]
    assert np.array_equal(np.array(sets["images"], np.uint8), served.sets)
    assert serving.rest_request("x", data=b"\x00ab\x00")["inputs"]["data"] == {"b64": "AGFiAA=="}


def test_parse_rest_response_accepts_every_response_form():
    one = serving.parse_rest_response({"outputs": [[1.0, 0.0]]})
    assert list(one) == ["embedding"] and one["embedding"].dtype == np.float32
    two = serving.parse_rest_response({"outputs": {"embedding": [[0.6, 0.8]], "weights": [[1]]}})
    np.testing.assert_array_equal(two["embedding"], np.float32([[0.6, 0.8]]))
    rows = serving.parse_rest_response(
        {"predictions": [{"embedding": [1.0, 0.0], "weights": [0.5, 0.5]}] * 2}
    )
    assert rows["embedding"].shape == (2, 2) and rows["weights"].shape == (2, 2)
    with pytest.raises(serving.ServingError, match="bad mask"):
        serving.parse_rest_response({"error": "bad mask"})


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: serving.set_request(np.zeros((1, 2, 8, 8, 3), "float32")), "uint8"),
        (lambda: serving.set_request(np.zeros((2, 8, 8, 3), "uint8")), "rank 5"),
        (
            lambda: serving.set_request(np.zeros((1, 2, 8, 8, 3), "uint8"), np.ones((2, 1), bool)),
            "mask must have shape",
        ),
        (lambda: serving.aggregate_request(np.zeros((1, 2, 4)), np.ones((1, 2))), "bool"),
        (lambda: serving.embed_request(np.zeros((2, 8, 8, 1), "uint8")), "3 channels"),
        (lambda: serving.encoded_images_request([]), "at least one"),
    ],
)
def test_bad_inputs_raise_a_clear_value_error(build, message):
    with pytest.raises(ValueError, match=message):
        build()


@pytest.fixture(scope="module")
def server(served):
    with rest_server({MODEL: served.loaded}) as url:
        yield url


def test_serving_client_over_http_gives_the_keras_result(served, server):
    client = serving.ServingClient(server, model=MODEL, version=1)
    assert client.endpoint == f"{server}/v1/models/{MODEL}/versions/1:predict"
    expected = served.expected
    np.testing.assert_allclose(
        client.embed_files(served.paths), expected["embed_encoded"]["embedding"], atol=ATOL
    )
    np.testing.assert_allclose(
        client.embed_images(served.images), expected["embed_images"]["embedding"], atol=ATOL
    )
    _assert_close(client.embed_sets(served.sets, served.mask), expected["serving_default"])
    _assert_close(client.aggregate(served.frames, served.mask), expected["aggregate"])
    _assert_close(
        serving.ServingClient(server, model=MODEL).predict(
            "aggregate", embeddings=served.frames, mask=served.mask
        ),
        expected["aggregate"],
    )


def test_serving_client_caches_frame_features_that_aggregate_like_the_sets(served, server):
    client = serving.ServingClient(server, model=MODEL)
    _assert_close(client.embed_files_and_features(served.paths), served.expected["embed_encoded"])
    _assert_close(client.embed_images_and_features(served.images), served.expected["embed_images"])
    flat = served.sets.reshape(-1, SIZE, SIZE, 3)
    cached = client.embed_images_and_features(flat)["frame_features"]
    cached = cached.reshape(2, 3, -1) * served.mask[..., None]
    _assert_close(client.aggregate(cached, served.mask), served.expected["serving_default"])


def test_serving_client_reports_tf_serving_errors(served, server):
    client = serving.ServingClient(server, model=MODEL)
    bad_mask = np.ones((2, 2), bool).tolist()  # bypasses the client's own check
    with pytest.raises(serving.ServingError, match=f"(?s)HTTP 400: .*{re.escape(MASK_MISMATCH)}"):
        client.predict("serving_default", images=served.sets, mask=bad_mask)
    with pytest.raises(serving.ServingError, match="HTTP 404: Servable not found"):
        serving.ServingClient(server, model="missing").embed_images(served.images)
    closed = serving.ServingClient("http://127.0.0.1:9", model=MODEL, timeout=5)
    with pytest.raises(serving.ServingError, match="cannot reach"):
        closed.embed_images(served.images)


def test_importing_the_client_needs_neither_tensorflow_nor_requests():
    code = (
        "import sys, keras_faceset.export.client; "
        "print(sorted({'tensorflow', 'keras', 'requests', 'grpc'} & set(sys.modules)))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
