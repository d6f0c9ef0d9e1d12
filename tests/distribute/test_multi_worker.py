"""A `MultiWorkerMirroredStrategy` run: 2 worker processes on 127.0.0.1 (TF_CONFIG each) train
QAN's head as zoo/train_set_heads.py does (train_head.py); both end with the same weights, those
of one process training on the same global batches."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from tests.distribute.processes import finish, free_ports, started
from tests.distribute.train_head import train

# Two worker processes and a reference run train a head: most of a minute of CPU, so the
# module runs with the slow suite (CI runs it).
pytestmark = pytest.mark.slow

TRAIN_HEAD = Path(__file__).with_name("train_head.py")
STEPS, BATCH = 3, 16


def worker_env(ports: list[int], index: int) -> dict:
    cluster = {"worker": [f"127.0.0.1:{port}" for port in ports]}
    return {
        "TF_CONFIG": json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}})
    }


@pytest.fixture(scope="module")
def workers(tmp_path_factory) -> list[dict[str, np.ndarray]]:
    folder = tmp_path_factory.mktemp("workers")
    ports = free_ports(2)
    commands = [
        [sys.executable, str(TRAIN_HEAD), "--strategy", "multi_worker", "--steps", str(STEPS)]
        + ["--batch", str(BATCH), "--out", str(folder / f"worker{i}.npz")]
        for i in range(2)
    ]
    with started(commands, [worker_env(ports, i) for i in range(2)]) as running:
        finish(running, timeout=240)
    results = []
    for i in range(2):
        with np.load(folder / f"worker{i}.npz") as data:
            results.append({key: data[key] for key in data.files})
    return results


def weights(results: dict) -> list[np.ndarray]:
    return [results[f"weight|{i}"] for i in range(sum(k.startswith("weight|") for k in results))]


def test_two_workers_one_replica_each(workers):
    assert [int(r["replicas"]) for r in workers] == [2, 2]
    assert [bool(r["chief"]) for r in workers] == [True, False]
    assert all(len(r["loss"]) == STEPS for r in workers)


def test_workers_end_with_identical_weights(workers):
    first, second = (weights(r) for r in workers)
    assert len(first) == len(second) >= 4
    for a, b in zip(first, second, strict=True):
        np.testing.assert_array_equal(a, b)


def test_workers_match_one_process_on_the_global_batches(workers):
    single = train(tf.distribute.get_strategy(), steps=STEPS, batch=BATCH)
    np.testing.assert_allclose(workers[0]["loss"], single["loss"], rtol=0, atol=1e-5)
    for a, b in zip(weights(single), weights(workers[0]), strict=True):
        np.testing.assert_allclose(b, a, rtol=0, atol=1e-5)
    moved = [np.abs(w - workers[0][f"initial|{i}"]).max() for i, w in enumerate(weights(single))]
    assert max(moved) > 1e-3  # the steps did train
