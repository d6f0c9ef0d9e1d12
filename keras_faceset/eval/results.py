"""The table of measured results, `keras_faceset/zoo/results.csv`: one row per (model,
protocol, alignment)."""

from __future__ import annotations

import datetime
import os
from pathlib import Path

import pandas as pd

from keras_faceset.files import atomic_path, file_lock

COLUMNS = [
    "model",
    "protocol",
    "alignment",
    "accuracy",
    "std",
    "auc",
    "tar@far=1e-2",
    "tar@far=1e-3",
    "pairs",
    "command",
    "date",
    "rank1",
    "rank5",
    "dir@far=1e-2",
    "pairwise_f",
    "bcubed_f",
    "threshold",
]


def record_result(
    path: str | os.PathLike, row: dict, key: tuple[str, ...] = ("model", "protocol", "alignment")
) -> pd.DataFrame:
    """Add `row` to the CSV at `path`, replacing an earlier row with the same `key` values."""
    path = Path(path)
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown result columns {sorted(unknown)}; expected {COLUMNS}")
    row = {"date": datetime.date.today().isoformat(), **row}
    with file_lock(path.with_name(f".{path.name}.lock")):
        table = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=COLUMNS)
        same = pd.Series(True, index=table.index)
        for column in key:
            same &= table[column] == row[column]
        table = pd.concat([table[~same], pd.DataFrame([row])], ignore_index=True)[COLUMNS]
        with atomic_path(path) as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")
    return table
