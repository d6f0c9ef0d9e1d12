"""`evaluate --record`: each precision, flip and int8 calibration gets its own row of the
results table, so a bfloat16 or int8 run never replaces the float32 one, nor an int8 model
calibrated on the user's faces the LFW-calibrated one."""

import argparse
from types import SimpleNamespace

import pandas as pd

from keras_faceset.cli.evaluate import _record


def test_each_precision_records_its_own_row(tmp_path):
    record = tmp_path / "results.csv"
    preset = SimpleNamespace(head=SimpleNamespace(results_model="facenet"))
    lfw = {"source": "LFW View 1 DevTrain", "images": 256, "seed": 0}
    own = {"source": "photos", "images": 40, "seed": 0, "sha256": "ab12" * 16}
    row = {"accuracy": 0.99, "std": 0.003, "auc": 0.999, "tar@far=0.01": 0.99}
    row.update({"tar@far=0.001": 0.98, "pairs": 6000})
    for precision, flip, calibration, accuracy in [
        ("float32", False, None, 0.991),
        ("bfloat16", False, None, 0.9915),
        ("int8", False, lfw, 0.9928),
        ("int8", False, own, 0.9901),
        ("int8-dynamic", False, None, 0.9915),
        ("float32", True, None, 0.993),
        ("float32", False, None, 0.9912),  # a rerun replaces its own row only
    ]:
        embedder = SimpleNamespace(preset=preset, int8_calibration=calibration)
        args = argparse.Namespace(
            model_file=None, align="preset", flip=flip, precision=precision, record=record
        )
        _record(args, embedder, "lfw_view2", {**row, "accuracy": accuracy})
    table = pd.read_csv(record).set_index("alignment")["accuracy"].to_dict()
    assert table == {
        "preset": 0.9912,
        "preset+bfloat16": 0.9915,
        "preset+int8": 0.9928,
        "preset+int8@ab12ab12ab12": 0.9901,
        "preset+int8-dynamic": 0.9915,
        "preset+flip": 0.993,
    }
