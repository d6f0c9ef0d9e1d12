"""The int8 exports: TF Serving runs SavedModels and cannot run a TFLite model, so an int8 or
int8-dynamic export is the `.tflite` file that `FaceEmbedder(precision=...)` runs, written with
a JSON manifest (preset, precision, input and output, sha256, what it was calibrated on) for a
LiteRT interpreter (docs/serving.md). float32 and bfloat16 exports are SavedModels
(`export_saved_model`).

    export_int8("facenet", "models")  # models/facenet.int8.tflite, models/facenet.int8.json
    export_int8("facenet", "models", precision="int8-dynamic")  # models/facenet.int8-dynamic.*
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

from keras_faceset.export.spec import check_name
from keras_faceset.files import atomic_path, sha256_file
from keras_faceset.models.quantize import TFLITE_PRECISIONS, CalibrationSource

MANIFEST_VERSION = 1


def export_int8(
    model: str,
    base_dir: str | os.PathLike,
    name: str | None = None,
    calibration: CalibrationSource | None = None,
    precision: str = "int8",
) -> Path:
    """Write preset `model`'s `precision` model (`TFLITE_PRECISIONS`: "int8" or
    "int8-dynamic") as `<base_dir>/<name>.<precision>.tflite` and its manifest
    `<name>.<precision>.json`; return the `.tflite` path.

    `calibration`: with "int8", the faces to calibrate on (`FaceEmbedder`'s; default LFW's;
    "int8-dynamic" takes none). The model is quantized once into the zoo cache and copied from
    there; existing files are never overwritten (FileExistsError). The model takes float32
    RGB chips `(N, S, S, 3)`, 0..255, cropped as the manifest's `crop` says, and gives the raw
    frame embeddings `(N, D)`: L2-normalise them, then compare by cosine distance as the
    preset's other forms.
    """
    from keras_faceset.embedder import FaceEmbedder

    if precision not in TFLITE_PRECISIONS:
        raise ValueError(
            f"unknown TFLite export precision {precision!r}; expected one of "
            f"{TFLITE_PRECISIONS} (float32 and bfloat16: export_saved_model)"
        )
    embedder = FaceEmbedder(model, precision=precision, calibration=calibration)
    preset = embedder.preset
    name = check_name(name or preset.name)
    base_dir = Path(base_dir)
    target = base_dir / f"{name}.{precision}.tflite"
    manifest = target.with_suffix(".json")
    for path in (target, manifest):
        if path.exists():
            raise FileExistsError(f"{path} already exists; exports are never overwritten.")
    source = embedder.frame_model.path
    side = preset.input_size
    details = {
        "format": "tflite",
        "manifest_version": MANIFEST_VERSION,
        "precision": precision,
        "name": name,
        "preset": preset.name,
        "file": target.name,
        "sha256": sha256_file(source),
        "bytes": source.stat().st_size,
        "input": {
            "dtype": "float32",
            "shape": [None, side, side, 3],
            "range": [0, 255],
            "channels": "RGB",
            "crop": dict(preset.crop),
            "crop_description": embedder.description,
        },
        "output": {
            "dtype": "float32",
            "shape": [None, preset.embedding_dim],
            "normalize": "L2 (the raw frame embedding: divide by its norm)",
        },
        "calibration": embedder.int8_calibration,  # None: int8-dynamic, none needed
        "interpreter": "LiteRT (ai_edge_litert) or tf.lite, XNNPack; batch resizable",
    }
    with atomic_path(target) as tmp:
        shutil.copyfile(source, tmp)
        with atomic_path(manifest) as tmp_manifest:
            tmp_manifest.write_text(json.dumps(details, indent=2) + "\n")
    return target
