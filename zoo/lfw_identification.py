"""LFW identification: closed set (rank-1, rank-5), open set (DIR at FPIR 1e-2), and gallery
templates made from several images by mean pooling, NAN and QAN.

Every LFW image is embedded once per image model (MTCNN and the preset's crop; aligned chips
cached under --chips) into ``--cache/lfw_<model>_<digest>.npz`` (`keras_faceset.eval.lfw.
cached_embeddings`, written atomically), which ``zoo/lfw_clustering.py`` reads too.

- Closed set: for each of the 1,680 people with >= 2 images one seeded image is the gallery,
  their other 7,484 images are probes; rank-k is the share of probes whose person is among the
  k nearest gallery images by cosine distance (`keras_faceset.eval.identification_report`).
- Open set: the 4,069 people with one image are impostor probes as well. A probe is accepted
  when its best match's cosine similarity reaches the threshold that accepts 1 % of the
  impostors (false positive identification rate 1e-2, `keras_faceset.eval.threshold_at_far`);
  DIR is the share of genuine probes accepted with the right person.
- Templates: the DevTest people of LFW View 1 with >= 4 images (the set heads were trained on
  DevTrain people): 3 seeded images enrolled as one template by each preset's head, their other
  images probes (each a set of one frame), the DevTest people with one image impostors; for
  the image presets also one of the 3 images alone against the same probes.

Every figure is the mean over --seeds seeded draws of the gallery (spread printed).

    python zoo/lfw_identification.py --data /path/to/lfw --record keras_faceset/zoo/results.csv
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from keras_faceset.data import LFW
from keras_faceset.embedder import FaceEmbedder
from keras_faceset.eval import identification_report, threshold_at_far
from keras_faceset.eval.protocol_cache import add_cache_options, lfw_image_embeddings
from keras_faceset.eval.results import record_result
from keras_faceset.zoo import get_preset

IMAGE_MODELS = ("facenet", "dlib_resnet")
TEMPLATE_MODELS = ("facenet", "dlib_resnet", "nan1", "nan", "qan", "seqface")
MEAN_TEMPLATES = {"facenet": "mean_facenet", "dlib_resnet": "mean_dlib"}
"""How the results table names an image preset's mean-pooled templates."""
ONE_IMAGE = {"facenet": "one_image_facenet", "dlib_resnet": "one_image_dlib"}
"""... and its baseline: one of the enrolled images alone, against the same probes."""
FPIR = 1e-2
ENROLLED = 3


def enrol(identities: list, per_person: int, rng: np.random.Generator) -> tuple[list, list, list]:
    """Gallery sets (`per_person` seeded images of each person with more), the genuine probes
    (those people's other images) and the impostors (people with one image), as indices."""
    people: dict = {}
    for i, person in enumerate(identities):
        people.setdefault(person, []).append(i)
    gallery, probes, impostors = [], [], []
    for rows in people.values():
        if len(rows) == 1:
            impostors += rows
        elif len(rows) > per_person:
            chosen = set(rng.choice(rows, per_person, replace=False).tolist())
            gallery.append(sorted(chosen))
            probes += [i for i in rows if i not in chosen]
    return gallery, probes, impostors


def identification(gallery, gallery_labels, probes, probe_labels, impostors) -> dict[str, float]:
    """Rank-1 and rank-5 of the genuine probes and DIR at FPIR `FPIR` with the impostors."""
    report = identification_report(probes, probe_labels, gallery, gallery_labels)
    similarity = probes @ gallery.T
    best = similarity.max(axis=1)
    correct = np.asarray(gallery_labels)[similarity.argmax(axis=1)] == np.asarray(probe_labels)
    impostor_best = (impostors @ gallery.T).max(axis=1)
    scores = np.r_[impostor_best, best]
    genuine = np.r_[np.zeros(len(impostor_best), bool), np.ones(len(best), bool)]
    threshold = threshold_at_far(scores, genuine, FPIR)
    return {
        "rank1": report["rank-1"],
        "rank5": report["rank-5"],
        "dir@far=1e-2": float(np.mean(correct & (best >= threshold))),
        "probes": len(probes),
        "gallery": len(gallery),
        "impostors": len(impostors),
    }


def single_image(lfw: LFW, args: argparse.Namespace) -> pd.DataFrame:
    """One gallery image per person with >= 2 images, for each image preset and seed."""
    rows = []
    for model in IMAGE_MODELS:
        embeddings, identities = lfw_image_embeddings(lfw, model, args.cache, args.chips)
        labels = np.asarray(identities)
        for seed in range(args.seeds):
            gallery, probes, impostors = enrol(identities, 1, np.random.default_rng(seed))
            gallery = [g[0] for g in gallery]
            result = identification(
                embeddings[gallery],
                labels[gallery],
                embeddings[probes],
                labels[probes],
                embeddings[impostors],
            )
            rows.append({"model": model, "seed": seed, **result})
    return pd.DataFrame(rows)


def templates(lfw: LFW, args: argparse.Namespace) -> pd.DataFrame:
    """`ENROLLED` images per DevTest person as one template, per template preset and seed."""
    images = lfw.images("dev_test")
    paths, identities = images["path"].tolist(), images["identity"].tolist()
    labels = np.asarray(identities)
    frames: dict[str, dict] = {}  # frame outputs by frame_key: shared by nan, nan1 and qan
    rows = []
    for model in TEMPLATE_MODELS:
        embedder = FaceEmbedder(model, chip_cache=args.chips)
        if embedder.frame_key not in frames:
            print(f"embedding {len(paths)} DevTest images for {model}", flush=True)
            frames[embedder.frame_key] = embedder.frame_outputs(embedder.chips(paths))
        outputs = frames[embedder.frame_key]
        singles = embedder.set_embeddings(outputs, [[i] for i in range(len(paths))])[0]
        preset = get_preset(model)
        name = preset.head.results_model if preset.is_set_model else MEAN_TEMPLATES[model]
        for seed in range(args.seeds):
            gallery, probes, impostors = enrol(identities, ENROLLED, np.random.default_rng(seed))
            enrolled = embedder.set_embeddings(outputs, gallery)[0]
            first = [g[0] for g in gallery]
            galleries = {name: enrolled}
            if model in ONE_IMAGE:
                galleries[ONE_IMAGE[model]] = singles[first]
            for row_name, gallery_embeddings in galleries.items():
                result = identification(
                    gallery_embeddings,
                    labels[first],
                    singles[probes],
                    labels[probes],
                    singles[impostors],
                )
                rows.append({"model": row_name, "seed": seed, **result})
    return pd.DataFrame(rows)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and standard deviation over seeds, with the counts of one draw."""
    metrics = ["rank1", "rank5", "dir@far=1e-2"]
    grouped = table.groupby("model", sort=False)
    out = grouped[metrics].mean()
    for metric in metrics:
        out[f"{metric} std"] = grouped[metric].std(ddof=0)
    counts = grouped[["gallery", "probes", "impostors"]].first()
    return pd.concat([out, counts], axis=1).reset_index()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_cache_options(parser)
    parser.add_argument("--seeds", type=int, default=10, help="gallery draws (seeds 0, 1, ...)")
    parser.add_argument("--record", default=None, help="results CSV to record rows in")
    args = parser.parse_args(argv)
    Path(args.cache).mkdir(parents=True, exist_ok=True)
    lfw = LFW(args.data)
    tables = {
        "lfw_identification": single_image(lfw, args),
        "lfw_identification_templates": templates(lfw, args),
    }
    command = "python zoo/lfw_identification.py " + shlex.join(sys.argv[1:])
    summaries = {protocol: summary(table) for protocol, table in tables.items()}
    for protocol, result in summaries.items():
        print(f"{protocol} (mean over {args.seeds} seeds):")
        with pd.option_context("display.width", 160, "display.max_columns", 20):
            print(result.round(4).to_string(index=False))
    for protocol, result in summaries.items() if args.record else ():
        for row in result.to_dict("records"):
            common = {"model": row["model"], "alignment": "preset", "command": command}
            ranks = {"rank1": row["rank1"], "rank5": row["rank5"]}
            record_result(args.record, {**common, "protocol": protocol, **ranks})
            dir_row = {"protocol": f"{protocol}_open", "dir@far=1e-2": row["dir@far=1e-2"]}
            record_result(args.record, {**common, **dir_row})


if __name__ == "__main__":
    main()
