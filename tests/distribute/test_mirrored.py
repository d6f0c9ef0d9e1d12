"""The losses under a `MirroredStrategy` over 2 logical CPU devices match one device on the
same global batches (mirrored_cases.py, run in a fresh interpreter: the CPU can be split only
before TensorFlow initialises its devices, which this test session may already have done)."""

import sys
from pathlib import Path

import numpy as np
import pytest

from tests.distribute.processes import run_script

# One fresh interpreter trains every case on 2 devices and on 1: a minute or more of CPU,
# so the module runs with the slow suite (CI runs it).
pytestmark = pytest.mark.slow

CASES = Path(__file__).with_name("mirrored_cases.py")
FIT_CASES = ("center", "seqface", "triplet_global", "two_outputs", "contrastive_global", "lsr")


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> dict[str, np.ndarray]:
    path = tmp_path_factory.mktemp("mirrored") / "results.npz"
    run_script([sys.executable, str(CASES), str(path)], timeout=300)
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def weights(results: dict, case: str, strategy: str) -> list[np.ndarray]:
    prefix = f"{case}|{strategy}|"
    count = sum(1 for key in results if key.startswith(prefix) and key[len(prefix) :].isdigit())
    return [results[f"{prefix}{i}"] for i in range(count)]


def test_two_replicas(results):
    assert int(results["replicas"]) == 2


@pytest.mark.parametrize("run", ("mirrored", "loop"))
@pytest.mark.parametrize("case", FIT_CASES)
def test_fit_matches_one_device(results, case, run):
    """Loss per epoch and every weight after 6 steps, by Keras' `fit` and by
    `distribute.fit`'s loop: the center loss (centers updated by the paper's rule), SeqFace's
    graph (DSA agents, then a center loss), batch-hard triplets mined in the global batch,
    those next to a second output's loss, contrastive pairs of the global batch, and the LSR
    loss (integer labels with unlabeled -1: Keras' own `fit` builds the losses on float
    labels)."""
    np.testing.assert_allclose(
        results[f"{case}|{run}|loss"], results[f"{case}|default|loss"], rtol=0, atol=1e-5
    )
    single, mirrored = weights(results, case, "default"), weights(results, case, run)
    assert len(single) == len(mirrored) >= 2
    for a, b in zip(single, mirrored, strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)


@pytest.mark.parametrize("run", ("mirrored", "loop"))
@pytest.mark.parametrize("case", (*FIT_CASES, "triplet_replica", "contrastive_replica"))
def test_replica_copies_never_drift(results, case, run):
    assert float(results[f"{case}|{run}|replica_gap"]) == 0.0


def test_fit_once_per_epoch_continues_and_follows_a_new_compile(results):
    np.testing.assert_allclose(
        results["refit|loop|loss"], results["center|loop|loss"], rtol=0, atol=1e-6
    )
    once, per_epoch = weights(results, "center", "loop"), weights(results, "refit", "loop")
    for a, b in zip(once, per_epoch, strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-6)
    assert float(results["refit|frozen_gap"]) == 0.0


@pytest.mark.parametrize("case, least", (("triplet_replica", 0.1), ("contrastive_replica", 0.01)))
def test_replica_mining_sees_only_each_replica_share(results, case, least):
    """The default `mining_batch="replica"` is a different loss under two replicas: the test
    above would see a wrong gather."""
    gap = np.abs(results[f"{case}|mirrored|loss"] - results[f"{case}|default|loss"])
    assert gap.min() > least


def test_uneven_replica_batches(results):
    """4 + 3 rows: each replica computes the global batch's center update, and the global
    triplet and contrastive terms of its own anchors."""
    for copy in results["uneven|centers|mirrored"]:
        np.testing.assert_allclose(copy, results["uneven|centers|default"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(
        results["uneven|triplet|mirrored"], results["uneven|triplet|default"], rtol=0, atol=1e-5
    )
    assert np.count_nonzero(results["uneven|triplet|default"]) >= 2
    np.testing.assert_allclose(
        results["uneven|contrastive|mirrored"],
        results["uneven|contrastive|default"],
        rtol=0,
        atol=1e-5,
    )


def test_dsa_replicas_draw_their_own_negatives(results):
    """Same labels, same seed state on both replicas: the drawn negatives differ, and each
    replica's draw follows the sampler's rule (allowed agents only, at least one per row)."""
    masks, labels = results["dsa|masks|mirrored"], results["dsa|labels"]
    assert masks.shape == (2, 8, 12)
    assert np.count_nonzero(masks[0] != masks[1]) >= 8
    agents = np.arange(12)
    allowed = (agents[None] != labels[:, None]) & ((labels[:, None] < 6) | (agents[None] < 6))
    assert not np.any(masks[:, ~allowed]) and np.all(masks.sum(-1) >= 1)
