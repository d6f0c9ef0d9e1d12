"""Gallery search: our exact index (blocked matrix product) and approximate index (faiss HNSW)
against the brute force a user would otherwise write (DeepFace-style: a pickled list of
{"identity", "embedding"} records, stacked and scored with NumPy), at 1e4, 1e5 and 1e6
templates of 128-d, all in one process.

Templates are dlib_resnet-like: real dlib_resnet embeddings of LFW (people with >= 2 images,
embedded by `FaceEmbedder`) give the mean and the between- and within-person covariances of a
Gaussian; synthetic people are drawn from it (a template is a person's centre, a probe the
centre plus within-person noise, both L2-normalised), and 1,180 real LFW people are mixed in
(template: their first image). Queries: 1,000, half of enrolled people (real second images and
synthetic probes), half of people not enrolled (real and synthetic). Recall@1 of an approximate
index is the share of queries whose top-1 template is exact search's. Single-query latency
p50/p99 and batch throughput are timed in interleaved rounds with the peer; ratios are paired
per round. At 1e5 templates the approximate candidates are compared (faiss HNSW, hnswlib,
faiss IVF-Flat, IVF-PQ with exact re-ranking) to pick the default.
"""

from __future__ import annotations

import os
import pickle
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.alignment import LFW
from benchmarks.common import banner, cli, machine_info, table, write_result

DIM = 128
K = 5
QUERIES = 1000
SINGLE = 20
"""Single queries per method in each round."""
REAL_ENROLLED = 1180
PEER_CHUNK = 64
EF_SWEEP = (128, 512, 1024, 2048)
"""HNSW search widths measured beside the default."""


def lfw_embeddings(chips: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """dlib_resnet unit embeddings of every image of LFW people with >= 2 images, and labels."""
    from keras_faceset.embedder import FaceEmbedder

    if not LFW.is_dir():
        raise FileNotFoundError(f"LFW images not found in {LFW} (set KERAS_FACESET_LFW)")
    paths, labels = [], []
    for label, person in enumerate(sorted(p for p in LFW.iterdir() if p.is_dir())):
        images = sorted(person.glob("*.jpg"))
        if len(images) >= 2:
            paths += images
            labels += [label] * len(images)
    embedder = FaceEmbedder("dlib_resnet", chip_cache=chips)
    return embedder.embed(paths), np.asarray(labels)


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


class FaceModel:
    """A Gaussian fitted to real embeddings: person centres ~ N(mu, B), views ~ N(centre, W)."""

    def __init__(self, embeddings: np.ndarray, labels: np.ndarray, seed: int = 0):
        x = embeddings.astype(np.float64)
        groups = [x[labels == label] for label in np.unique(labels)]
        means = np.stack([g.mean(0) for g in groups])
        residuals = np.concatenate([g - g.mean(0) for g in groups])
        self.mu = means.mean(0)
        self.between = np.linalg.cholesky(np.cov(means.T) + 1e-9 * np.eye(DIM))
        self.within = np.linalg.cholesky(np.cov(residuals.T) + 1e-9 * np.eye(DIM))
        self.rng = np.random.default_rng(seed)

    def centres(self, n: int) -> np.ndarray:
        out = np.empty((n, DIM), np.float32)
        for start in range(0, n, 100_000):  # bounded float64 temporaries
            z = self.rng.standard_normal((min(100_000, n - start), DIM))
            out[start : start + len(z)] = self.mu + z @ self.between.T
        return out

    def views(self, centres: np.ndarray) -> np.ndarray:
        return unit(centres + self.rng.standard_normal(centres.shape) @ self.within.T)


def problem(size: int, model: FaceModel, real: np.ndarray, labels: np.ndarray, seed: int = 0):
    """(templates (size, D), queries (QUERIES, D), enrolled (QUERIES,) bool, real (QUERIES,) bool,
    true template row of each enrolled query (-1 otherwise))."""
    rng = np.random.default_rng(seed)
    people = np.unique(labels)
    firsts = np.array([np.flatnonzero(labels == p)[0] for p in people])
    seconds = firsts + 1
    enrolled_real = rng.permutation(len(people))
    inside, outside = enrolled_real[:REAL_ENROLLED], enrolled_real[REAL_ENROLLED:]
    centres = model.centres(size - REAL_ENROLLED)
    templates = np.concatenate([unit(centres), real[firsts[inside]]])
    rows = rng.permutation(size)  # real ones spread among the synthetic
    templates = templates[np.argsort(rows)]
    quarter = QUERIES // 4
    syn_in = rng.choice(len(centres), quarter, replace=False)
    real_in = rng.choice(len(inside), quarter, replace=False)
    queries = np.concatenate(
        [
            real[seconds[inside[real_in]]],  # enrolled, real
            model.views(centres[syn_in]),  # enrolled, synthetic
            real[firsts[outside[:quarter]]],  # not enrolled, real
            model.views(model.centres(quarter)),  # not enrolled, synthetic
        ]
    )
    truth = np.concatenate(
        [rows[len(centres) + real_in], rows[syn_in], -np.ones(2 * quarter, np.int64)]
    )
    enrolled = truth >= 0
    is_real = np.tile(np.repeat([True, False], quarter), 2)
    return templates, queries.astype(np.float32), enrolled, is_real, truth


class DeepFaceStyle:
    """What a user writes without an index: records pickled, stacked, cosine distance by NumPy
    (``1 - a.b / (|a| |b|)``, as DeepFace's ``find_cosine_distance``), the k smallest; queries
    `PEER_CHUNK` at a time (memory: a chunk by all templates)."""

    kind = "peer"

    def __init__(self, path: Path):
        self.path = path

    def build(self, templates: np.ndarray) -> None:
        records = [{"identity": f"id{i}", "embedding": v} for i, v in enumerate(templates)]
        with open(self.path, "wb") as handle:
            pickle.dump(records, handle, protocol=pickle.HIGHEST_PROTOCOL)

    def load(self) -> None:
        with open(self.path, "rb") as handle:
            records = pickle.load(handle)
        self.names = [r["identity"] for r in records]
        self.matrix = np.stack([r["embedding"] for r in records])

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        scores, best = [], []
        norms = np.linalg.norm(self.matrix, axis=1)
        for start in range(0, len(queries), PEER_CHUNK):
            q = queries[start : start + PEER_CHUNK]
            distance = 1 - (q @ self.matrix.T) / (np.linalg.norm(q, axis=1)[:, None] * norms)
            top = np.argpartition(distance, k - 1, axis=1)[:, :k]
            order = np.argsort(np.take_along_axis(distance, top, 1), axis=1)
            best.append(np.take_along_axis(top, order, 1))
            scores.append(1 - np.take_along_axis(distance, best[-1], 1))
        return np.concatenate(scores), np.concatenate(best)


class Ours:
    """A `keras_faceset.gallery` index: built by `add`, saved and loaded as its file; an HNSW
    index searched at `ef_search` candidates (None: its default)."""

    def __init__(self, index, path: Path, ef_search: int | None = None):
        self.index, self.path, self.ef_search = index, path, ef_search

    def build(self, templates: np.ndarray) -> None:
        self.index.add(np.arange(len(templates)), templates)
        self.index.save(self.path)

    def load(self) -> None:
        from keras_faceset.gallery.index import VectorIndex

        self.index = VectorIndex.load(self.path)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        if self.ef_search is not None:
            self.index.ef_search = self.ef_search
        return self.index.search(queries, k)


def seconds(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def timed_rounds(methods: dict, queries: np.ndarray, rounds: int) -> dict:
    """Per method: single-query seconds (SINGLE per round) and batch seconds (all queries at
    once, one per round), methods interleaved in every round."""
    out = {name: {"single": [], "single_rounds": [], "batch": []} for name in methods}
    rng = np.random.default_rng(1)
    for _ in range(rounds):
        picks = rng.choice(len(queries), SINGLE, replace=False)
        for name, method in methods.items():
            samples = [
                seconds(lambda i=i, m=method: m.search(queries[i : i + 1], K)) for i in picks
            ]
            out[name]["single"] += samples
            out[name]["single_rounds"].append(statistics.mean(samples))
            out[name]["batch"].append(seconds(lambda m=method: m.search(queries, K)))
    return out


def ratio(own: list[float], peer: list[float]) -> str:
    """Median [min-max] over rounds of peer seconds / own seconds (> 1: faster than the peer)."""
    ratios = sorted(p / s for s, p in zip(own, peer, strict=True))
    return f"{statistics.median(ratios):.2f}x [{ratios[0]:.2f}-{ratios[-1]:.2f}]"


def recall(found: np.ndarray, exact: np.ndarray, mask: np.ndarray) -> float:
    return float((found[mask, 0] == exact[mask, 0]).mean())


def measure_size(size, model, real, labels, rounds, folder: Path) -> tuple[dict, list]:
    from keras_faceset.gallery.index import ExactIndex, HnswIndex

    templates, queries, enrolled, is_real, truth = problem(size, model, real, labels)
    default_ef = HnswIndex(DIM).ef_search
    hnsw = f"HNSW ef{default_ef} (ours, default)"
    built = {
        "exact (ours)": Ours(ExactIndex(DIM), folder / f"exact-{size}.npz"),
        hnsw: Ours(HnswIndex(DIM), folder / f"hnsw-{size}.npz", default_ef),
        "DeepFace-style NumPy": DeepFaceStyle(folder / f"peer-{size}.pkl"),
    }
    facts = {}
    for name, method in built.items():
        build = seconds(lambda m=method: m.build(templates))
        load = seconds(method.load)
        facts[name] = {
            "build_s": build,
            "load_s": load,
            "bytes_per_template": method.path.stat().st_size / size,
        }
        print(f"  {size}: {name} built in {build:.1f} s, loaded in {load:.2f} s", flush=True)
    methods = dict(built)
    for ef in EF_SWEEP:  # the same loaded graph, searched narrower or wider
        if ef != default_ef:
            methods[f"HNSW ef{ef} (ours)"] = Ours(built[hnsw].index, built[hnsw].path, ef)
            facts[f"HNSW ef{ef} (ours)"] = facts[hnsw]
    exact = methods["exact (ours)"].search(queries, K)[1]
    times = timed_rounds(methods, queries, rounds)
    peer = times["DeepFace-style NumPy"]
    rows, results = [], {}
    for name, method in methods.items():
        found = method.search(queries, K)[1]
        t = times[name]
        stats = {
            **facts[name],
            "p50_ms": 1e3 * float(np.percentile(t["single"], 50)),
            "p99_ms": 1e3 * float(np.percentile(t["single"], 99)),
            "queries_per_s": QUERIES / statistics.median(t["batch"]),
            "queries_per_s_min_max": [QUERIES / max(t["batch"]), QUERIES / min(t["batch"])],
            "single_vs_peer": ratio(t["single_rounds"], peer["single_rounds"]),
            "batch_vs_peer": ratio(t["batch"], peer["batch"]),
            "recall_at_1_enrolled": recall(found, exact, enrolled),
            "recall_at_1_not_enrolled": recall(found, exact, ~enrolled),
            "rank1_real_enrolled": float(
                (found[enrolled & is_real, 0] == truth[enrolled & is_real]).mean()
            ),
            "seconds": t,
        }
        results[name] = stats
        rows.append(
            [
                f"{size:.0e}".replace("+0", ""),
                name,
                stats["p50_ms"],
                stats["p99_ms"],
                stats["single_vs_peer"],
                f"{stats['queries_per_s']:.0f} [{stats['queries_per_s_min_max'][0]:.0f}-"
                f"{stats['queries_per_s_min_max'][1]:.0f}]",
                stats["batch_vs_peer"],
                f"{stats['recall_at_1_enrolled']:.4f} / {stats['recall_at_1_not_enrolled']:.4f}",
                stats["rank1_real_enrolled"],
                stats["build_s"],
                stats["load_s"],
                round(stats["bytes_per_template"]),
            ]
        )
    for method in built.values():
        method.path.unlink()
    return results, rows


def candidates(model, real, labels, size: int) -> tuple[dict, list]:
    """Approximate indexes at `size` templates: recall@1 against exact and single-query ms."""
    import faiss
    import hnswlib

    from keras_faceset.gallery.index import ExactIndex, HnswIndex

    templates, queries, enrolled, _, _ = problem(size, model, real, labels)
    exact = ExactIndex(DIM)
    exact.add(np.arange(size), templates)
    truth = exact.search(queries, 1)[1]
    nlist = int(4 * np.sqrt(size))
    train = templates[np.random.default_rng(2).choice(size, min(size, 64 * nlist), replace=False)]
    results, rows = {}, []

    def record(name, build_s, search, nbytes):
        found = search(queries)
        single = [seconds(lambda i=i: search(queries[i : i + 1])) for i in range(200)]
        stats = {
            "recall_at_1_enrolled": recall(found, truth, enrolled),
            "recall_at_1_not_enrolled": recall(found, truth, ~enrolled),
            "p50_ms": 1e3 * float(np.median(single)),
            "build_s": build_s,
            "bytes_per_template": nbytes / size,
        }
        results[name] = stats
        rows.append(
            [
                name,
                f"{stats['recall_at_1_enrolled']:.4f} / {stats['recall_at_1_not_enrolled']:.4f}",
                stats["p50_ms"],
                build_s,
                round(stats["bytes_per_template"]),
            ]
        )
        print(f"  candidate {name}: {rows[-1]}", flush=True)

    for m in (16, 32):
        ours = HnswIndex(DIM, m=m)
        build = seconds(lambda o=ours: o.add(np.arange(size), templates))
        size_bytes = len(faiss.serialize_index(ours._graph))
        for ef in (32, 64, 128):
            ours.ef_search = ef
            record(f"faiss HNSW{m} ef{ef}", build, lambda q, o=ours: o.search(q, 1)[1], size_bytes)
    graph = hnswlib.Index(space="ip", dim=DIM)
    graph.init_index(max_elements=size, ef_construction=80, M=32)
    build = seconds(lambda: graph.add_items(templates, np.arange(size)))
    for ef in (32, 64, 128):
        graph.set_ef(ef)
        record(
            f"hnswlib M32 ef{ef}",
            build,
            lambda q: graph.knn_query(q, 1)[0],
            graph.index_file_size(),
        )
    for factory in (f"IVF{nlist},Flat", f"IVF{nlist},PQ32"):
        index = faiss.index_factory(DIM, factory, faiss.METRIC_INNER_PRODUCT)
        searched = index if "Flat" in factory else faiss.IndexRefineFlat(index)

        def build_ivf(searched=searched):
            searched.train(train)
            searched.add(templates)

        build = seconds(build_ivf)
        nbytes = len(faiss.serialize_index(searched))
        for nprobe in (32, 64):
            faiss.extract_index_ivf(index).nprobe = nprobe
            if searched is not index:
                searched.k_factor = 16
            label = f"{factory} nprobe{nprobe}" + (
                " + exact re-rank of 16" if searched is not index else ""
            )
            record(label, build, lambda q, s=searched: s.search(q, 1)[1], nbytes)
    return results, rows


def main(quick: bool = False, full: bool = False, chips: str | None = None) -> dict:
    from keras_faceset.eval.protocol_cache import default_cache_dir

    machine = machine_info(k=K, queries=QUERIES, single_queries_per_round=SINGLE)
    banner("gallery search", machine)
    real, labels = lfw_embeddings(chips or default_cache_dir("chips"))
    model = FaceModel(real, labels)
    sizes = (10_000,) if quick else (10_000, 100_000, 1_000_000)
    rounds = 3 if quick else 5
    results, rows = {"sizes": {}}, []
    with tempfile.TemporaryDirectory() as tmp:
        for size in sizes:
            results["sizes"][size], size_rows = measure_size(
                size, model, real, labels, rounds, Path(tmp)
            )
            rows += size_rows
    headers = [
        "templates",
        "search",
        "p50 ms",
        "p99 ms",
        "1 query vs peer",
        f"queries/s (batch {QUERIES})",
        "batch vs peer",
        "recall@1 vs exact (enrolled / not)",
        "rank-1 real",
        "build s",
        "load s",
        "bytes/template",
    ]
    print(table(headers, rows))
    if not quick:
        results["candidates_1e5"], candidate_rows = candidates(model, real, labels, 100_000)
        print(
            table(
                [
                    "1e5 templates",
                    "recall@1 (enrolled / not)",
                    "1 query ms",
                    "build s",
                    "bytes/template",
                ],
                candidate_rows,
            )
        )
    write_result("gallery", machine, results=results)
    return results


if __name__ == "__main__":
    parser = cli()
    parser.add_argument("--chips", help="aligned chip cache (default ~/.cache/keras_faceset/chips)")
    main(**vars(parser.parse_args()))
