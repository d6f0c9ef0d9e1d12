"""Training sets for set heads from LFW View 1 DevTrain: images, frame versions, random sets.

The set heads (NAN, QAN, SeqFace) train on frozen frame embeddings. `select_images` picks the
DevTrain images, `training_frames` gives each one clean and `versions` randomly degraded frames
(the columns of `keras_faceset.data.lfw_sets.protocol_frames`, so the same frame cache embeds
them), `training_people` splits the people into training and held-out people, `frame_index`
maps (image, version) to a frame row and `sample_sets` draws batches of set pairs from it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from keras_faceset.data.degrade import KINDS
from keras_faceset.data.lfw import LFW
from keras_faceset.vectors import clean_centre_residuals

MAX_IMAGES = 2400
"""Images of the shipped NAN and QAN heads' training data."""
VERSIONS = 4
"""Degraded versions per image of the shipped NAN and QAN heads' training data."""
MAX_PER_PERSON = 6
MAX_FRAMES = 6
CLEAN_PROBABILITY = 0.2
"""Share of the sampling weight a set gives the clean frames (LFW-sets: 80 % degraded)."""
SEVERITY = (0.2, 1.0)
FRAME_COLUMNS = ["path", "kind_id", "severity", "seed0", "seed1", "image", "version"]


def select_images(lfw: LFW, max_images: int = MAX_IMAGES, seed: int = 0) -> pd.DataFrame:
    """DevTrain images of people with >= 2 images, at most `MAX_PER_PERSON` per person (a random
    subset, in file order), people in random order (stream `seed`) until `max_images`.

    Columns: path (relative to ``lfw.image_dir``), identity.
    """
    table = lfw.images("dev_train")
    table = table[table.identity.map(table.identity.value_counts()) >= 2]
    rng = np.random.default_rng(seed)
    people = table.identity.unique()
    picked, total = [], 0
    for person in people[rng.permutation(len(people))]:
        rows = table[table.identity == person]
        rows = rows.iloc[np.sort(rng.permutation(len(rows))[:MAX_PER_PERSON])]
        picked.append(rows)
        total += len(rows)
        if total >= max_images:
            break
    out = pd.concat(picked, ignore_index=True)[["path", "identity"]]
    out["path"] = [str(Path(p).relative_to(lfw.image_dir)) for p in out.path]
    return out


def training_people(images: pd.DataFrame, seed: int = 0) -> set[str]:
    """The training people: 80 % of `images`' identities in random order (stream `[seed, 2]`);
    the other 20 % are held out."""
    identities = images.identity.unique()
    order = np.random.default_rng([seed, 2]).permutation(len(identities))
    return {identities[p] for p in sorted(order[len(order) // 5 :])}


def training_frames(images: pd.DataFrame, versions: int = VERSIONS, seed: int = 0) -> pd.DataFrame:
    """One clean and `versions` randomly degraded frames per image, image by image (stream
    `[seed, 1]`): kind uniform over `keras_faceset.data.degrade.KINDS`, severity ~ U`SEVERITY`.

    Columns `FRAME_COLUMNS`: those of `protocol_frames` plus image (row of `images`) and version
    (0 clean).
    """
    rng = np.random.default_rng([seed, 1])
    rows = []
    for image, path in enumerate(images.path):
        rows.append((path, 0, 0.0, 0, 0, image, 0))
        for version in range(1, versions + 1):
            kind = int(rng.integers(len(KINDS)))
            severity = round(float(rng.uniform(*SEVERITY)), 3)
            seed0, seed1 = (int(s) for s in rng.integers(0, 2**31, size=2))
            rows.append((path, kind, severity, seed0, seed1, image, version))
    return pd.DataFrame(rows, columns=FRAME_COLUMNS)


def frame_index(frames: pd.DataFrame) -> np.ndarray:
    """`index[image, version]`: the row of that frame in `training_frames` `frames`."""
    image, version = frames["image"].to_numpy(), frames["version"].to_numpy()
    index = np.full((image.max() + 1, version.max() + 1), -1, np.int64)
    index[image, version] = np.arange(len(frames))
    if (index < 0).any():
        raise ValueError("frames must hold every version of every image (training_frames)")
    return index


def sample_sets(
    frame_index: np.ndarray,
    people: Sequence[np.ndarray],
    pairs_per_batch: int,
    batches: int,
    rng: np.random.Generator,
    clean_sets: float = 0.0,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`batches` batches of `pairs_per_batch` people x 2 sets: frame rows (N, T), mask (N, T)
    and person labels (N,), T = `MAX_FRAMES`.

    `frame_index[image, version]` is the frame row (version 0 clean); `people[p]` are person
    p's images. A person's images are split in two random halves, one per set; a set holds
    k ~ U{2..6} distinct frames (at most the half's frames) of its half's images drawn without
    replacement, a clean frame with weight `CLEAN_PROBABILITY` and a degraded one with weight
    (1 - `CLEAN_PROBABILITY`) / versions. With probability `clean_sets` a person's two sets
    hold clean frames only.
    """
    versions = frame_index.shape[1] - 1
    prior = np.array(
        [CLEAN_PROBABILITY] + [(1 - CLEAN_PROBABILITY) / versions] * versions if versions else [1.0]
    )
    clean_prior = np.eye(len(prior))[0]
    index = np.zeros((batches * pairs_per_batch * 2, MAX_FRAMES), np.int64)
    mask = np.zeros(index.shape, bool)
    labels = np.zeros(len(index), np.int64)
    n = 0
    for _ in range(batches):
        for person in rng.choice(len(people), pairs_per_batch, replace=False):
            clean = clean_sets > 0 and rng.random() < clean_sets
            images = rng.permutation(people[person])
            half = int(rng.integers(1, len(images)))
            for part in (images[:half], images[half:]):
                pool = frame_index[part].ravel()
                weights = np.tile(clean_prior if clean else prior, len(part))
                k = min(int(rng.integers(2, MAX_FRAMES + 1)), int(np.count_nonzero(weights)))
                index[n, :k] = rng.choice(pool, k, replace=False, p=weights / weights.sum())
                mask[n, :k] = True
                labels[n] = person
                n += 1
    return index, mask, labels


def frame_residuals(
    embeddings: np.ndarray, frames: pd.DataFrame, images: pd.DataFrame
) -> np.ndarray:
    """Each training frame's distance to its person's clean centre, `1 − cos(f_k, c)` (F,)
    (`keras_faceset.vectors.clean_centre_residuals`): `f_k` a row of `embeddings` (in
    `training_frames` order), `c` the mean of the clean unit embeddings (version 0) of the
    person's *other* images. The target of `keras_faceset.losses.GaussianPrecisionLoss`.
    People need >= 2 images (`select_images`)."""
    image = frames["image"].to_numpy()
    clean = np.flatnonzero(frames["version"].to_numpy() == 0)
    clean_of_image = np.full(len(images), -1)
    clean_of_image[image[clean]] = clean
    if (clean_of_image < 0).any():
        raise ValueError("frame_residuals: every image needs its clean frame (version 0)")
    clean_embeddings = np.asarray(embeddings)[clean_of_image]
    return clean_centre_residuals(embeddings, image, clean_embeddings, images["identity"])
