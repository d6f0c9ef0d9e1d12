"""Nearest-template search over unit vectors: one interface, an exact and an approximate index.

Scores are cosine similarities ``s = <q/|q|, t/|t|>`` (vectors are normalised on the way in),
highest first. `ExactIndex` is a blocked matrix product (memory holds one block of
`BLOCK_ELEMENTS` scores at a time, never the full query-by-template matrix); `HnswIndex` is
faiss's HNSW graph (Malkov & Yashunin 2018) over the same vectors. ``make_index("auto", n)``
picks exact up to `AUTO_EXACT_MAX` templates and HNSW beyond (benchmarks/gallery.py measures
the choice). An index file is one uncompressed ``.npz`` (each member CRC-checked on reading),
written atomically; a damaged file raises `IndexFileError` naming it.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path
from typing import ClassVar

import numpy as np

from keras_faceset.files import atomic_path
from keras_faceset.vectors import unit_vectors

KINDS = ("auto", "exact", "hnsw")
AUTO_EXACT_MAX = 100_000
"""``index="auto"``: exact search up to this many templates, HNSW beyond."""
BLOCK_ELEMENTS = 1 << 22
"""Scores per block of the exact search (16 MB of float32)."""
QUERY_BLOCK = 256
"""Queries per block: each block of templates is read once for this many queries."""
REPAIR = "rebuild it from the stored templates: Gallery.repair(path) (keras-faceset gallery repair)"


class IndexFileError(ValueError):
    """An index file that cannot be read back (truncated, corrupt, or not an index)."""


class VectorIndex:
    """Templates as (int64 id, unit vector) pairs; `search` gives the `k` best of each query.

    `add` refuses ids already present, `remove` ids that are not; `search` returns
    ``(scores, ids)``, both (Q, min(k, len)), best first.
    """

    kind: ClassVar[str]

    def __init__(self, dim: int):
        if dim < 1:
            raise ValueError(f"dim must be positive, got {dim}")
        self.dim = int(dim)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def ids(self) -> np.ndarray:
        """The ids in the index (int64), in storage order."""
        raise NotImplementedError

    def add(self, ids, vectors) -> None:
        ids, vectors = _ids(ids), unit_vectors(vectors, self.dim)
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        present = np.intersect1d(ids, self.ids)
        if len(present):
            raise ValueError(f"ids already in the index: {present[:5].tolist()}; remove them first")
        self._add(ids, vectors)

    def remove(self, ids) -> None:
        ids = _ids(ids)
        missing = np.setdiff1d(ids, self.ids)
        if len(missing):
            raise KeyError(f"ids not in the index: {missing[:5].tolist()}")
        self._remove(ids)

    def search(self, queries, k: int) -> tuple[np.ndarray, np.ndarray]:
        if k < 1:
            raise ValueError(f"k must be at least 1, got {k}")
        if len(self) == 0:
            raise ValueError("the index is empty: add templates before searching")
        queries = unit_vectors(queries, self.dim, "queries")
        return self._search(queries, min(int(k), len(self)))

    def save(self, path: str | os.PathLike) -> None:
        """Write the index to `path` (an ``.npz``) atomically."""
        path = Path(path)
        header = json.dumps({"kind": self.kind, "dim": self.dim, **self._config()})
        with atomic_path(path, ".npz") as tmp:
            np.savez(tmp, header=np.array(header), **self._arrays())

    @staticmethod
    def load(path: str | os.PathLike) -> VectorIndex:
        """The index saved at `path`; `IndexFileError` naming it when it is damaged."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"index file {path} does not exist; {REPAIR}")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in data.files}
            header = json.loads(str(arrays.pop("header")))
            cls = INDEX_CLASSES[header.pop("kind")]
            return cls._from_arrays(header.pop("dim"), header, arrays)
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile, RuntimeError) as err:
            raise IndexFileError(
                f"index file {path} is truncated or corrupt ({err}); {REPAIR}"
            ) from err

    def _config(self) -> dict:
        return {}

    def _add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        raise NotImplementedError

    def _remove(self, ids: np.ndarray) -> None:
        raise NotImplementedError

    def _search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def _arrays(self) -> dict[str, np.ndarray]:
        raise NotImplementedError

    @classmethod
    def _from_arrays(cls, dim: int, config: dict, arrays: dict) -> VectorIndex:
        raise NotImplementedError


class ExactIndex(VectorIndex):
    """Exact top-k by blocked matrix products: `BLOCK_ELEMENTS` scores in memory at a time."""

    kind = "exact"

    def __init__(self, dim: int):
        super().__init__(dim)
        self._ids = np.zeros(0, np.int64)
        self._vectors = np.zeros((0, self.dim), np.float32)

    @property
    def ids(self) -> np.ndarray:
        return self._ids

    @property
    def vectors(self) -> np.ndarray:
        """The unit vectors, row i of id ``ids[i]``."""
        return self._vectors

    def _add(self, ids, vectors):
        self._ids = np.concatenate([self._ids, ids])
        self._vectors = np.concatenate([self._vectors, vectors])

    def _remove(self, ids):
        keep = ~np.isin(self._ids, ids)
        self._ids, self._vectors = self._ids[keep], self._vectors[keep]

    def _search(self, queries, k):
        rows = min(len(queries), QUERY_BLOCK)
        cols = max(k, BLOCK_ELEMENTS // rows)
        scores = np.empty((len(queries), k), np.float32)
        found = np.empty((len(queries), k), np.int64)
        for q in range(0, len(queries), rows):
            best_s = np.zeros((min(rows, len(queries) - q), 0), np.float32)
            best_i = np.zeros(best_s.shape, np.int64)
            for g in range(0, len(self._ids), cols):
                block_s, block_i = top_k(queries[q : q + rows] @ self._vectors[g : g + cols].T, k)
                best_s, best_i = top_k(
                    np.concatenate([best_s, block_s], 1),
                    k,
                    np.concatenate([best_i, block_i + g], 1),
                )
            order = np.argsort(-best_s, axis=1, kind="stable")
            scores[q : q + rows] = np.take_along_axis(best_s, order, 1)
            found[q : q + rows] = self._ids[np.take_along_axis(best_i, order, 1)]
        return scores, found

    def _arrays(self):
        return {"ids": self._ids, "vectors": self._vectors}

    @classmethod
    def _from_arrays(cls, dim, config, arrays):
        index = cls(dim)
        index._add(arrays["ids"].astype(np.int64), arrays["vectors"].astype(np.float32))
        return index


class HnswIndex(VectorIndex):
    """faiss ``IndexHNSWFlat`` (inner product): graph search, `ef_search` candidates per query.

    The default, efSearch 1024 on M = 32 links, agreed with exact search on the top-1 of 99.2 %
    of probes among 1e6 dlib_resnet-like templates (efSearch 128: 91 %; docs/gallery.md).

    HNSW cannot delete: a removed template is masked (a faiss ``IDSelectorBitmap`` keeps it out
    of the results during the graph walk) and the graph is rebuilt from the live vectors once
    masked ones are more than `REBUILD_SHARE` of it.
    """

    kind = "hnsw"
    REBUILD_SHARE = 0.25

    def __init__(self, dim: int, m: int = 32, ef_construction: int = 80, ef_search: int = 1024):
        super().__init__(dim)
        self.m, self.ef_construction, self.ef_search = int(m), int(ef_construction), int(ef_search)
        self._graph = self._new_graph()
        self._labels = np.zeros(0, np.int64)  # faiss position -> id
        self._alive = np.zeros(0, bool)

    def _new_graph(self):
        faiss = _faiss()
        graph = faiss.IndexHNSWFlat(self.dim, self.m, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = self.ef_construction
        return graph

    @property
    def ids(self) -> np.ndarray:
        return self._labels[self._alive]

    def _add(self, ids, vectors):
        self._graph.add(vectors)
        self._labels = np.concatenate([self._labels, ids])
        self._alive = np.concatenate([self._alive, np.ones(len(ids), bool)])

    def _remove(self, ids):
        self._alive &= ~np.isin(self._labels, ids)
        if (~self._alive).sum() > self.REBUILD_SHARE * len(self._alive):
            live = np.flatnonzero(self._alive)
            vectors = self._graph.reconstruct_batch(live)
            labels = self._labels[live]
            self._graph, self._labels, self._alive = (
                self._new_graph(),
                self._labels[:0],
                self._alive[:0],
            )
            self._add(labels, vectors)

    def _search(self, queries, k):
        faiss = _faiss()
        params = faiss.SearchParametersHNSW()
        params.efSearch = max(self.ef_search, k)
        if not self._alive.all():
            bitmap = np.packbits(self._alive, bitorder="little")
            params.sel = faiss.IDSelectorBitmap(len(self._alive), faiss.swig_ptr(bitmap))
        scores, positions = self._graph.search(queries, k, params=params)
        if (positions < 0).any():  # fewer than k reachable: never expected with efSearch >= k
            raise RuntimeError("HNSW search returned fewer results than asked; rebuild the index")
        return scores, self._labels[positions]

    def _config(self):
        return {"m": self.m, "ef_construction": self.ef_construction, "ef_search": self.ef_search}

    def _arrays(self):
        graph = _faiss().serialize_index(self._graph)
        return {"graph": graph, "labels": self._labels, "alive": self._alive}

    @classmethod
    def _from_arrays(cls, dim, config, arrays):
        index = cls(dim, **config)
        index._graph = _faiss().deserialize_index(arrays["graph"])
        index._labels, index._alive = (
            arrays["labels"].astype(np.int64),
            arrays["alive"].astype(bool),
        )
        if index._graph.ntotal != len(index._labels) or index._graph.d != dim:
            raise ValueError(f"graph of {index._graph.ntotal} vectors for {len(index._labels)} ids")
        return index


INDEX_CLASSES: dict[str, type[VectorIndex]] = {"exact": ExactIndex, "hnsw": HnswIndex}


def index_kind(kind: str, size: int) -> str:
    """The concrete kind for `kind` ("auto": exact up to `AUTO_EXACT_MAX` templates)."""
    if kind not in KINDS:
        raise ValueError(f"unknown index {kind!r}; expected one of {KINDS}")
    if kind == "auto":
        return "exact" if size <= AUTO_EXACT_MAX else "hnsw"
    return kind


def make_index(kind: str, dim: int, size: int = 0) -> VectorIndex:
    """An empty index of `kind` ("auto" decided for `size` templates)."""
    return INDEX_CLASSES[index_kind(kind, size)](dim)


def _ids(ids) -> np.ndarray:
    ids = np.asarray(ids)
    if ids.ndim != 1 or ids.dtype.kind not in "iu":
        raise ValueError(f"ids must be a 1-D array of integers, got {ids.dtype} {ids.shape}")
    if len(np.unique(ids)) != len(ids):
        raise ValueError("ids must be unique")
    return ids.astype(np.int64)


def top_k(scores: np.ndarray, k: int, index: np.ndarray | None = None):
    """The `k` highest of each row of `scores` (unordered) and their columns (or `index` at
    them)."""
    cols = scores.shape[1]
    if cols <= k:
        columns = np.broadcast_to(np.arange(cols), scores.shape)
    else:
        columns = np.argpartition(scores, cols - k, axis=1)[:, cols - k :]
    if index is None:
        return np.take_along_axis(scores, columns, 1), columns
    return np.take_along_axis(scores, columns, 1), np.take_along_axis(index, columns, 1)


def _faiss():
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - depends on the environment
        raise ImportError(
            "the approximate index needs faiss: pip install 'keras-faceset[gallery]'"
        ) from err
    return faiss
