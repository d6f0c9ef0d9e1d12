"""Clustering of unit embeddings and its scores, against brute force, SciPy and textbook values."""

import importlib
import itertools

import numpy as np
import pytest
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import pdist
from sklearn.metrics.cluster import pair_confusion_matrix

from keras_faceset.gallery.cluster import cluster, clustering_scores

C = importlib.import_module("keras_faceset.gallery.cluster")  # the module, not the function


def _units(rng, n, dim):
    x = rng.normal(size=(n, dim))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def _partition(labels) -> list[int]:
    """Labels renamed by first occurrence: equal lists = the same partition."""
    names: dict = {}
    return [names.setdefault(y, len(names)) for y in np.asarray(labels).tolist()]


def _blobs(rng, people=6, per_person=12, dim=32, spread=0.05):
    centres = _units(rng, people, dim)
    truth = np.repeat(np.arange(people), per_person)
    x = centres[truth] + spread * rng.normal(size=(len(truth), dim))
    order = rng.permutation(len(truth))
    return x[order] * rng.uniform(0.5, 3, size=(len(truth), 1)), truth[order]  # any norm


@pytest.mark.parametrize("method", C.METHODS)
def test_well_separated_people_are_recovered_exactly(rng, method):
    x, truth = _blobs(rng)
    labels = cluster(x, threshold=0.3, method=method)
    assert _partition(labels) == _partition(truth)
    assert clustering_scores(truth, labels)["bcubed_f"] == 1.0


def _brute_components(x, threshold):
    """Depth-first search over the explicit edges d <= threshold."""
    distance = 1.0 - x @ x.T
    labels = [-1] * len(x)
    for seed in range(len(x)):
        if labels[seed] >= 0:
            continue
        stack, labels[seed] = [seed], seed
        while stack:
            i = stack.pop()
            for j in range(len(x)):
                if labels[j] < 0 and distance[i, j] <= threshold:
                    labels[j] = seed
                    stack.append(j)
    return labels


@pytest.mark.parametrize("block_rows", [None, 1, 7])
def test_graph_is_the_connected_components_of_the_threshold_graph(rng, block_rows):
    x = _units(rng, 90, 3)  # low dimension: long chains and many components
    for threshold in (0.01, 0.03, 0.05, 0.08):  # 71, 39, 24 and 11 components
        labels = cluster(x, threshold=threshold, method="graph", block_rows=block_rows)
        expected = _brute_components(x, threshold)
        assert _partition(labels) == _partition(expected)
        assert 1 < len(set(expected)) < len(x)


@pytest.mark.parametrize("compact_rows", [256, 4])  # 4: the matrix is compacted as merges go
@pytest.mark.parametrize("seed", range(4))
def test_agglomerative_is_scipys_average_linkage_cut_at_the_threshold(
    seed, compact_rows, monkeypatch
):
    monkeypatch.setattr(C, "COMPACT_ROWS", compact_rows)
    rng = np.random.default_rng(seed)
    x = _units(rng, 60, 4)
    tree = linkage(pdist(x, "cosine"), method="average")
    heights = np.sort(tree[:, 2])
    cuts = (heights[1:] + heights[:-1]) / 2  # between merges: no ties with the threshold
    for threshold in cuts[:: len(cuts) // 8]:
        expected = fcluster(tree, threshold, criterion="distance")
        labels = cluster(x, threshold=threshold, method="agglomerative", block_rows=5)
        assert _partition(labels) == _partition(expected), threshold


@pytest.mark.parametrize("compact_rows", [256, 2])  # 2: compacted at every halving
@pytest.mark.parametrize("n, dim", [(40, 5), (200, 3)])
def test_average_linkage_merge_heights_are_scipys(n, dim, compact_rows, monkeypatch):
    monkeypatch.setattr(C, "COMPACT_ROWS", compact_rows)
    for seed in range(5):
        x = _units(np.random.default_rng(seed), n, dim)
        _, _, heights = C._average_linkage(1.0 - x @ x.T)
        reference = linkage(pdist(x, "cosine"), method="average")[:, 2]
        np.testing.assert_allclose(np.sort(heights), np.sort(reference), atol=1e-12)


def test_agglomerative_runs_the_linkage_per_graph_component(rng, monkeypatch):
    """Memory O(largest component^2): two far-apart groups are two dense matrices, not one."""
    x, _ = _blobs(rng, people=3, per_person=10)
    sizes = []
    original = C._average_linkage

    def spy(distance):
        sizes.append(distance.shape)
        return original(distance)

    monkeypatch.setattr(C, "_average_linkage", spy)
    cluster(x, threshold=0.3, method="agglomerative")
    assert sizes == [(10, 10)] * 3


def test_labels_count_from_the_largest_cluster_and_min_size_sets_singletons_apart():
    e = np.eye(4)
    x = np.stack([e[0], e[1], e[1], e[2], e[1], e[3], e[3]])  # sizes: 1, 3, 1, 2
    assert cluster(x, threshold=0.1).tolist() == [2, 0, 0, 3, 0, 1, 1]
    assert cluster(x, threshold=0.1, min_size=2).tolist() == [-1, 0, 0, -1, 0, 1, 1]


def test_the_default_threshold_is_the_presets_at_the_default_far():
    from keras_faceset.zoo import get_preset

    x = _units(np.random.default_rng(1), 200, 3)
    for model, far in (("dlib_resnet", C.DEFAULT_FAR), ("nan", "1e-02")):  # nan: 1e-02 only
        threshold = get_preset(model).thresholds[far]
        assert C.default_threshold(model) == threshold
        expected = cluster(x, threshold=threshold).tolist()
        assert cluster(x, model=model).tolist() == expected
    with pytest.raises(ValueError, match="graph method needs threshold="):
        cluster(x, method="graph", model="dlib_resnet")


def test_edge_cases_and_bad_input():
    assert cluster(np.zeros((0, 8)), threshold=0.5).tolist() == []
    for method in C.METHODS:
        assert cluster(np.ones((1, 8)), threshold=0.5, method=method).tolist() == [0]
    x = np.ones((3, 4))
    x[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite values \(rows 1\)"):
        cluster(x, threshold=0.5)
    with pytest.raises(ValueError, match="all-zero rows"):
        cluster(np.zeros((2, 4)), threshold=0.5)
    with pytest.raises(ValueError, match="2-D"):
        cluster(np.ones(4), threshold=0.5)
    with pytest.raises(ValueError, match="unknown clustering method"):
        cluster(np.ones((2, 4)), threshold=0.5, method="kmeans")
    with pytest.raises(ValueError, match=r"cosine distance in \[0, 2\]"):
        cluster(np.ones((2, 4)), threshold=3.0)
    with pytest.raises(ValueError, match="give threshold= .* or model="):
        cluster(np.ones((2, 4)))
    with pytest.raises(ValueError, match="min_size"):
        cluster(np.ones((2, 4)), threshold=0.5, min_size=0)


def _brute_scores(truth, pred):
    """Loops over pairs and items; negative predictions are singletons."""
    n = len(truth)
    pred = [p if p >= 0 else ("alone", i) for i, p in enumerate(pred)]
    same_true = same_pred = both = 0
    for i, j in itertools.combinations(range(n), 2):
        t, p = truth[i] == truth[j], pred[i] == pred[j]
        same_true, same_pred, both = same_true + t, same_pred + p, both + (t and p)
    precision = [
        sum(truth[j] == truth[i] for j in range(n) if pred[j] == pred[i])
        / sum(pred[j] == pred[i] for j in range(n))
        for i in range(n)
    ]
    recall = [
        sum(pred[j] == pred[i] for j in range(n) if truth[j] == truth[i])
        / sum(truth[j] == truth[i] for j in range(n))
        for i in range(n)
    ]
    return {
        "pairwise_precision": both / same_pred if same_pred else 1.0,
        "pairwise_recall": both / same_true if same_true else 1.0,
        "bcubed_precision": sum(precision) / n,
        "bcubed_recall": sum(recall) / n,
    }


@pytest.mark.parametrize("seed", range(6))
def test_scores_match_brute_force_loops(seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40))
    truth = [f"person{i}" for i in rng.integers(0, 6, n)]
    pred = rng.integers(-1, 5, n)
    scores = clustering_scores(truth, pred)
    reference = _brute_scores(truth, pred.tolist())
    for key, value in reference.items():
        assert scores[key] == pytest.approx(value, abs=1e-12), key
    for kind in ("pairwise", "bcubed"):
        p, r = scores[f"{kind}_precision"], scores[f"{kind}_recall"]
        assert scores[f"{kind}_f"] == pytest.approx(2 * p * r / (p + r) if p + r else 0.0)


def test_pairwise_scores_match_sklearns_pair_confusion_matrix(rng):
    truth, pred = rng.integers(0, 8, 200), rng.integers(0, 10, 200)
    (_, fp), (fn, tp) = pair_confusion_matrix(truth, pred)
    scores = clustering_scores(truth, pred)
    assert scores["pairwise_precision"] == pytest.approx(tp / (tp + fp))
    assert scores["pairwise_recall"] == pytest.approx(tp / (tp + fn))


def test_scores_textbook_example():
    """Identities aaabb clustered as {0, 1}, {2, 3, 4}: 2 of 4 predicted pairs right, 2 of 4
    true pairs found; BCubed P = (1 + 1 + 1/3 + 2/3 + 2/3) / 5 = 11/15, R the same."""
    scores = clustering_scores(list("aaabb"), [0, 0, 1, 1, 1])
    assert scores["pairwise_precision"] == scores["pairwise_recall"] == 0.5
    assert scores["bcubed_precision"] == pytest.approx(11 / 15)
    assert scores["bcubed_recall"] == pytest.approx(11 / 15)
    assert scores["clusters"] == 2 and scores["items"] == 5
    alone = clustering_scores(list("ab"), [-1, -1])  # two singletons: no pair either way
    assert alone["pairwise_f"] == 1.0 and alone["bcubed_f"] == 1.0 and alone["clusters"] == 2


def test_scores_bad_input():
    with pytest.raises(ValueError, match="one label per item"):
        clustering_scores([1, 2, 3], [0, 1])
    with pytest.raises(ValueError, match="no items"):
        clustering_scores([], [])
    with pytest.raises(ValueError, match="integers"):
        clustering_scores([1, 2], [0.5, 1.0])
