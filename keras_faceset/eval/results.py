"""The table of measured results, `keras_faceset/zoo/results.csv`: one row per (model,
protocol, alignment)."""

from __future__ import annotations

import datetime
import os
import shlex
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
    """Add `row` to the CSV at `path`, replacing an earlier row with the same `key` values.
    The row's `command` is stored with `portable_command`: no machine's paths in the table."""
    path = Path(path)
    unknown = set(row) - set(COLUMNS)
    if unknown:
        raise ValueError(f"unknown result columns {sorted(unknown)}; expected {COLUMNS}")
    row = {"date": datetime.date.today().isoformat(), **row}
    if isinstance(row.get("command"), str):
        row["command"] = portable_command(row["command"])
    with file_lock(path.with_name(f".{path.name}.lock")):
        table = pd.read_csv(path) if path.is_file() else pd.DataFrame(columns=COLUMNS)
        same = pd.Series(True, index=table.index)
        for column in key:
            same &= table[column] == row[column]
        table = pd.concat([table[~same], pd.DataFrame([row])], ignore_index=True)[COLUMNS]
        with atomic_path(path) as tmp:
            table.to_csv(tmp, index=False, float_format="%.6g")
    return table


def portable_command(command: str) -> str:
    """`command` with every path outside the working directory written `/path/to/NAME`
    (`--data /home/me/lfw` -> `--data /path/to/lfw`, `--yale=../x/yale` -> `--yale=/path/to/yale`);
    paths inside it become relative. What a reader can rerun, without this machine's folders."""
    return shlex.join(_portable_argument(argument) for argument in shlex.split(command))


def _portable_argument(argument: str) -> str:
    option, equals, value = (
        argument.partition("=") if argument.startswith("-") else ("", "", argument)
    )
    if not (value.startswith(("/", "~", "..")) and len(value) > 1):
        return argument
    path = Path(value).expanduser()
    try:
        value = str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        value = f"/path/to/{path.name}"
    return option + equals + value
