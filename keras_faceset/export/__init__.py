"""SavedModel export for TF Serving: versioned layout, four signatures, warm-up, GPU set-up;
and the int8 `.tflite` export for LiteRT (`export_int8`; TF Serving cannot run it).

    from keras_faceset.export import ExportSpec, export_saved_model
    export_saved_model(ExportSpec.from_preset("facenet"), "models")  # models/facenet/1/

See docs/serving.md for running the result under `tensorflow/serving`; `ServingClient`
(`keras_faceset.export.client`) queries it. Names load lazily, so the CLI hook
(`keras_faceset.export.cli`) and the client import neither TensorFlow nor Keras.
"""

import importlib

_SOURCES = {
    "ServingClient": "client",
    "ServingError": "client",
    "add_export_command": "cli",
    "configure_gpu": "gpu",
    "SIGNATURES": "module",
    "ServingModule": "module",
    "export_saved_model": "saved_model",
    "next_version": "saved_model",
    "write_serving_configs": "saved_model",
    "ExportSpec": "spec",
    "export_int8": "tflite",
    "example_inputs": "warmup",
    "write_warmup_requests": "warmup",
}

__all__ = sorted(_SOURCES)


def __getattr__(name: str):
    if name not in _SOURCES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_SOURCES[name]}"), name)


def __dir__() -> list[str]:
    return __all__
