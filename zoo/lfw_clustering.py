"""LFW clustering: keras_faceset.gallery.cluster (average linkage, threshold graph) against
dlib's Chinese whispers and scikit-learn's DBSCAN on the same embeddings, pairwise and BCubed F.

The embeddings are those of ``zoo/lfw_identification.py`` (every LFW image embedded once per
image model into ``--cache/lfw_<model>_<digest>.npz``; made here when absent). The faces are
those of the people with >= 2 images, split by LFW View 1 into DevTrain (6,671 images of
1,184 people) and DevTest (2,493 images of 496 people). Each method's threshold (DBSCAN: eps and
min_samples) is the one of a grid with the best BCubed F on one side, reported on the other,
both ways, so each of the 9,164 faces is clustered once with a threshold chosen on other
people; and on seeded subsets of 1,000 images (chosen on a DevTrain subset, reported on a
DevTest subset; mean over --seeds). Thresholds are cosine distances d; Chinese whispers,
which measures Euclidean distance, gets ``sqrt(2 d)`` (the same cut on unit rows). Average
linkage is also reported at its default threshold (`default_threshold`: the model's
verification threshold at FAR 1e-3, nothing chosen on clusters).

Sets ("tracks"): the DevTest people with >= 4 images (the set heads were trained on DevTrain
people), each person's images shuffled and cut into sets of 2 (3 for an odd last one), each
set one template (mean of dlib_resnet frames, NAN, QAN); the people split into two seeded
halves, choice on one, report on the other.

    python zoo/lfw_clustering.py --data /path/to/lfw --record keras_faceset/zoo/results.csv
"""

from __future__ import annotations

import argparse
import shlex
import sys
import time
from pathlib import Path

import dlib
import numpy as np
import pandas as pd
from sklearn.cluster import DBSCAN

from keras_faceset.data import LFW
from keras_faceset.embedder import FaceEmbedder
from keras_faceset.eval.protocol_cache import add_cache_options, lfw_image_embeddings
from keras_faceset.eval.results import record_result
from keras_faceset.gallery.cluster import cluster, clustering_scores, default_threshold
from keras_faceset.zoo import get_preset

IMAGE_MODELS = ("facenet", "dlib_resnet")
SET_MODELS = {"dlib_resnet": "mean_dlib", "nan": "nan2_dlib", "qan": "qan_dlib"}
"""Set presets (and dlib_resnet's mean of frames) with the name of their results rows."""
OURS = ("agglomerative", "graph")
METHODS = (*OURS, "chinese_whispers", "dbscan")
GRID = np.geomspace(0.3, 2.0, 25)
"""Thresholds tried: these multiples of the model's verification threshold at FAR 1e-2."""
MIN_SAMPLES = (2, 3, 5)
"""DBSCAN's min_samples tried (1 would make every face a core point: the threshold graph)."""
SUBSET = 1000
TRACK = 2
SCORES = ("pairwise_precision", "pairwise_recall", "pairwise_f", "bcubed_f", "clusters")


def run(method: str, x: np.ndarray, threshold: float, min_samples: int) -> np.ndarray:
    """Cluster labels of unit rows `x` cut at cosine distance `threshold` (-1: alone)."""
    if method in OURS:
        return cluster(x, threshold=threshold, method=method)
    if method == "chinese_whispers":  # joins faces closer than the Euclidean threshold
        vectors = [dlib.vector(row.tolist()) for row in x]
        return np.asarray(dlib.chinese_whispers_clustering(vectors, float(np.sqrt(2 * threshold))))
    return DBSCAN(eps=threshold, min_samples=min_samples, metric="cosine").fit_predict(x)


def choose(method: str, x: np.ndarray, truth: list, reference: float) -> tuple[float, int]:
    """The (threshold, min_samples) of the grid with the best BCubed F on (`x`, `truth`)."""
    samples = MIN_SAMPLES if method == "dbscan" else (1,)
    tried = [(float(reference * m), k) for m in GRID for k in samples]
    scores = [clustering_scores(truth, run(method, x, t, k))["bcubed_f"] for t, k in tried]
    return tried[int(np.argmax(scores))]


def report(method: str, x: np.ndarray, truth: list, threshold: float, min_samples: int) -> dict:
    start = time.perf_counter()
    labels = run(method, x, threshold, min_samples)
    seconds = time.perf_counter() - start
    scores = clustering_scores(truth, labels)
    return {"threshold": threshold, "min_samples": min_samples, **scores, "seconds": seconds}


def compare(choice: tuple, test: tuple, model: str, name: str, protocol: str) -> list[dict]:
    """Every method chosen on `choice` (x, identities) and reported on `test`, and average
    linkage at its default threshold; rows named `name`."""
    reference = float(get_preset(model).thresholds["1e-02"])
    rows = []
    for method in METHODS:
        threshold, min_samples = choose(method, *choice, reference)
        rows.append({"method": method, **report(method, *test, threshold, min_samples)})
    found = report("agglomerative", *test, default_threshold(model), 1)
    rows.append({"method": "agglomerative_default", **found})
    return [{"model": name, "protocol": protocol, **row} for row in rows]


def image_faces(lfw: LFW, args: argparse.Namespace) -> list[dict]:
    """Per-image clustering: DevTrain <-> DevTest, and 1,000-image subsets."""
    dev_train = set(lfw.people("dev_train")["name"])
    rows = []
    for model in IMAGE_MODELS:
        embeddings, identities = lfw_image_embeddings(lfw, model, args.cache, args.chips)
        counts = pd.Series(identities).value_counts()
        sides: dict[str, list[int]] = {"dev_train": [], "dev_test": []}
        for i, person in enumerate(identities):
            if counts[person] >= 2:
                sides["dev_train" if person in dev_train else "dev_test"].append(i)

        def faces(rows, embeddings=embeddings, identities=identities):
            return embeddings[rows], [identities[i] for i in rows]

        train, test = faces(sides["dev_train"]), faces(sides["dev_test"])
        print(f"{model}: DevTrain -> DevTest, DevTest -> DevTrain", flush=True)
        rows += compare(train, test, model, model, "lfw_clustering")
        rows += compare(test, train, model, model, "lfw_clustering_devtrain")
        for seed in range(args.seeds):
            rng = np.random.default_rng(seed)
            train, test = (
                faces(np.sort(rng.choice(v, SUBSET, replace=False))) for v in sides.values()
            )
            print(f"{model}: {SUBSET}-image subsets, seed {seed}", flush=True)
            found = compare(train, test, model, model, "lfw_clustering_1000")
            rows += [{**row, "seed": seed} for row in found]
    return rows


def tracks(identities: list, rng: np.random.Generator) -> list[list[int]]:
    """The images of each person with >= 2 `TRACK` images, shuffled and cut into sets of
    `TRACK` (a leftover joins the person's last set)."""
    people: dict = {}
    for i, person in enumerate(identities):
        people.setdefault(person, []).append(i)
    sets = []
    for rows in people.values():
        if len(rows) >= 2 * TRACK:
            rows = rng.permutation(rows).tolist()
            whole = len(rows) - len(rows) % TRACK
            cut = [rows[i : i + TRACK] for i in range(0, whole, TRACK)]
            cut[-1] += rows[whole:]
            sets += cut
    return sets


def track_templates(lfw: LFW, args: argparse.Namespace) -> list[dict]:
    """Clustering of the track templates of DevTest people (halves of the people)."""
    images = lfw.images("dev_test")
    identities = images["identity"].tolist()
    rng = np.random.default_rng(0)
    groups = tracks(identities, rng)
    used = sorted({i for group in groups for i in group})
    position = {i: k for k, i in enumerate(used)}
    rows_of = [[position[i] for i in group] for group in groups]
    truth = np.array([identities[group[0]] for group in groups])
    people = rng.permutation(sorted(set(truth.tolist())))
    first = np.isin(truth, people[: len(people) // 2])
    paths = images["path"].to_numpy()[used].tolist()
    frames: dict[str, dict] = {}  # frame outputs by frame_key: nan and qan share theirs
    rows = []
    for model, name in SET_MODELS.items():
        embedder = FaceEmbedder(model, chip_cache=args.chips)
        if embedder.frame_key not in frames:
            print(f"{model}: embedding {len(paths)} DevTest images", flush=True)
            frames[embedder.frame_key] = embedder.frame_outputs(embedder.chips(paths))
        x = embedder.set_embeddings(frames[embedder.frame_key], rows_of)[0]
        halves = [(x[side], truth[side].tolist()) for side in (first, ~first)]
        rows += compare(*halves, model, name, "lfw_clustering_sets")
    return rows


def summary(rows: list[dict]) -> pd.DataFrame:
    """Mean over seeds per (protocol, model, method) (the subsets), in the order met."""
    table = pd.DataFrame(rows)
    keys = ["protocol", "model", "method"]
    columns = ["threshold", "min_samples", *SCORES, "items", "seconds"]
    return table.groupby(keys, sort=False)[columns].mean().reset_index()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cache_options(parser)
    parser.add_argument("--seeds", type=int, default=5, help="1,000-image subsets (seeds 0, ...)")
    parser.add_argument("--record", default=None, help="results CSV to record rows in")
    args = parser.parse_args(argv)
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    lfw = LFW(args.data)
    table = summary(image_faces(lfw, args) + track_templates(lfw, args))
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.round(4).to_string(index=False))
    command = "python zoo/lfw_clustering.py " + shlex.join(sys.argv[1:])
    for row in table.to_dict("records") if args.record else []:
        record_result(
            args.record,
            {
                "model": f"{row['method']}_{row['model']}",
                "protocol": row["protocol"],
                "alignment": "preset",
                "pairwise_f": row["pairwise_f"],
                "bcubed_f": row["bcubed_f"],
                "threshold": row["threshold"],
                "command": command,
            },
        )


if __name__ == "__main__":
    main()
