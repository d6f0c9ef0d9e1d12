"""Why does weighting by the true residual lose to mean pooling on speckle? (issue 14)

For each hard and unseen LFW variant of ``zoo/set_generalization.py``, the *damage* of each
degraded frame is `δ_k = f_k − f_k⁰`, its unit dlib embedding minus the unit embedding of the
same image clean. The script prints:

- how much of the damage's energy `Σ_k ‖δ_k‖²` lies in its top 1, 3 and 10 principal
  directions (uncentred SVD of the δ): damage shared by every identity (a shift of all speckled
  faces the same way) is concentrated there; and the |cosine| of its first direction with each
  training family's first direction;
- the residual oracle (`residual_oracle_weights`, weights `1 / r_k` from each frame's true
  residual to its person's clean centre) against mean pooling, with the paired bootstrap 95 %
  interval, on the embeddings as they are (k = 0) and with the top k damage directions projected
  out of every frame and every clean embedding (k = 1, 3, 10);
- the same with the top k directions of the six training families' damage pooled (the six
  ``lfw_<family>_hard`` variants' δ together; k = 3, 10): the directions a method trained on
  those families could know.

The projection uses the damage of evaluation frames: it is a diagnostic of where the damage
lies, not a method any aggregator could apply.

    python zoo/damage_subspace.py --data ../shared/data/lfw
"""

from __future__ import annotations

import argparse

import numpy as np

from keras_faceset.data import LFW
from keras_faceset.data.degrade import KINDS
from keras_faceset.eval.protocol_cache import add_cache_options
from keras_faceset.eval.set_generalization import (
    METRICS,
    RESAMPLES,
    compare,
    lfw_variants,
    residual_oracle_weights,
)
from keras_faceset.vectors import unit_vectors

VARIANTS = (
    "lfw_blur_hard",
    "lfw_noise_hard",
    "lfw_downscale_hard",
    "lfw_occlusion_hard",
    "lfw_unseen_motion_blur",
    "lfw_unseen_haze",
    "lfw_unseen_speckle",
)
RANKS = (0, 1, 3, 10)
POOLED_RANKS = (3, 10)


def damage(variant: dict, clean: dict) -> tuple[np.ndarray, np.ndarray]:
    """The unit embeddings of `variant`'s frames (F, D) and the damage `δ_k` (G, D) of its G
    degraded frames that its pairs use (each minus its image's clean unit embedding)."""
    clean_rows = np.flatnonzero(clean["severity"] == 0)
    clean_of = dict(zip(np.asarray(clean["path"])[clean_rows], clean_rows, strict=True))
    frames = unit_vectors(variant["embedding"])
    used = np.unique(np.concatenate([*variant["rows_a"], *variant["rows_b"]]))
    degraded = used[variant["severity"][used] > 0]
    own_clean = [clean_of[path] for path in np.asarray(variant["path"])[degraded]]
    return frames, frames[degraded] - unit_vectors(clean["embedding"][own_clean])


def without(vectors: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """Unit `vectors` with the span of the orthonormal rows of `basis` projected out."""
    return unit_vectors(vectors - (vectors @ basis.T) @ basis)


def directions(delta: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The principal directions of the damage `delta` (rows, uncentred SVD), strongest first,
    and the cumulative share of its energy `Σ ‖δ‖²` in the first 1, 2, ... of them."""
    _, singular, rows = np.linalg.svd(delta, full_matrices=False)
    return rows, np.cumsum(singular**2) / np.sum(singular**2)


def oracle_line(
    variant: dict, clean: dict, frames: np.ndarray, basis: np.ndarray, resamples: int
) -> str:
    """The residual oracle against mean pooling with `basis` projected out, as one line."""
    projected = {**variant, "embedding": without(frames, basis)}
    projected_clean = {**clean, "embedding": without(unit_vectors(clean["embedding"]), basis)}
    result = compare(residual_oracle_weights(projected, projected_clean), projected, resamples)
    return ", ".join(
        f"{m} mean {result[f'mean_{m}']:.3f}, oracle {result[m]:.3f} "
        f"({result[f'diff_{m}']:+.3f} [{result[f'low_{m}']:+.3f}, {result[f'high_{m}']:+.3f}])"
        for m in METRICS
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cache_options(parser)
    parser.add_argument("--resamples", type=int, default=RESAMPLES)
    args = parser.parse_args(argv)
    variants = lfw_variants(LFW(args.data), args.cache, args.chips)
    clean = variants["lfw_clean"]
    trained = {f: damage(variants[f"lfw_{f}_hard"], clean)[1] for f in KINDS}
    pooled, _ = directions(np.concatenate(list(trained.values())))
    firsts = {f: directions(delta)[0][0] for f, delta in trained.items()}
    for name in VARIANTS:
        frames, delta = damage(variants[name], clean)
        own, energy = directions(delta)
        print(
            f"{name}: {len(delta)} degraded frames, damage energy in the top 1 / 3 / 10 "
            f"directions {energy[0]:.2f} / {energy[2]:.2f} / {energy[9]:.2f}; first direction's "
            "|cos| with each training family's: "
            + ", ".join(f"{f} {abs(own[0] @ first):.2f}" for f, first in firsts.items()),
            flush=True,
        )
        for k in RANKS:
            line = oracle_line(variants[name], clean, frames, own[:k], args.resamples)
            print(f"  k = {k:2d}: {line}", flush=True)
        for k in POOLED_RANKS:
            line = oracle_line(variants[name], clean, frames, pooled[:k], args.resamples)
            print(f"  k = {k:2d} of the six families' directions: {line}", flush=True)


if __name__ == "__main__":
    main()
