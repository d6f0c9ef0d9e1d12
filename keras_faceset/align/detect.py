"""MTCNN face detection and the choice of one face.

Two backends: ``"graph"`` (default), `keras_faceset.detect.Mtcnn`, the cascade in one TensorFlow
graph (the faces the `mtcnn` package finds, at the same places: docs/detection.md; about 2x
faster at batch 32 on 2 CPU cores; a face that fills the frame is searched again inside a
border); ``"package"``, the `mtcnn` package itself, kept as the parity reference."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

BACKENDS = ("graph", "package")


@dataclass(frozen=True)
class Detections:
    """The faces found in one image: boxes (k, 4) as x1, y1, x2, y2; scores (k,);
    landmarks (k, 5, 2) as (x, y) in `LANDMARK_NAMES` order. Pixel centres at integers."""

    boxes: np.ndarray
    scores: np.ndarray
    landmarks: np.ndarray

    def __len__(self) -> int:
        return len(self.scores)


class MtcnnDetector:
    """Batched MTCNN (Zhang et al. 2016), `backend` ``"graph"`` (`keras_faceset.detect.Mtcnn`)
    or ``"package"`` (`mtcnn.MTCNN`, a dependency of keras-faceset).

    Images of the same shape go through the networks together, `batch_size` at a time. The
    defaults are those of davidsandberg/facenet's ``align_dataset_mtcnn.py`` (min face 20 px,
    thresholds 0.6/0.7/0.7, pyramid factor 0.709). Boxes are not clipped to the image (as in
    facenet); crops clip them. The graph backend returns at most `max_faces` faces per image
    (the largest) and searches an image without a face again inside a grey border of
    `retry_padding` of its longer side (0: off). `device` places the package's networks.
    Building the networks takes seconds: create one detector and reuse it.
    """

    def __init__(
        self,
        min_face_size: int = 20,
        thresholds: tuple[float, float, float] = (0.6, 0.7, 0.7),
        scale_factor: float = 0.709,
        batch_size: int = 32,
        device: str = "CPU:0",
        backend: str = "graph",
        max_faces: int = 32,
        retry_padding: float = 0.25,
    ):
        if backend not in BACKENDS:
            raise ValueError(f"unknown detector backend {backend!r}; expected one of {BACKENDS}")
        if len(thresholds) != 3 or not all(0.0 <= t <= 1.0 for t in thresholds):
            raise ValueError(f"thresholds must be 3 values in [0, 1], got {thresholds!r}")
        if min_face_size < 12:
            raise ValueError(
                f"min_face_size must be at least 12 (PNet's window), got {min_face_size}"
            )
        if not 0.0 < scale_factor < 1.0:
            raise ValueError(f"scale_factor must be in (0, 1), got {scale_factor}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.min_face_size = int(min_face_size)
        self.thresholds = tuple(float(t) for t in thresholds)
        self.scale_factor = float(scale_factor)
        self.batch_size = int(batch_size)
        self.device = device
        self.backend = backend
        self.max_faces = int(max_faces)
        self.retry_padding = float(retry_padding)
        self._mtcnn = None

    @property
    def config(self) -> dict:
        """The settings that change detections (part of the chip cache key)."""
        config = {
            "min_face_size": self.min_face_size,
            "thresholds": list(self.thresholds),
            "scale_factor": self.scale_factor,
        }
        if self.backend == "graph":
            config.update(
                backend="graph", max_faces=self.max_faces, retry_padding=self.retry_padding
            )
        return config

    def _model(self):
        if self._mtcnn is None and self.backend == "graph":
            from keras_faceset.detect import shared_mtcnn

            self._mtcnn = shared_mtcnn(
                self.min_face_size,
                self.thresholds,
                self.scale_factor,
                max_faces=self.max_faces,
                retry_padding=self.retry_padding,
            )
        if self._mtcnn is None:
            try:
                from mtcnn import MTCNN
            except ImportError as error:
                raise ImportError(
                    "face detection needs the `mtcnn` package, a dependency of keras-faceset: "
                    "reinstall it (pip install keras-faceset) or pip install mtcnn==1.0.0"
                ) from error
            self._mtcnn = MTCNN(device=self.device)
        return self._mtcnn

    def detect(self, images: Sequence[np.ndarray]) -> list[Detections]:
        """Detect faces in RGB uint8 images (H, W, 3); one `Detections` per image, in order."""
        by_shape: dict[tuple, list[int]] = defaultdict(list)
        for index, image in enumerate(images):
            if image.ndim != 3 or image.shape[2] != 3:
                raise ValueError(f"image {index} must be (H, W, 3) RGB, got shape {image.shape}")
            by_shape[image.shape].append(index)
        results: list[Detections | None] = [None] * len(images)
        for indices in by_shape.values():
            for start in range(0, len(indices), self.batch_size):
                chunk = indices[start : start + self.batch_size]
                if self.backend == "graph":
                    found = self._detect_graph(np.stack([images[i] for i in chunk]))
                    for index, detections in zip(chunk, found, strict=True):
                        results[index] = detections
                    continue
                rows = self._detect_rows([images[i] for i in chunk])
                for position, index in enumerate(chunk):
                    results[index] = _to_detections(rows[rows[:, 0] == position])
        return results

    def _detect_graph(self, batch: np.ndarray) -> list[Detections]:
        found = {key: value.numpy() for key, value in self._model().detect(batch).items()}
        return [
            Detections(
                boxes=found["boxes"][i, :count],
                scores=found["scores"][i, :count],
                landmarks=found["landmarks"][i, :count],
            )
            for i, count in enumerate(found["counts"])
        ]

    def _detect_rows(self, batch: list[np.ndarray]) -> np.ndarray:
        """mtcnn's (n, 16) rows: image index, x1, y1, x2, y2, score, 5 x's, 5 y's."""
        rows = self._model().detect_faces(
            [image.astype(np.float32) for image in batch],
            fit_to_image=False,
            box_format="xyxy",
            output_type="numpy",
            min_face_size=self.min_face_size,
            scale_factor=self.scale_factor,
            threshold_pnet=self.thresholds[0],
            threshold_rnet=self.thresholds[1],
            threshold_onet=self.thresholds[2],
        )
        return np.asarray(rows, dtype=np.float64).reshape(-1, 16)


def _to_detections(rows: np.ndarray) -> Detections:
    landmarks = np.stack([rows[:, 6:11], rows[:, 11:16]], axis=-1)
    return Detections(
        boxes=rows[:, 1:5].astype(np.float32),
        scores=rows[:, 5].astype(np.float32),
        landmarks=landmarks.astype(np.float32),
    )


def select_face(boxes: np.ndarray, image_shape: tuple[int, ...]) -> int:
    """Index of the face to keep: the largest, penalised by its distance from the image centre.

    ``score = area - 2 * |box centre - image centre|^2`` (both in pixels^2), facenet's rule in
    ``align_dataset_mtcnn.py``: a face must be larger by twice its squared offset to win.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.ndim != 2 or boxes.shape[1] != 4 or len(boxes) == 0:
        raise ValueError(f"boxes must be a non-empty (k, 4) array, got shape {boxes.shape}")
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    centre = np.array([image_shape[1], image_shape[0]]) / 2.0
    offset = (boxes[:, :2] + boxes[:, 2:]) / 2.0 - centre
    return int(np.argmax(area - 2.0 * np.sum(offset**2, axis=1)))
