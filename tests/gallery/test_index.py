"""Vector indexes against brute force: exact top-k, HNSW recall, removal, files, damage."""

import numpy as np
import pytest

from keras_faceset.gallery import index as index_module
from keras_faceset.gallery.index import (
    ExactIndex,
    HnswIndex,
    IndexFileError,
    VectorIndex,
    index_kind,
    make_index,
    top_k,
)


def unit(rng, n, dim=16):
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def clustered(rng, people=400, per=3, dim=32, spread=0.35):
    """Face-like vectors: `per` noisy views of each of `people` centres."""
    centres = unit(rng, people, dim)
    views = centres[:, None] + spread * rng.normal(size=(people, per, dim)) / np.sqrt(dim)
    views = views.reshape(-1, dim).astype(np.float32)
    return views / np.linalg.norm(views, axis=1, keepdims=True)


def brute_force(queries, ids, vectors, k):
    queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    scores = queries @ vectors.T
    order = np.argsort(-scores, axis=1)[:, :k]
    return np.take_along_axis(scores, order, 1), ids[order]


@pytest.mark.parametrize(
    "block, queries", [(1 << 22, 256), (7, 1), (50, 2), (1000, 10)]
)  # one block; 1 query x 7 templates; 2 x 25; 10 x 100
def test_exact_index_equals_brute_force_in_any_block_size(rng, monkeypatch, block, queries):
    monkeypatch.setattr(index_module, "BLOCK_ELEMENTS", block)
    monkeypatch.setattr(index_module, "QUERY_BLOCK", queries)
    vectors = unit(rng, 300)
    ids = rng.permutation(10_000)[:300]
    queries = 3.0 * unit(rng, 23)  # not unit: normalised on the way in
    index = ExactIndex(16)
    index.add(ids[:200], vectors[:200])
    index.add(ids[200:], 2 * vectors[200:])
    scores, found = index.search(queries, 5)
    want_scores, want_ids = brute_force(queries, ids, vectors, 5)
    np.testing.assert_array_equal(found, want_ids)
    np.testing.assert_allclose(scores, want_scores, atol=1e-6)
    assert len(index) == 300 and index.search(queries, 1000)[1].shape == (23, 300)


@pytest.mark.parametrize("cols", [3, 5, 40])
def test_top_k_keeps_the_k_highest_of_each_row_ties_included(rng, cols):
    scores = rng.normal(size=(20, cols)).astype(np.float32)
    scores[3] = 1.0  # a row of ties
    scores[4, :7] = 9.0  # more ties at the top than k
    values, columns = top_k(scores, 5)
    assert values.shape == (20, min(5, cols))
    np.testing.assert_array_equal(np.take_along_axis(scores, columns, 1), values)
    assert (np.diff(np.sort(columns, axis=1), axis=1) > 0).all()  # distinct columns
    want = -np.sort(-scores, axis=1)[:, :5]
    np.testing.assert_array_equal(-np.sort(-values, axis=1), want)
    _, moved = top_k(scores, 5, index=np.broadcast_to(np.arange(cols) + 100, scores.shape))
    np.testing.assert_array_equal(moved, columns + 100)


def test_remove_then_search_equals_brute_force_on_the_rest(rng):
    vectors, ids = unit(rng, 100), np.arange(100) * 3
    for index in (ExactIndex(16), HnswIndex(16)):
        index.add(ids, vectors)
        gone = ids[::2]
        index.remove(gone)
        assert sorted(index.ids) == sorted(ids[1::2])
        _, found = index.search(vectors[:10], 3)
        _, want = brute_force(vectors[:10], ids[1::2], vectors[1::2], 3)
        np.testing.assert_array_equal(found, want)
        assert not np.isin(found, gone).any()
        index.add(gone[:5], vectors[::2][:5])  # a removed id may come back
        assert len(index) == 55 and index.search(vectors[:1], 1)[1][0, 0] == 0


def test_hnsw_recall_at_1_against_exact(rng):
    vectors = clustered(rng)  # 1,200 vectors
    ids = np.arange(len(vectors))
    queries = clustered(np.random.default_rng(1), people=400, per=1)
    exact, approximate = ExactIndex(32), HnswIndex(32)
    for index in (exact, approximate):
        index.add(ids, vectors)
    _, want = exact.search(queries, 1)
    scores, found = approximate.search(queries, 5)
    assert (found[:, 0] == want[:, 0]).mean() >= 0.99
    assert (np.diff(scores, axis=1) <= 1e-6).all()  # best first


def test_hnsw_masks_removed_ids_then_rebuilds(rng):
    vectors, ids = unit(rng, 200), np.arange(200)
    index = HnswIndex(16)
    index.add(ids, vectors)
    index.remove(ids[:40])  # 20 %: masked
    assert len(index._labels) == 200 and len(index) == 160
    _, found = index.search(vectors[:40], 1)
    assert not np.isin(found, ids[:40]).any()
    index.remove(ids[40:60])  # 30 %: rebuilt from the 140 live vectors
    assert len(index._labels) == 140 and index._alive.all()
    _, found = index.search(vectors[60:80], 1)
    np.testing.assert_array_equal(found[:, 0], ids[60:80])


@pytest.mark.parametrize("cls", [ExactIndex, HnswIndex])
def test_save_load_round_trip(rng, tmp_path, cls):
    vectors, ids = unit(rng, 50), np.arange(50) + 7
    index = cls(16)
    index.add(ids, vectors)
    index.remove([7, 8])
    index.save(tmp_path / "index.npz")
    loaded = VectorIndex.load(tmp_path / "index.npz")
    assert type(loaded) is cls and loaded.dim == 16
    np.testing.assert_array_equal(np.sort(loaded.ids), np.sort(index.ids))
    for a, b in zip(index.search(vectors, 4), loaded.search(vectors, 4), strict=True):
        np.testing.assert_array_equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == ["index.npz"]  # no temporary left


@pytest.mark.parametrize("cls", [ExactIndex, HnswIndex])
@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_index_file_names_itself_and_the_remedy(rng, tmp_path, cls, damage):
    path = tmp_path / "index.npz"
    index = cls(16)
    index.add(np.arange(60), unit(rng, 60))
    index.save(path)
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) // 2]
    else:
        data[len(data) // 2] ^= 0xFF  # inside the stored arrays: caught by the zip CRC
    path.write_bytes(bytes(data))
    with pytest.raises(
        IndexFileError, match=f"{path}.*truncated or corrupt.*Gallery.repair\\(path\\)"
    ):
        VectorIndex.load(path)


def test_bad_input(rng):
    index = ExactIndex(16)
    with pytest.raises(ValueError, match="index is empty"):
        index.search(unit(rng, 1), 1)
    index.add([1, 2], unit(rng, 2))
    with pytest.raises(ValueError, match=r"already in the index: \[2\]"):
        index.add([2, 3], unit(rng, 2))
    with pytest.raises(KeyError, match=r"not in the index: \[9\]"):
        index.remove([9])
    with pytest.raises(ValueError, match=r"must be \(N, 16\)"):
        index.add([5], unit(rng, 1, dim=8))
    with pytest.raises(ValueError, match=r"all-zero rows \(rows 0\)"):
        index.search(np.zeros((1, 16)), 1)
    with pytest.raises(ValueError, match="ids must be unique"):
        index.add([4, 4], unit(rng, 2))
    with pytest.raises(ValueError, match="k must be at least 1"):
        index.search(unit(rng, 1), 0)


def test_auto_is_exact_up_to_the_limit():
    assert index_kind("auto", index_module.AUTO_EXACT_MAX) == "exact"
    assert index_kind("auto", index_module.AUTO_EXACT_MAX + 1) == "hnsw"
    assert index_kind("hnsw", 3) == "hnsw" and type(make_index("exact", 8, 10**7)) is ExactIndex
    with pytest.raises(ValueError, match="unknown index 'ivf'"):
        index_kind("ivf", 3)
