"""Plot LFW-sets degraded sets with their frames sorted by a shipped head's weight.

For each head, the first `--sets` sets of the degraded protocol (pairs in file order, set A
then set B) with at least `--min-frames` frames, some clean and some degraded, are drawn one
row each: the dlib chips the head saw (the degraded 250x250 frame warped with the clean
image's five-point transform, clean alignment from the chip cache) sorted by weight, each
labelled with its weight and its degradation kind and severity (one set per person). The
sets are picked by that rule alone, not by how the head did on them. `--heads` names set
presets; each figure is ``--out/<preset>_weights.png``. Frames and their embeddings come from the
cache of ``zoo/evaluate_lfw_sets.py`` (`keras_faceset.eval.protocol_cache`).

    python zoo/figures/plot_set_weights.py --data ../shared/data/lfw --out zoo/figures
"""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import numpy as np
from PIL import Image

from keras_faceset.data import LFW
from keras_faceset.data.degrade import KINDS
from keras_faceset.eval.protocol_cache import (
    add_cache_options,
    frame_chips,
    head_features,
    lfw_sets_embeddings,
)
from keras_faceset.models import head_sets
from keras_faceset.zoo import build_head, get_preset
from keras_faceset.zoo.registry import SHIPPED_WEIGHTS

TITLES = {"nan": "NAN-2", "nan1": "NAN-1", "qan": "QAN"}


def pick_sets(variant: dict, count: int, min_frames: int) -> list[np.ndarray]:
    """Frame rows of the first `count` sets (pair order, side a then b; one set per person)
    with >= `min_frames` frames, at least one clean and one degraded."""
    severity = variant["severity"]
    pairs = variant["pairs"]
    picked, people = [], set()
    for i, (rows_a, rows_b) in enumerate(zip(variant["rows_a"], variant["rows_b"], strict=True)):
        for person, rows in ((pairs["name_a"].iloc[i], rows_a), (pairs["name_b"].iloc[i], rows_b)):
            clean = severity[rows] == 0
            if person in people or len(rows) < min_frames or clean.all() or not clean.any():
                continue
            picked.append(np.asarray(rows))
            people.add(person)
            if len(picked) == count:
                return picked
    return picked


def frame_label(weight: float, kind_id: int, severity: float) -> str:
    kind = "clean" if severity == 0 else f"{KINDS[kind_id]} {severity:.2f}"
    return f"w {weight:.3f}\n{kind}"


def plot_head(name: str, head, variant: dict, sets: list, lfw: LFW, chips: str, out: Path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    _, weights, mask = head_sets(head, variant["embedding"], sets, head_features(head, variant))
    rows = np.concatenate(sets)
    images = np.concatenate(
        list(frame_chips(variant["frames"].iloc[rows].reset_index(drop=True), lfw, chips))
    )
    width = max(len(s) for s in sets)
    fig, axes = plt.subplots(len(sets), width, figsize=(1.6 * width, 2.05 * len(sets)))
    start = 0
    for i, set_rows in enumerate(sets):
        w = weights[i][mask[i]]
        for j, k in enumerate(np.argsort(-w, kind="stable")):
            frame = variant["frames"].iloc[set_rows[k]]
            ax = axes[i, j]
            ax.imshow(images[start + k].clip(0, 255).astype(np.uint8))
            ax.set_title(frame_label(w[k], frame.kind_id, frame.severity), fontsize=8)
        for ax in axes[i]:
            ax.set_xticks([])
            ax.set_yticks([])
            if not ax.images:
                ax.axis("off")
        start += len(set_rows)
    fig.suptitle(
        f"{TITLES.get(name, name)} on LFW-sets degraded: frames sorted by weight", fontsize=10
    )
    fig.tight_layout()
    path = out / f"{name}_weights.png"
    buffer = io.BytesIO()
    fig.savefig(buffer, dpi=80)
    plt.close(fig)
    # a 128-colour palette keeps the committed PNG small (noisy chips compress badly)
    image = Image.open(buffer).convert("RGB")
    image.quantize(128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    print(f"wrote {path}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cache_options(parser)
    parser.add_argument(
        "--weights", default=SHIPPED_WEIGHTS, help="folder of the head weights (default: shipped)"
    )
    parser.add_argument("--heads", default="nan,qan", help="set presets whose weights to plot")
    parser.add_argument("--sets", type=int, default=5)
    parser.add_argument("--min-frames", type=int, default=5)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent))
    args = parser.parse_args(argv)
    lfw = LFW(args.data)
    variant = lfw_sets_embeddings(lfw, args.cache, args.chips)["degraded"]
    sets = pick_sets(variant, args.sets, args.min_frames)
    for name in args.heads.split(","):
        path = Path(args.weights) / get_preset(name).head.weights
        if not path.is_file():
            raise FileNotFoundError(f"no weights for {name}: {path} does not exist (see --weights)")
        head = build_head(name, path)
        plot_head(name, head, variant, sets, lfw, args.chips, Path(args.out))


if __name__ == "__main__":
    main()
