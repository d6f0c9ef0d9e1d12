"""Write verification results to disk: summary CSV/JSON, per-pair scores CSV, ROC and
score-histogram plots (PNG)."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from keras_faceset.eval.verification import _check, roc_curve


def plot_roc(
    scores,
    labels,
    path: str | Path,
    higher_is_same: bool = True,
    label: str | None = None,
    log_far: bool = True,
) -> Path:
    """Save the ROC curve (TAR against FAR, FAR on a log axis by default) as an image.

    matplotlib is imported here only (Agg backend), so the rest of the package does not need it.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fpr, tpr, _ = roc_curve(scores, labels, higher_is_same)
    keep = fpr > 0 if log_far else np.ones_like(fpr, dtype=bool)
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    ax.plot(fpr[keep], tpr[keep], label=label)
    ax.set(xlabel="false accept rate", ylabel="true accept rate", ylim=(0, 1.01))
    if log_far:
        ax.set_xscale("log")
    ax.grid(True, which="both", alpha=0.3)
    if label:
        ax.legend(loc="upper left")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return path


class ScoreHistogram(NamedTuple):
    """Result of `plot_score_histogram`: the image, shared bin edges and per-class counts."""

    path: Path
    edges: np.ndarray
    same: np.ndarray
    different: np.ndarray


def plot_score_histogram(
    scores,
    labels,
    path: str | Path,
    bins: int | str = 50,
    xlabel: str = "score",
    title: str | None = None,
) -> ScoreHistogram:
    """Save overlaid histograms of same-identity and different-identity pair scores as an image.

    Both classes share the bin edges ``np.histogram_bin_edges(scores, bins)``; the returned counts
    are ``np.histogram(scores[labels == c], edges)[0]`` per class. matplotlib as in `plot_roc`.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    scores, labels = _check(scores, labels, higher_is_same=True)
    edges = np.histogram_bin_edges(scores, bins)
    same = np.histogram(scores[labels], edges)[0]
    different = np.histogram(scores[~labels], edges)[0]
    fig, ax = plt.subplots(figsize=(5, 4), dpi=100)
    for counts, name, colour in ((same, "same", "tab:blue"), (different, "different", "tab:red")):
        ax.stairs(
            counts, edges, fill=True, alpha=0.4, color=colour, label=f"{name} ({counts.sum()})"
        )
    ax.set(xlabel=xlabel, ylabel="pairs", title=title)
    ax.legend(loc="upper center")
    fig.tight_layout()
    path = Path(path)
    fig.savefig(path)
    plt.close(fig)
    return ScoreHistogram(path, edges, same, different)


def save_report(
    summary: pd.DataFrame, scores: pd.DataFrame, out_dir: str | Path, roc_png: bool = True
) -> dict[str, Path]:
    """Write the two frames returned by `evaluate_lfw` into `out_dir`.

    Files: ``summary.csv``, ``summary.json`` (records; NaN as null), ``scores.csv`` and, with
    `roc_png`, ``roc.png`` and ``histogram.png`` (`plot_score_histogram`) of the evaluated
    (last) split. Returns {kind: path}.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {
        "summary_csv": out_dir / "summary.csv",
        "summary_json": out_dir / "summary.json",
        "scores_csv": out_dir / "scores.csv",
    }
    summary.to_csv(paths["summary_csv"], index=False)
    summary.to_json(paths["summary_json"], orient="records", indent=2)
    scores.to_csv(paths["scores_csv"], index=False)
    if roc_png:
        test = scores[scores["split"] == scores["split"].iloc[-1]]
        row = summary.iloc[0]
        paths["roc_png"] = plot_roc(
            test["score"].to_numpy(),
            test["same"].to_numpy(),
            out_dir / "roc.png",
            higher_is_same=row["metric"] != "euclidean",
            label=f"{row['model']} ({row['metric']}), AUC {row['auc']:.4f}",
        )
        paths["histogram_png"] = plot_score_histogram(
            test["score"].to_numpy(),
            test["same"].to_numpy(),
            out_dir / "histogram.png",
            xlabel="euclidean distance" if row["metric"] == "euclidean" else "cosine similarity",
        ).path
    return paths
