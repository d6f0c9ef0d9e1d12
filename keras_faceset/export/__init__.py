"""SavedModel export for TF Serving: versioned layout, four signatures, warm-up, GPU set-up.

    from keras_faceset.export import ExportSpec, export_saved_model
    export_saved_model(ExportSpec.from_preset("facenet"), "models")  # models/facenet/1/

See docs/serving.md for running the result under `tensorflow/serving`.
"""

from keras_faceset.export.cli import add_export_command
from keras_faceset.export.gpu import configure_gpu
from keras_faceset.export.module import SIGNATURES, ServingModule
from keras_faceset.export.saved_model import (
    export_saved_model,
    next_version,
    write_serving_configs,
)
from keras_faceset.export.spec import ExportSpec, mean_head
from keras_faceset.export.warmup import example_inputs, write_warmup_requests

__all__ = [
    "SIGNATURES",
    "ExportSpec",
    "ServingModule",
    "add_export_command",
    "configure_gpu",
    "example_inputs",
    "export_saved_model",
    "mean_head",
    "next_version",
    "write_serving_configs",
    "write_warmup_requests",
]
