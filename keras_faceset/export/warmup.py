"""TF Serving warm-up: `assets.extra/tf_serving_warmup_requests`, a TFRecord of `PredictionLog`s.

The server replays them when it loads a version (before marking it available), so the first real
request does not pay for kernel set-up. One small request per signature; the `embed_encoded`
one is a PNG of another size, so the resize branch is warmed up too; a preset's pipeline
signatures get photos of drawn faces that the detector finds (`export.pipeline.warmup_inputs`).
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from keras_faceset.export.module import ServingModule
from keras_faceset.export.pipeline import warmup_inputs

WARMUP_FILE = Path("assets.extra") / "tf_serving_warmup_requests"


def require_serving_api() -> None:
    """Raise ImportError with the fix when `tensorflow-serving-api` is not installed."""
    try:
        from tensorflow_serving.apis import predict_pb2, prediction_log_pb2  # noqa: F401
    except ImportError as error:
        raise ImportError(
            "writing TF Serving warm-up requests needs the tensorflow-serving-api package: "
            "`pip install keras-faceset[serving]` (or tensorflow-serving-api), or export "
            "with warmup_requests=False (CLI: --no-warmup)."
        ) from error


def example_inputs(height: int, width: int, frame_dim: int) -> dict[str, dict[str, np.ndarray]]:
    """One small deterministic input per signature, `{signature: {input name: array}}`;
    `aggregate` gets two orthogonal one-hot frame feature vectors of `frame_dim` floats."""
    image = _test_card(height, width)
    frames = np.zeros((1, 2, frame_dim), "float32")
    frames[0, 0, 0] = frames[0, 1, min(1, frame_dim - 1)] = 1.0
    small = _test_card(max(height // 2, 1), max(width // 2 + 1, 1))
    return {
        "serving_default": {"images": np.stack([image, image[:, ::-1]])[None], "mask": _ones()},
        "embed_images": {"images": image[None]},
        "aggregate": {"embeddings": frames, "mask": _ones()},
        "embed_encoded": {"image_bytes": np.array([tf.io.encode_png(small).numpy()], object)},
    }


def write_warmup_requests(
    version_dir: str | os.PathLike, model_name: str, module: ServingModule
) -> Path:
    """Write the warm-up TFRecord into `version_dir/assets.extra/` and return its path."""
    require_serving_api()
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    path = Path(version_dir) / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    inputs = example_inputs(module.height, module.width, module.frame_dim)
    if module.pipeline is not None:
        inputs.update(warmup_inputs())
    with tf.io.TFRecordWriter(str(path)) as writer:
        for signature in module.signatures:
            request = predict_pb2.PredictRequest()
            request.model_spec.name = model_name
            request.model_spec.signature_name = signature
            for key, value in inputs[signature].items():
                request.inputs[key].CopyFrom(tf.make_tensor_proto(value))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request)
            )
            writer.write(log.SerializeToString())
    return path


def _test_card(height: int, width: int) -> np.ndarray:
    """A uint8 RGB gradient image `(height, width, 3)`."""
    y, x = np.mgrid[0:height, 0:width]
    channels = (255 * y / max(height - 1, 1), 255 * x / max(width - 1, 1), 128 + 0 * x)
    return np.stack(channels, axis=-1).astype("uint8")


def _ones() -> np.ndarray:
    return np.ones((1, 2), bool)
