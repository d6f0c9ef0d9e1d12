"""How far can a frame weight follow degradation severity on dlib descriptors? (issue 6)

Upper bounds for the weight/severity Spearman target of the set heads, on the held-out
DevTrain pairs of ``zoo/train_set_heads.py`` (LFW-sets rules, degraded variant; LFW-sets
itself is not read). Every number here uses the severity label, which the shipped heads are
never trained with:

- "damage oracle": training frames weighted by `softmax(β cos(f_k, f_clean))`, the cosine of
  the frame's descriptor with the clean descriptor of the same image, on training-style sets.
- "severity probe": attention `softmax(β z_k)`, `z_k` the standardised output of a ridge
  regression of severity on the frame's unit descriptor `f` (a NAN-1 score `qᵀ f_k`: the
  paper's attention), on dlib's 256-d pooled last map, on its 448 texture statistics of three
  early maps (`TextureStatistics`, the shipped heads' quality input) or on `f` and the
  texture together (the shipped NAN score), fitted on the training people's frames.
- "identity consistency": the Spearman of severity with the cosine of each training frame to
  its person's other images (`identity_consistency`), a label-free quality signal.

The training frames are those of ``zoo/train_set_heads.py``'s defaults
(`keras_faceset.data.devtrain_sets.MAX_IMAGES` images, `VERSIONS` degraded versions each), read
from the same frame cache.

    python zoo/quality_ceiling.py --data ../shared/data/lfw
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.stats import spearmanr

from keras_faceset.data import LFW
from keras_faceset.data.devtrain_sets import (
    MAX_IMAGES,
    VERSIONS,
    frame_index,
    sample_sets,
    training_people,
)
from keras_faceset.eval.pair_reports import SIDES, pairs_spearman, report_line
from keras_faceset.eval.protocol_cache import (
    add_cache_options,
    devtrain_embeddings,
    held_out_embeddings,
)
from keras_faceset.eval.sets import set_verification, weight_severity_spearman
from keras_faceset.models import pad_sets


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def softmax_weights(score: np.ndarray, index: np.ndarray, mask: np.ndarray, beta: float):
    logits = np.where(mask, beta * score[index], -np.inf)
    weights = np.exp(logits - logits.max(axis=1, keepdims=True))
    return weights / weights.sum(axis=1, keepdims=True)


def identity_consistency(embeddings: np.ndarray, image: np.ndarray, person: np.ndarray):
    """Cosine of each unit descriptor with the mean unit descriptor of its person's frames
    from the other images (every version alike)."""
    f = unit(embeddings)
    person_sum = np.zeros((person.max() + 1, f.shape[1]))
    image_sum = np.zeros((image.max() + 1, f.shape[1]))
    np.add.at(person_sum, person, f)
    np.add.at(image_sum, image, f)
    return np.sum(f * unit(person_sum[person] - image_sum[image]), axis=1)


def attention_report(v: dict, score: np.ndarray, beta: float) -> dict:
    """Held-out verification and weight/severity Spearman of `softmax(β score)` pooling."""
    sides, weights, masks = [], [], []
    for side in SIDES:
        index, mask = pad_sets(v[side])
        weights.append(softmax_weights(score, index, mask, beta))
        masks.append(mask)
        sides.append(unit(np.einsum("bt,btd->bd", weights[-1], unit(v["embedding"])[index])))
    report = set_verification(*sides, v["same"], v["fold"])
    report["spearman"] = pairs_spearman(v, weights, masks)
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cache_options(parser)
    args = parser.parse_args(argv)
    lfw = LFW(args.data)
    images, frames, arrays = devtrain_embeddings(lfw, args.cache, args.chips, MAX_IMAGES, VERSIONS)
    train_names = training_people(images)
    person = images.identity.factorize()[0][frames.image.to_numpy()]
    train = images.identity.isin(train_names).to_numpy()[frames.image.to_numpy()]
    severity = frames.severity.to_numpy()

    consistency = identity_consistency(arrays["embedding"], frames.image.to_numpy(), person)
    rho = spearmanr(consistency, severity).statistic
    print(f"identity consistency vs severity (training frames): {rho:.3f}")

    f = unit(arrays["embedding"])
    index_of = frame_index(frames)
    damage = np.sum(f * f[index_of[frames.image.to_numpy(), 0]], axis=1)
    people = [np.flatnonzero(images.identity == n) for n in sorted(train_names)]
    index, mask, _ = sample_sets(index_of, people, 32, 40, np.random.default_rng(5))
    for beta in (5, 20, 50):
        weights = softmax_weights(damage, index, mask, beta)
        rho = weight_severity_spearman(weights, mask, severity[index])
        print(f"damage oracle, beta {beta}: spearman {rho:.3f}")

    val = held_out_embeddings(lfw, args.cache, args.chips, train_names)["degraded"]
    sources = {
        "f": (f, unit(val["embedding"])),
        "pooled": (arrays["pooled"], val["pooled"]),
        "texture": (arrays["texture"], val["texture"]),
    }
    inputs = {
        **sources,
        "f+texture": tuple(
            np.hstack(pair) for pair in zip(sources["f"], sources["texture"], strict=True)
        ),
    }
    for name, (x_train, x_val) in inputs.items():
        mean, std = x_train[train].mean(axis=0), x_train[train].std(axis=0) + 1e-6
        x_train, x_val = (x_train - mean) / std, (x_val - mean) / std
        design = np.hstack([x_train[train], np.ones((train.sum(), 1))])
        gram = design.T @ design + 1e-2 * np.eye(design.shape[1])
        coef = np.linalg.solve(gram, design.T @ severity[train])
        score = -(x_val @ coef[:-1])
        score = (score - score.mean()) / score.std()
        for beta in (1.0, 2.0):
            report = attention_report(val, score, beta)
            print(
                f"severity probe on {name}, beta {beta:g}: spearman {report['spearman']:.3f}; "
                f"{report_line(report)}"
            )


if __name__ == "__main__":
    main()
