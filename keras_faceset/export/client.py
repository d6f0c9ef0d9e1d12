"""A client for models exported by `keras_faceset.export` and served by TensorFlow Serving.

    from keras_faceset.export.client import ServingClient
    client = ServingClient("http://localhost:8501", model="nan")
    embeddings = client.embed_images(chips)                      # (N, E), L2-normalised
    sets = client.embed_sets(frames, mask)                       # {"embedding", "weights"}
    cached = client.embed_images_and_features(chips)["frame_features"]  # (N, F): cache these
    same = client.aggregate(cached[None])                        # == embed_sets on the chips

Every signature takes aligned face chips (uint8, or encoded as PNG/JPEG files), not photos:
align first on the client, e.g. `keras_faceset.align.align_faces(paths, **preset.crop).chips`.

REST request bodies use TF Serving's columnar format, `{"signature_name": ..., "inputs":
{...}}`: arrays become nested lists and bytes become `{"b64": ...}`. Only the standard library
and NumPy are imported here; the gRPC helpers import `tensorflow` and `tensorflow_serving.apis`
(`pip install tensorflow-serving-api`) when called. See docs/serving.md.
"""

from __future__ import annotations

import base64
import json
import os
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence

import numpy as np

SINGLE_OUTPUT = "embedding"
"""The output name a bare-array REST response is given: TF Serving answers a one-output
signature that way (`embed_images` and `embed_encoded` of exports made before they gained
`frame_features`)."""


class ServingError(RuntimeError):
    """TF Serving refused a request (its "error" message is included) or could not be reached."""


def rest_request(signature: str, **inputs) -> dict:
    """The JSON body of a REST predict call to `signature`, in the columnar "inputs" format.

    Arrays (and nested lists) become nested lists; `bytes` become `{"b64": base64}`.
    """
    if not inputs:
        raise ValueError(f"a request to {signature!r} needs at least one input.")
    return {"signature_name": signature, "inputs": {k: _to_json(v) for k, v in inputs.items()}}


def encoded_images_request(paths: Iterable[str | os.PathLike]) -> dict:
    """`embed_encoded` on the bytes of image files (JPEG, PNG, BMP or GIF) of aligned chips."""
    return rest_request("embed_encoded", **encoded_inputs(paths))


def set_request(images: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """`serving_default` on image sets: uint8 `(B, T, H, W, 3)` and bool `mask` `(B, T)`
    (None: every frame is real)."""
    return rest_request("serving_default", **set_inputs(images, mask))


def embed_request(images: np.ndarray) -> dict:
    """`embed_images` on uint8 images `(N, H, W, 3)`."""
    return rest_request("embed_images", **embed_inputs(images))


def aggregate_request(embeddings: np.ndarray, mask: np.ndarray | None = None) -> dict:
    """`aggregate` on frame features `(B, T, F)` (the `frame_features` that `embed_images` and
    `embed_encoded` return) and bool `mask` `(B, T)` (None: all real)."""
    return rest_request("aggregate", **aggregate_inputs(embeddings, mask))


def encoded_inputs(paths: Iterable[str | os.PathLike]) -> dict[str, np.ndarray]:
    """`{"image_bytes": object array of the files' bytes}`."""
    data = [_read(path) for path in paths]
    if not data:
        raise ValueError("give at least one image file.")
    array = np.empty(len(data), object)
    array[:] = data
    return {"image_bytes": array}


def set_inputs(images: np.ndarray, mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Checked `serving_default` inputs `{"images": uint8 (B, T, H, W, 3), "mask": bool (B, T)}`."""
    images = _uint8_images(images, rank=5, what="images [B, T, H, W, 3]")
    return {"images": images, "mask": _mask(mask, images.shape[:2], "images [B, T, H, W, 3]")}


def embed_inputs(images: np.ndarray) -> dict[str, np.ndarray]:
    """Checked `embed_images` inputs `{"images": uint8 (N, H, W, 3)}`."""
    return {"images": _uint8_images(images, rank=4, what="images [N, H, W, 3]")}


def aggregate_inputs(
    embeddings: np.ndarray, mask: np.ndarray | None = None
) -> dict[str, np.ndarray]:
    """Checked `aggregate` inputs `{"embeddings": float32 (B, T, F), "mask": bool (B, T)}`: the
    input keeps its name `embeddings`; it takes frame features."""
    embeddings = np.asarray(embeddings)
    if embeddings.ndim != 3 or not np.issubdtype(embeddings.dtype, np.number):
        raise ValueError(
            f"embeddings must be a numeric array [B, T, D], got {embeddings.dtype} "
            f"of shape {embeddings.shape}."
        )
    embeddings = embeddings.astype("float32")
    return {"embeddings": embeddings, "mask": _mask(mask, embeddings.shape[:2], "embeddings")}


def parse_rest_response(body: dict, single_output: str = SINGLE_OUTPUT) -> dict[str, np.ndarray]:
    """`{output name: array}` from a REST predict response.

    Columnar responses are `{"outputs": {name: value}}`, or `{"outputs": value}` for a
    signature with one output (named `single_output`); row responses `{"predictions": [...]}`
    are accepted too. Float outputs come back as float32. An `{"error": ...}` body raises
    ServingError.
    """
    if "error" in body:
        raise ServingError(f"TF Serving error: {body['error']}")
    if "outputs" in body:
        outputs = body["outputs"]
    elif "predictions" in body:
        rows = body["predictions"]
        if rows and isinstance(rows[0], dict):
            outputs = {key: [row[key] for row in rows] for key in rows[0]}
        else:
            outputs = rows
    else:
        raise ValueError(f"not a predict response: keys {sorted(body)}, no 'outputs'.")
    if not isinstance(outputs, dict):
        outputs = {single_output: outputs}
    return {name: _from_json(value) for name, value in outputs.items()}


def grpc_request(model_name: str, signature: str, version: int | None = None, **inputs):
    """A `tensorflow_serving.apis.predict_pb2.PredictRequest` to `signature` of `model_name`,
    each input converted with `tf.make_tensor_proto` (bytes inputs as an object array)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    if not inputs:
        raise ValueError(f"a request to {signature!r} needs at least one input.")
    request = predict_pb2.PredictRequest()
    request.model_spec.name = model_name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = int(version)
    for name, value in inputs.items():
        request.inputs[name].CopyFrom(tf.make_tensor_proto(_to_array(value)))
    return request


def parse_grpc_response(response) -> dict[str, np.ndarray]:
    """`{output name: array}` from a `PredictResponse` (`tf.make_ndarray` on each output)."""
    import tensorflow as tf

    return {name: tf.make_ndarray(proto) for name, proto in response.outputs.items()}


class ServingClient:
    """REST client of one served model: `POST {url}/v1/models/{model}[/versions/{version}]:predict`.

    HTTP errors raise ServingError with TF Serving's "error" message (e.g. a mask that does not
    match the images).
    """

    def __init__(
        self,
        url: str = "http://localhost:8501",
        model: str = "nan",
        version: int | None = None,
        timeout: float = 30.0,
    ):
        self.url, self.model, self.version, self.timeout = url.rstrip("/"), model, version, timeout

    @property
    def endpoint(self) -> str:
        version = "" if self.version is None else f"/versions/{int(self.version)}"
        return f"{self.url}/v1/models/{self.model}{version}:predict"

    def predict(self, signature: str, **inputs) -> dict[str, np.ndarray]:
        """Run `signature` on `inputs` (arrays, lists or bytes) and return its outputs."""
        return self.post(rest_request(signature, **inputs))

    def post(self, body: dict) -> dict[str, np.ndarray]:
        """POST a request body (from the `*_request` builders) and parse the response."""
        request = urllib.request.Request(
            self.endpoint,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        what = f"{self.model} {body.get('signature_name', 'serving_default')}"
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                return parse_rest_response(json.load(response))
        except urllib.error.HTTPError as error:
            text = error.read().decode(errors="replace")
            try:
                text = json.loads(text).get("error", text)
            except (ValueError, AttributeError):
                pass
            raise ServingError(f"{what}: HTTP {error.code}: {text}") from None
        except urllib.error.URLError as error:
            raise ServingError(f"{what}: cannot reach {self.endpoint}: {error.reason}") from None

    def embed_files(self, paths: Iterable[str | os.PathLike]) -> np.ndarray:
        """L2-normalised embeddings `(N, E)` of image files of aligned chips (not photos),
        decoded by the server."""
        return self.embed_files_and_features(paths)["embedding"]

    def embed_images(self, images: np.ndarray) -> np.ndarray:
        """L2-normalised embeddings `(N, E)` of uint8 aligned chips `(N, H, W, 3)`."""
        return self.embed_images_and_features(images)["embedding"]

    def embed_files_and_features(self, paths: Iterable[str | os.PathLike]) -> dict[str, np.ndarray]:
        """`{"embedding": (N, E), "frame_features": (N, F)}` of image files of aligned chips
        (`embed_encoded`); cache `frame_features` to `aggregate` later."""
        return self.post(encoded_images_request(paths))

    def embed_images_and_features(self, images: np.ndarray) -> dict[str, np.ndarray]:
        """`{"embedding": (N, E), "frame_features": (N, F)}` of uint8 chips `(N, H, W, 3)`."""
        return self.post(embed_request(images))

    def embed_sets(
        self, images: np.ndarray, mask: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """`{"embedding": (B, E), "weights": (B, T)}` of sets of chips `(B, T, H, W, 3)`."""
        return self.post(set_request(images, mask))

    def aggregate(
        self, embeddings: np.ndarray, mask: np.ndarray | None = None
    ) -> dict[str, np.ndarray]:
        """`{"embedding": (B, E), "weights": (B, T)}` of cached frame features `(B, T, F)`
        (`frame_features` of the `*_and_features` calls): equal to `embed_sets` on the images."""
        return self.post(aggregate_request(embeddings, mask))


def _read(path: str | os.PathLike) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()


def _uint8_images(images: np.ndarray, rank: int, what: str) -> np.ndarray:
    images = np.asarray(images)
    if images.dtype != np.uint8:
        raise ValueError(f"{what} must be uint8 RGB (0..255), got {images.dtype}.")
    if images.ndim != rank or images.shape[-1] != 3:
        raise ValueError(f"{what} must have rank {rank} and 3 channels, got {images.shape}.")
    return images


def _mask(mask: np.ndarray | None, shape: Sequence[int], what: str) -> np.ndarray:
    if mask is None:
        return np.ones(shape, bool)
    mask = np.asarray(mask)
    if mask.dtype != bool:
        raise ValueError(f"mask must be bool (True: a real frame), got {mask.dtype}.")
    if mask.shape != tuple(shape):
        raise ValueError(
            f"mask must have shape [batch, set_size] = {tuple(shape)} matching the first two "
            f"axes of {what}, got {mask.shape}."
        )
    return mask


def _to_json(value):
    """Nested lists of JSON numbers and booleans, with `bytes` as `{"b64": ...}`."""
    if isinstance(value, bytes | np.bytes_):
        return {"b64": base64.b64encode(value).decode("ascii")}
    if isinstance(value, np.ndarray) and value.dtype != object and value.dtype.kind != "S":
        return value.tolist()
    if isinstance(value, np.ndarray | list | tuple):
        return [_to_json(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _to_array(value) -> np.ndarray:
    """An array for `tf.make_tensor_proto`; bytes in (nested) lists become an object array."""
    if isinstance(value, np.ndarray):
        return value
    if isinstance(value, bytes):
        return np.array(value, object)
    array = np.asarray(value)
    # A fixed-width bytes array would drop trailing NUL bytes: keep the bytes objects.
    return np.array(value, dtype=object) if array.dtype.kind == "S" else array


def _from_json(value) -> np.ndarray:
    array = np.asarray(value)
    return array.astype("float32") if array.dtype.kind == "f" else array
