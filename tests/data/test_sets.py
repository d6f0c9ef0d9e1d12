import numpy as np
import pandas as pd
import pytest
from PIL import Image

from keras_faceset.data import sets as S
from keras_faceset.data.folders import even_indices, image_folder

# 12 identities with 1..6 images each
LABELS = np.repeat(np.arange(12), [1, 2, 3, 4, 5, 6, 1, 2, 3, 4, 5, 6])


def unpad(dataset, with_labels):
    """Each set's real frames (mask True) and its label, in dataset order."""
    found = []
    for element in dataset:
        (frames, mask), labels = element if with_labels else (element, None)
        frames, mask = frames.numpy(), mask.numpy()
        assert mask.shape == frames.shape[:2] and mask.dtype == bool
        for b in range(len(frames)):
            length = mask[b].sum()
            assert mask[b, :length].all() and not mask[b, length:].any()  # a prefix mask
            assert not frames[b, length:].any()  # zero padding
            found.append((frames[b, :length], None if labels is None else int(labels[b])))
    return found


@pytest.mark.parametrize("P, K", [(4, 3), (5, 2), (12, 4)])
def test_pk_indices_structure(P, K):
    batches = S.pk_indices(LABELS, P, K, num_batches=30, seed=1)
    assert batches.shape == (30, P * K)
    for batch in batches:
        ids = LABELS[batch].reshape(P, K)
        assert (ids == ids[:, :1]).all() and len(set(ids[:, 0])) == P  # P identities x K
        for rows in batch.reshape(P, K):
            n = (LABELS == LABELS[rows[0]]).sum()
            # n >= K: K distinct images; n < K: every image of the identity appears
            assert len(set(rows)) == min(n, K)
    # identities are visited in cycles: the first 12 // P batches hold distinct identities
    first = LABELS[batches[: 12 // P]].reshape(-1)
    assert len(set(first)) == (12 // P) * P


def test_pk_indices_seeded_and_min_images():
    a = S.pk_indices(LABELS, 3, 2, 10, seed=5)
    np.testing.assert_array_equal(a, S.pk_indices(LABELS, 3, 2, 10, seed=5))
    assert not np.array_equal(a, S.pk_indices(LABELS, 3, 2, 10, seed=6))
    kept = S.pk_indices(LABELS, 4, 2, 20, seed=0, min_images=5)
    assert set(LABELS[kept.reshape(-1)]) == {4, 5, 10, 11}
    with pytest.raises(ValueError, match="only 4 have >= 5 images"):
        S.pk_indices(LABELS, 5, 2, 1, min_images=5)
    with pytest.raises(ValueError, match="labels must be a 1-D integer"):
        S.pk_indices(LABELS.astype(float), 2, 2, 1)
    with pytest.raises(ValueError, match="K must be a positive int"):
        S.pk_indices(LABELS, 2, 0, 1)


def test_pk_batches_loads_images_of_the_right_identity(tmp_path):
    for label, count in enumerate([1, 3, 4, 2]):
        folder = tmp_path / f"id{label}"
        folder.mkdir()
        for i in range(count):  # pixel value encodes (identity, image)
            value = np.full((6, 6, 3), 50 * label + i, np.uint8)
            Image.fromarray(value).save(folder / f"{i}.png")
    table = image_folder(tmp_path)
    dataset = S.pk_batches(table, P=2, K=3, seed=0, num_batches=4)
    expected = S.pk_indices(table["label"], 2, 3, 4, seed=0)
    for (images, labels), rows in zip(dataset, expected, strict=True):
        assert images.shape == (6, 6, 6, 3) and labels.dtype == np.int64
        np.testing.assert_array_equal(labels.numpy(), table["label"].to_numpy()[rows])
        np.testing.assert_array_equal(images.numpy()[:, 0, 0, 0] // 50, labels.numpy())
    by_identity = S.pk_batches(table.drop(columns="label"), P=2, K=3, seed=0, num_batches=4)
    for (_, labels), rows in zip(by_identity, expected, strict=True):
        np.testing.assert_array_equal(labels.numpy(), table["label"].to_numpy()[rows])
    with pytest.raises(ValueError, match="'label' or an 'identity' column"):
        S.pk_batches(pd.DataFrame({"path": table["path"]}), 2, 2)


def test_padded_set_batches_round_trip(rng):
    sets = [rng.normal(size=(n, 3, 2)).astype(np.float32) for n in (3, 1, 6, 2, 5)]
    labels = [4, 0, 2, 2, 1]
    found = unpad(S.padded_set_batches(sets, batch_size=2, labels=labels), with_labels=True)
    assert len(found) == 5
    for (frames, label), expected, expected_label in zip(found, sets, labels, strict=True):
        np.testing.assert_array_equal(frames, expected)
        assert label == expected_label
    batch_shapes = [f.shape for f, _ in S.padded_set_batches(sets, batch_size=2)]
    assert batch_shapes == [(2, 3, 3, 2), (2, 6, 3, 2), (1, 5, 3, 2)]  # T = longest set


def test_max_frames_and_shuffle(rng):
    sets = [rng.normal(size=(n, 4)) for n in (7, 2, 4, 9, 1, 3)]
    dataset = S.padded_set_batches(sets, 4, max_frames=4, labels=np.arange(6), shuffle_seed=3)
    assert dataset.element_spec[0][0].shape.as_list() == [None, 4, 4]
    epochs = [unpad(dataset, True), unpad(dataset, True)]
    again = unpad(S.padded_set_batches(sets, 4, 4, np.arange(6), shuffle_seed=3), True)
    for epoch in epochs:
        order = [label for _, label in epoch]
        assert sorted(order) == list(range(6))
        for frames, label in epoch:  # sets longer than 4 keep their even_indices frames
            np.testing.assert_array_equal(frames, sets[label][even_indices(len(sets[label]), 4)])
    assert [label for _, label in epochs[0]] == [label for _, label in again]
    assert [label for _, label in epochs[0]] != [label for _, label in epochs[1]]


def test_padded_set_batches_from_paths(tmp_path):
    paths = []
    for i in range(5):
        path = tmp_path / f"{i}.png"
        Image.fromarray(np.full((4, 4, 3), 10 * i, np.uint8)).save(path)
        paths.append(str(path))
    sets = [paths[:2], paths[2:]]
    found = unpad(S.padded_set_batches(sets, 2, preprocess_fn=lambda x: x[:2, :2] / 2), False)
    np.testing.assert_array_equal(found[1][0][:, 0, 0, 0], [10.0, 15.0, 20.0])
    assert found[0][0].shape == (2, 2, 2, 3)


def test_embedding_set_dataset(rng):
    embeddings = rng.normal(size=(20, 8)).astype(np.float32)
    indices = [[0, 5, 7], [19], [3, 3, 4, 10, 11]]
    found = unpad(S.embedding_set_dataset(embeddings, indices, [1, 2, 3], 2), True)
    for (frames, label), rows, expected_label in zip(found, indices, [1, 2, 3], strict=True):
        np.testing.assert_array_equal(frames, embeddings[rows])
        assert label == expected_label
    dataset = S.embedding_set_dataset(embeddings, indices, None, 3, max_frames=4)
    frames, mask = next(iter(dataset))
    assert frames.shape == (3, 4, 8) and mask.numpy().sum(axis=1).tolist() == [3, 1, 4]


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda e: S.embedding_set_dataset(e, [[0], []], None, 2), "set 1 is empty"),
        (lambda e: S.embedding_set_dataset(e, [[0], [9]], None, 2), r"outside \[0, 5\)"),
        (lambda e: S.embedding_set_dataset(e, [[0]], [1, 2], 2), "2 labels for 1 sets"),
        (lambda e: S.embedding_set_dataset(e, [[0]], [1.5], 2), "labels must be a 1-D integer"),
        (lambda e: S.embedding_set_dataset(e[0], [[0]], None, 2), r"must be \(N, D\)"),
        (lambda e: S.embedding_set_dataset(e, [[0]], None, 0), "batch_size must be a positive"),
        (lambda e: S.padded_set_batches([[("v.avi", 0)]], 2), "load_frames"),
        (lambda e: S.padded_set_batches([e[:2], e[:2, :3]], 2), "share one shape"),
    ],
)
def test_bad_input_raises(call, message):
    with pytest.raises(ValueError, match=message):
        call(np.zeros((5, 4), np.float32))
