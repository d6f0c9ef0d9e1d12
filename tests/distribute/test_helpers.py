"""The distribution helpers on one device (this process): strategy names, TF_CONFIG checks,
the loss collectives as identities, per-thread layer losses."""

import json
import threading

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_faceset.losses import CenterLoss, TripletLoss, triplet_loss
from keras_faceset.losses.distribute import (
    all_gather,
    build_labels,
    local_rows,
    replica_context,
    uniform,
)
from keras_faceset.models.distribute import check_tf_config, fit, is_chief, make_strategy
from keras_faceset.strategies import add_strategy_option

CLUSTER = {"worker": ["127.0.0.1:1", "127.0.0.1:2"]}


def test_default_strategy_is_tensorflows():
    strategy = make_strategy("default")
    assert strategy is tf.distribute.get_strategy() and is_chief(strategy)


def test_unknown_strategy_names_the_choices():
    with pytest.raises(ValueError, match="'default', 'mirrored', 'multi_worker'"):
        make_strategy("horovod")


def test_mirrored_after_tensorflow_started_says_what_to_do():
    tf.constant(1.0) + 1.0  # the devices are initialised now
    with pytest.raises(RuntimeError, match=r"make_strategy\('mirrored'\) before any other"):
        make_strategy("mirrored", cpu_replicas=3)


@pytest.mark.parametrize(
    "text, message",
    [
        (None, "needs the TF_CONFIG environment variable"),
        ("{cluster", "not valid JSON"),
        (json.dumps({"task": {"type": "worker", "index": 0}}), "needs a cluster"),
        (json.dumps({"cluster": {"worker": []}}), "needs a cluster"),
        (json.dumps({"cluster": CLUSTER}), "task must name one of"),
        (json.dumps({"cluster": CLUSTER, "task": {"type": "ps", "index": 0}}), "task must"),
        (json.dumps({"cluster": CLUSTER, "task": {"type": "worker", "index": 2}}), "index 2"),
    ],
)
def test_bad_tf_config_raises_naming_the_problem(text, message):
    with pytest.raises(ValueError, match=message):
        check_tf_config(text)


def test_good_tf_config_parses(monkeypatch):
    text = json.dumps({"cluster": CLUSTER, "task": {"type": "worker", "index": 1}})
    assert check_tf_config(text)["task"]["index"] == 1
    monkeypatch.delenv("TF_CONFIG", raising=False)
    with pytest.raises(ValueError, match="TF_CONFIG"):
        make_strategy("multi_worker")


def test_strategy_option():
    import argparse

    parser = argparse.ArgumentParser()
    add_strategy_option(parser)
    assert parser.parse_args([]).strategy == "default"
    args = parser.parse_args(["--strategy", "multi_worker", "--cpu-replicas", "4"])
    assert (args.strategy, args.cpu_replicas) == ("multi_worker", 4)
    with pytest.raises(SystemExit):
        parser.parse_args(["--strategy", "tpu"])


def test_collectives_are_identities_on_one_replica(rng):
    x = rng.normal(size=(5, 3)).astype("float32")
    assert replica_context() is None
    assert all_gather(x) is x and local_rows(x, 5) is x
    labels = np.array([0.0, 1.0])
    assert build_labels(labels) is labels  # floats stay floats (and are refused later)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(uniform((2, 4), 7)),
        keras.ops.convert_to_numpy(keras.random.uniform((2, 4), seed=7)),
    )


def test_global_mining_is_replica_mining_on_one_device(rng):
    labels, x = rng.integers(0, 3, 12), rng.normal(size=(12, 4)).astype("float32")
    for mining in ("semi_hard", "hard", "all"):
        one = triplet_loss(labels, x, mining=mining)
        gathered = triplet_loss(labels, x, mining=mining, mining_batch="global")
        np.testing.assert_array_equal(keras.ops.convert_to_numpy(gathered), one)
    loss = TripletLoss(mining="hard", mining_batch="global", reduction=None)
    np.testing.assert_array_equal(
        keras.ops.convert_to_numpy(loss(labels, x)),
        keras.ops.convert_to_numpy(TripletLoss(mining="hard", reduction=None)(labels, x)),
    )
    assert TripletLoss.from_config(loss.get_config()).mining_batch == "global"
    with pytest.raises(ValueError, match="Unknown mining_batch 'local'"):
        TripletLoss(mining_batch="local")


def test_layer_losses_are_kept_per_thread(rng):
    """Two threads (as MirroredStrategy's replicas) each see only the losses they added."""
    layer = CenterLoss(3, dim=2)
    seen = {}

    def replica(value: float, name: str, ready: threading.Barrier):
        layer.add_loss(tf.constant(value))
        ready.wait()  # both added before either reads
        seen[name] = [float(v) for v in layer.losses]

    ready = threading.Barrier(2)
    threads = [
        threading.Thread(target=replica, args=(v, n, ready)) for v, n in ((1.0, "a"), (2.0, "b"))
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert seen == {"a": [1.0], "b": [2.0]}


def test_fit_on_one_replica_is_keras_fit(rng):
    x, y = rng.normal(size=(12, 3)).astype("float32"), rng.normal(size=(12, 1)).astype("float32")
    histories, weights = [], []
    for run in ("keras", "helper"):
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile("sgd", "mse")
        if run == "keras":
            history = model.fit(x, y, batch_size=4, epochs=2, shuffle=False, verbose=0)
            histories.append(history.history)
        else:
            histories.append(fit(model, x, y, batch_size=4, epochs=2))
        weights.append(model.get_weights())
    assert histories[0] == histories[1]
    for a, b in zip(*weights, strict=True):
        np.testing.assert_array_equal(a, b)
