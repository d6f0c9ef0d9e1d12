"""The README's zoo table, written from the measured figures of `zoo.results()` (`results.csv`).

    python -m keras_faceset.zoo.readme_table README.md           # rewrite the table in place
    python -m keras_faceset.zoo.readme_table README.md --check   # exit 1 when it is out of date

The table is the text between the `BEGIN` and `END` lines of the README; nothing else changes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pandas as pd

from keras_faceset import zoo

COMMAND = "python -m keras_faceset.zoo.readme_table README.md"
BEGIN = f"<!-- zoo table: written from results.csv by `{COMMAND}` -->"
END = "<!-- end of zoo table -->"
ALIGNMENTS = {
    "preset+flip": "MTCNN-aligned + `--flip`",
    "preset": "MTCNN-aligned",
    "center": "central crop (`--align center`)",
}
"""LFW View 2 alignments in table order, and how the table names them."""
PRECISION_ROW = r"\+(?:bfloat16|int8|int8-dynamic)$"
"""The alignment of a row measured with ``--precision bfloat16`` or ``int8`` (``preset+bfloat16``):
those rows are in the model cards and docs/performance.md; the table shows float32 figures."""
MEAN_POOLED = {"dlib_resnet": "mean_dlib"}
"""LFW-sets rows of an image preset used on sets (the mean of its unit frame embeddings)."""
NONE = "–"


def render(results: pd.DataFrame | None = None) -> str:
    """The markdown table: one row per preset, its figures from `results` (default
    `zoo.results()`); in bold the best of several LFW View 2 alignments and the set presets'
    degraded LFW-sets figures."""
    results = zoo.results() if results is None else results
    lines = [
        "| name | model | licence | LFW View 2 accuracy | LFW-sets degraded TAR@FAR 1e-2 / 1e-3 "
        "| LFW-sets clean TAR@FAR 1e-2 / 1e-3 |",
        "|---|---|---|---|---|---|",
    ]
    for preset in zoo.PRESETS.values():
        is_set = preset.task == "set-embedding"
        model = preset.head.results_model if is_set else preset.name
        sets_model = model if is_set else MEAN_POOLED.get(preset.name)
        degraded = _tar_pair(results, sets_model, "lfw_sets_degraded")
        if degraded != NONE and not is_set:
            degraded += " (mean of frames)"
        cells = [
            f"`{preset.name}`",
            preset.description,
            preset.licence.split(" (")[0],  # in full: zoo.info(name)
            _view2(results, model),
            f"**{degraded}**" if is_set and degraded != NONE else degraded,
            _tar_pair(results, sets_model, "lfw_sets_clean"),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _view2(results: pd.DataFrame, model: str) -> str:
    rows = results[(results["model"] == model) & (results["protocol"] == "lfw_view2")]
    rows = rows[~rows["alignment"].str.contains(PRECISION_ROW)]
    if not len(rows):
        return NONE
    order = {alignment: i for i, alignment in enumerate(ALIGNMENTS)}
    rows = rows.sort_values("alignment", key=lambda a: a.map(order).fillna(len(order)))
    best = rows["accuracy"].idxmax() if len(rows) > 1 else None
    cells = []
    for index, row in rows.iterrows():
        figure = f"{100 * row['accuracy']:.2f} ± {100 * row['std']:.2f} %"
        label = ALIGNMENTS.get(row["alignment"], row["alignment"])
        cells.append(f"{f'**{figure}**' if index == best else figure} {label}")
    return ", ".join(cells)


def _tar_pair(results: pd.DataFrame, model: str | None, protocol: str) -> str:
    rows = results[(results["model"] == model) & (results["protocol"] == protocol)]
    if not len(rows):
        return NONE
    row = rows.loc[rows["tar@far=1e-2"].idxmax()]
    return f"{_tar(row['tar@far=1e-2'])} / {_tar(row['tar@far=1e-3'])}"


def _tar(value: float) -> str:
    """A TAR to 4 decimals, 3 when the fourth is 0 (400 genuine pairs: steps of 0.0025)."""
    text = f"{value:.4f}"
    return text[:-1] if text.endswith("0") else text


def readme_table(readme: str) -> str:
    """The table part of README text (between `BEGIN` and `END`)."""
    if BEGIN not in readme or END not in readme:
        raise ValueError(f"the README has no zoo table between {BEGIN!r} and {END!r} lines")
    return readme.split(BEGIN + "\n", 1)[1].split(END, 1)[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("readme", type=Path, help="the README.md to write the table into")
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if it differs")
    args = parser.parse_args(argv)
    text = args.readme.read_text(encoding="utf-8")
    old, new = readme_table(text), render()
    if args.check:
        if old != new:
            print(f"{args.readme}: the zoo table differs from results.csv; run `{COMMAND}`")
            return 1
        return 0
    if old != new:
        text = text.replace(BEGIN + "\n" + old + END, BEGIN + "\n" + new + END)
        args.readme.write_text(text, encoding="utf-8")
        print(f"wrote the zoo table of {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
