"""Slow: the in-graph cascade finds the faces the `mtcnn` package finds on real LFW photos and
2x2 collages of them, at the same places (needs ../shared)."""

import numpy as np
import pytest

from keras_faceset.align import MtcnnDetector
from keras_faceset.data.images import load_image
from keras_faceset.detect import Mtcnn
from keras_faceset.gallery.tracks import box_iou
from tests.conftest import LFW_DIR, require


def detect(detector: Mtcnn, images: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """(boxes, landmarks) of the faces of each image, in batches of 32."""
    faces = []
    for start in range(0, len(images), 32):
        found = {k: v.numpy() for k, v in detector.detect(images[start : start + 32]).items()}
        for count, boxes, points in zip(
            *(found[k] for k in ("counts", "boxes", "landmarks")), strict=True
        ):
            faces.append((boxes[:count], points[:count]))
    return faces


def parity(theirs, ours) -> dict[str, float]:
    """Recall of the package's faces (best IoU >= 0.5), our extra faces per package face, the
    median IoU and landmark error (mean px over the five points) of the matched faces."""
    total, matched, extra, ious, errors = 0, 0, 0, [], []
    for reference, (boxes, landmarks) in zip(theirs, ours, strict=True):
        total += len(reference)
        if len(boxes) == 0:
            continue
        overlap = box_iou(reference.boxes, boxes).reshape(len(reference), len(boxes))
        best = overlap.argmax(axis=1)
        hits = [i for i in range(len(reference)) if overlap[i, best[i]] >= 0.5]
        matched += len(hits)
        extra += len(boxes) - len(set(best[hits]))
        ious += [overlap[i, best[i]] for i in hits]
        errors += [
            np.linalg.norm(reference.landmarks[i] - landmarks[best[i]], axis=-1).mean()
            for i in hits
        ]
    return {
        "recall": matched / total,
        "extra": extra / total,
        "iou": float(np.median(ious)),
        "landmarks": float(np.median(errors)),
    }


@pytest.mark.slow
def test_parity_with_the_package_on_lfw():
    paths = sorted(require(LFW_DIR / "lfw-deepfunneled").glob("*/*.jpg"))
    photos = np.stack([load_image(path).numpy() for path in paths[:192]])
    collages = []
    for row in np.random.default_rng(0).choice(len(paths), (24, 4), replace=False):
        tiles = [load_image(paths[i]).numpy() for i in row]
        top, bottom = np.concatenate(tiles[:2], axis=1), np.concatenate(tiles[2:], axis=1)
        collages.append(np.concatenate([top, bottom], axis=0))
    reference, detector = MtcnnDetector(backend="package"), Mtcnn(retry_padding=0)
    for images in (photos, np.stack(collages)):
        figures = parity(reference.detect(list(images)), detect(detector, images))
        assert figures["recall"] >= 0.995 and figures["extra"] <= 0.005, figures
        assert figures["iou"] >= 0.97 and figures["landmarks"] <= 0.5, figures
