import numpy as np
import pytest
from sklearn.metrics import average_precision_score

from keras_faceset.eval.identification import cmc_curve, identification_report


def _distance(p, g, metric):
    if metric == "cosine":
        return 1.0 - float(np.dot(p, g)) / (np.linalg.norm(p) * np.linalg.norm(g))
    return float(np.linalg.norm(p - g))


def _brute_force(probes, probe_labels, gallery, gallery_labels, metric, max_rank):
    """Per-probe loops: pessimistic tie order (non-relevant first), then CMC and AP."""
    ranks, aps = [], []
    for p, y in zip(probes, probe_labels, strict=True):
        items = [
            (_distance(p, g, metric), yg == y)
            for g, yg in zip(gallery, gallery_labels, strict=True)
        ]
        if not any(rel for _, rel in items):
            continue
        items.sort(key=lambda item: (item[0], item[1]))  # False (non-relevant) first on ties
        hits, precisions = 0, []
        for position, (_, rel) in enumerate(items, start=1):
            if rel:
                hits += 1
                precisions.append(hits / position)
                if hits == 1:
                    ranks.append(position)
        aps.append(sum(precisions) / len(precisions))
    cmc = [sum(r <= k for r in ranks) / len(ranks) for k in range(1, max_rank + 1)]
    return np.array(cmc), float(np.mean(aps)), len(ranks)


def _tied_problem(rng, n_gallery=60, n_probes=45, dim=3):
    """Small-integer embeddings (exact distances, many ties), duplicated gallery rows,
    repeated string labels and some probe labels absent from the gallery."""
    gallery = rng.integers(-2, 3, size=(n_gallery, dim))
    gallery[::7] = gallery[1::7][: len(gallery[::7])]
    gallery[np.all(gallery == 0, axis=1)] = 1
    gallery_labels = [f"id{i}" for i in rng.integers(0, 12, n_gallery)]
    probes = rng.integers(-2, 3, size=(n_probes, dim))
    probes[np.all(probes == 0, axis=1)] = 1
    probes[:10] = gallery[rng.integers(0, n_gallery, 10)]
    probe_labels = [f"id{i}" for i in rng.integers(0, 15, n_probes)]
    return probes, probe_labels, gallery, gallery_labels


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("block_probes", [None, 4])
def test_matches_brute_force_with_ties_and_open_set(rng, metric, block_probes):
    probes, probe_labels, gallery, gallery_labels = _tied_problem(rng)
    cmc_ref, map_ref, closed = _brute_force(
        probes, probe_labels, gallery, gallery_labels, metric, max_rank=12
    )
    assert 0 < closed < len(probes)  # the case has open-set probes
    args = (probes, probe_labels, gallery, gallery_labels)
    cmc = cmc_curve(*args, max_rank=12, metric=metric, block_probes=block_probes)
    assert cmc.shape == (12,)
    np.testing.assert_allclose(cmc, cmc_ref, rtol=0, atol=1e-12)
    report = identification_report(
        *args, ranks=(1, 5, 12), metric=metric, block_probes=block_probes
    )
    assert report["rank-1"] == pytest.approx(cmc_ref[0], abs=1e-12)
    assert report["rank-5"] == pytest.approx(cmc_ref[4], abs=1e-12)
    assert report["rank-12"] == pytest.approx(cmc_ref[11], abs=1e-12)
    assert report["mAP"] == pytest.approx(map_ref, abs=1e-12)
    assert report["closed_set_probes"] == closed
    assert report["open_set_probes"] == len(probes) - closed
    assert report["metric"] == metric


def test_ties_do_not_depend_on_gallery_order(rng):
    probes, probe_labels, gallery, gallery_labels = _tied_problem(rng)
    perm = rng.permutation(len(gallery))
    a = identification_report(probes, probe_labels, gallery, gallery_labels, metric="euclidean")
    b = identification_report(
        probes, probe_labels, gallery[perm], [gallery_labels[i] for i in perm], metric="euclidean"
    )
    assert a == b


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_map_matches_sklearn_without_ties(rng, metric):
    gallery = rng.normal(size=(80, 8))
    gallery_labels = rng.integers(0, 10, 80)
    probes = rng.normal(size=(30, 8))
    probe_labels = rng.integers(0, 10, 30)
    expected = []
    for p, y in zip(probes, probe_labels, strict=True):
        scores = [-_distance(p, g, metric) for g in gallery]
        expected.append(average_precision_score(gallery_labels == y, scores))
    report = identification_report(probes, probe_labels, gallery, gallery_labels, metric=metric)
    assert report["open_set_probes"] == 0
    assert report["mAP"] == pytest.approx(np.mean(expected), abs=1e-12)


def test_hand_computed_tiny_case():
    # Probe at 0; gallery at distances 1, 2, 3 (rel, non, rel) and 4 (other identity).
    gallery = np.array([[1.0], [2.0], [3.0], [4.0]])
    report = identification_report(
        [[0.0]], ["a"], gallery, ["a", "b", "a", "c"], ranks=(1, 2), metric="euclidean"
    )
    assert report["mAP"] == pytest.approx((1 + 2 / 3) / 2, abs=1e-15)
    assert report["rank-1"] == 1.0
    # [non, rel, non, rel]: first match at rank 2, AP = (1/2 + 2/4) / 2.
    report = identification_report(
        [[0.0]], ["a"], gallery, ["b", "a", "c", "a"], ranks=(1, 2), metric="euclidean"
    )
    assert (report["rank-1"], report["rank-2"]) == (0.0, 1.0)
    assert report["mAP"] == pytest.approx(0.5, abs=1e-15)
    # A tie at distance 1 between a relevant and a non-relevant item counts as [non, rel].
    tied = np.array([[1.0], [-1.0]])
    report = identification_report([[0.0]], [7], tied, [7, 8], metric="euclidean")
    assert (report["rank-1"], report["mAP"]) == (0.0, 0.5)
    cmc = cmc_curve([[0.0]], [7], tied, [7, 8], max_rank=3, metric="euclidean")
    np.testing.assert_array_equal(cmc, [0.0, 1.0, 1.0])


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_perfect_embeddings(rng, metric):
    centres = rng.normal(size=(20, 16)) * 10
    gallery_labels = np.repeat(np.arange(20), 3)
    probe_labels = np.tile(np.arange(20), 2)
    gallery = centres[gallery_labels] + rng.normal(scale=1e-3, size=(60, 16))
    probes = centres[probe_labels] + rng.normal(scale=1e-3, size=(40, 16))
    report = identification_report(probes, probe_labels, gallery, gallery_labels, metric=metric)
    assert (report["rank-1"], report["rank-5"], report["mAP"]) == (1.0, 1.0, 1.0)
    assert (report["closed_set_probes"], report["open_set_probes"]) == (40, 0)


def test_cosine_ignores_scale_euclidean_does_not(rng):
    gallery, probes = rng.normal(size=(30, 4)), rng.normal(size=(10, 4))
    gallery_labels, probe_labels = rng.integers(0, 5, 30), rng.integers(0, 5, 10)
    scale = rng.uniform(0.1, 10, size=(30, 1))
    args = (probes, probe_labels)
    base = identification_report(*args, gallery, gallery_labels, ranks=(1, 2, 3))
    scaled = identification_report(*args, gallery * scale, gallery_labels, ranks=(1, 2, 3))
    assert scaled["mAP"] == pytest.approx(base["mAP"], abs=1e-12)
    euclid = identification_report(*args, gallery, gallery_labels, metric="euclidean")
    euclid_scaled = identification_report(
        *args, gallery * scale, gallery_labels, metric="euclidean"
    )
    assert euclid["mAP"] != pytest.approx(euclid_scaled["mAP"], abs=1e-6)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"gallery_embeddings": np.zeros((3, 5)) + 1}, "dimensions differ: 4 vs 5"),
        ({"gallery_embeddings": np.zeros((0, 4)), "gallery_labels": []}, "gallery_embeddings are"),
        ({"gallery_labels": [0, 1]}, "gallery_labels has 2 labels for 3 embeddings"),
        ({"probe_labels": [0, 1, 2]}, "probe_labels has 3 labels for 2 embeddings"),
        ({"probe_embeddings": np.ones(4)}, "probe_embeddings must be 2-D"),
        ({"probe_embeddings": np.full((2, 4), np.nan)}, "NaN or infinite"),
        ({"gallery_embeddings": np.zeros((3, 4))}, "all-zero rows"),
        ({"probe_labels": [[0], [1]]}, "labels must be hashable"),
        ({"probe_labels": [5, 6]}, "no probe label occurs in the gallery"),
        ({"metric": "manhattan"}, "unknown metric 'manhattan'"),
        ({"ranks": (0,)}, "ranks must be a positive integer"),
        ({"ranks": ()}, "ranks is empty"),
        ({"block_probes": 0}, "block_probes must be >= 1"),
    ],
)
def test_invalid_input(change, message):
    kwargs = {
        "probe_embeddings": np.ones((2, 4)),
        "probe_labels": [0, 1],
        "gallery_embeddings": np.ones((3, 4)),
        "gallery_labels": [0, 1, 1],
    } | change
    with pytest.raises(ValueError, match=message):
        identification_report(**kwargs)


def test_cmc_curve_rejects_bad_max_rank():
    with pytest.raises(ValueError, match="max_rank must be a positive integer"):
        cmc_curve(np.ones((1, 2)), [0], np.ones((1, 2)), [0], max_rank=0)


def test_block_of_open_set_probes_only(rng):
    gallery, probes = rng.normal(size=(12, 3)), rng.normal(size=(6, 3))
    gallery_labels, probe_labels = np.arange(12) % 4, [9, 9, 0, 1, 2, 3]
    whole = identification_report(probes, probe_labels, gallery, gallery_labels)
    blocked = identification_report(probes, probe_labels, gallery, gallery_labels, block_probes=2)
    assert blocked == pytest.approx(whole, abs=1e-15)
    assert (whole["closed_set_probes"], whole["open_set_probes"]) == (4, 2)
