"""`evaluate --record`: each precision and flip gets its own row of the results table, so a
bfloat16 or int8 run never replaces the float32 one."""

import argparse
from types import SimpleNamespace

import pandas as pd

from keras_faceset.cli.evaluate import _record


def test_each_precision_records_its_own_row(tmp_path):
    record = tmp_path / "results.csv"
    embedder = SimpleNamespace(
        preset=SimpleNamespace(head=SimpleNamespace(results_model="facenet"))
    )
    row = {"accuracy": 0.99, "std": 0.003, "auc": 0.999, "tar@far=0.01": 0.99}
    row.update({"tar@far=0.001": 0.98, "pairs": 6000})
    for precision, flip, accuracy in [
        ("float32", False, 0.991),
        ("bfloat16", False, 0.9915),
        ("int8", False, 0.9928),
        ("float32", True, 0.993),
        ("float32", False, 0.9912),  # a rerun replaces its own row only
    ]:
        args = argparse.Namespace(
            model_file=None, align="preset", flip=flip, precision=precision, record=record
        )
        _record(args, embedder, "lfw_view2", {**row, "accuracy": accuracy})
    table = pd.read_csv(record).set_index("alignment")["accuracy"].to_dict()
    assert table == {
        "preset": 0.9912,
        "preset+bfloat16": 0.9915,
        "preset+int8": 0.9928,
        "preset+flip": 0.993,
    }
