"""Write a versioned SavedModel for TF Serving: `<base_dir>/<name>/<version>/`.

A version is written into a hidden temporary directory beside it and renamed only when complete,
so a crash never leaves a half-written version for the server to load; an existing version is
never overwritten. Exports of one model take a lock (`<base_dir>/.<name>.lock`), so concurrent
ones get distinct versions, and the temporary directory of an export that was killed is deleted
by the next one. Beside the versions go an example `models.config` and a
`batching_parameters.txt`, which TF Serving ignores when scanning for versions.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from keras_faceset.export import warmup
from keras_faceset.export.module import ServingModule
from keras_faceset.export.spec import ExportSpec
from keras_faceset.files import file_lock

logger = logging.getLogger(__name__)

TMP_PREFIX = ".tmp-"
"""Start of the hidden directory a version is written into (TF Serving loads integer names)."""

BATCHING_PARAMETERS = """\
# Server-side batching for `tensorflow_model_server --enable_batching
# --batching_parameters_file=<this file>` (tensorflow_serving BatchingParameters text proto).
# Requests of one signature are concatenated along their first (batch) axis.
max_batch_size { value: 64 }
batch_timeout_micros { value: 2000 }
max_enqueued_batches { value: 100 }
num_batch_threads { value: 4 }
# Zero-pads the other axes to the largest in the batch: a padded frame gets mask False, so
# sets of different sizes batch together. Images must still share their height and width
# (padded pixels would be resized into the face): send crops at the model's input size.
pad_variable_length_inputs: true
"""


def export_saved_model(
    spec: ExportSpec,
    base_dir: str | os.PathLike,
    version: int | None = None,
    *,
    float16: bool = False,
    xla: bool = False,
    fold: bool = True,
    precision: str = "float32",
    warmup_requests: bool = True,
) -> Path:
    """Export `spec` to `<base_dir>/<spec.name>/<version>/` and return that directory.

    Args:
        version: a positive integer; None takes the next free one (1 for a new model).
            An existing version raises FileExistsError.
        float16: run the backbone in mixed precision (for GPU serving); outputs stay float32.
        xla: compile the backbone and head with XLA (`jit_compile=True`).
        fold: fold batch norm into the convolutions (`keras_faceset.models.fold_batch_norm`;
            the same outputs up to float rounding, faster); False serves the graph as built.
        precision: "float32", or "bfloat16" (the folded graph computing in bfloat16, for CPUs
            with AVX512_BF16 or AMX: about 1.9x images/s at batch 32, LFW View 2 unchanged;
            docs/performance.md); outputs stay float32.
        warmup_requests: write `assets.extra/tf_serving_warmup_requests`, one request per
            signature (needs the `tensorflow-serving-api` package).
    """
    if warmup_requests:
        warmup.require_serving_api()
    if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
        raise ValueError(f"version must be a positive integer, got {version!r}.")
    if version is not None and version < 1:
        raise ValueError(f"version must be a positive integer, got {version!r}.")
    model_dir = _model_dir(Path(base_dir), spec.name)
    with file_lock(model_dir.parent / f".{spec.name}.lock"):
        for leftover in model_dir.glob(f"{TMP_PREFIX}*"):  # of exports killed mid-write
            shutil.rmtree(leftover, ignore_errors=True)
        version = next_version(model_dir) if version is None else version
        target = model_dir / str(version)
        if target.exists():
            raise FileExistsError(f"{target} already exists; versions are never overwritten.")

        module = ServingModule(spec, float16=float16, xla=xla, fold=fold, precision=precision)
        tmp = Path(tempfile.mkdtemp(prefix=f"{TMP_PREFIX}{version}-", dir=model_dir))
        try:
            module.write_out(tmp)
            if warmup_requests:
                warmup.write_warmup_requests(tmp, spec.name, module)
            os.chmod(tmp, 0o755)  # mkdtemp: owner-only; the server may be another user
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        write_serving_configs(model_dir, spec.name)
    logger.info("exported %s version %d to %s", spec.name, version, target)
    return target


def _model_dir(base_dir: Path, name: str) -> Path:
    """`base_dir/name`, created; a file in the way is a NotADirectoryError saying so."""
    model_dir = base_dir / name
    for path in (model_dir, *model_dir.parents):
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(
                f"cannot export to {model_dir}: {path} is a file. Give base_dir a folder (or a "
                f"path to create); versions go in <base_dir>/{name}/<version>/."
            )
    model_dir.mkdir(parents=True, exist_ok=True)
    return model_dir


def next_version(model_dir: str | os.PathLike) -> int:
    """One more than the largest integer-named subdirectory of `model_dir` (1 if none)."""
    model_dir = Path(model_dir)
    if not model_dir.is_dir():
        return 1
    versions = [int(p.name) for p in model_dir.iterdir() if p.is_dir() and p.name.isdigit()]
    return max(versions, default=0) + 1


def write_serving_configs(model_dir: str | os.PathLike, name: str) -> None:
    """`models.config` (model_config_list serving `/models/<name>`, as mounted in the docs'
    docker command) and `batching_parameters.txt`, unless they already exist (user edits win)."""
    model_dir = Path(model_dir)
    files = {
        "models.config": (
            "model_config_list {\n"
            "  config {\n"
            f'    name: "{name}"\n'
            f'    base_path: "/models/{name}"\n'
            '    model_platform: "tensorflow"\n'
            "    model_version_policy { latest { num_versions: 1 } }\n"
            "  }\n"
            "}\n"
        ),
        "batching_parameters.txt": BATCHING_PARAMETERS,
    }
    for filename, text in files.items():
        path = model_dir / filename
        if not path.exists():
            path.write_text(text)
