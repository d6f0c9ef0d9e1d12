"""`tf.distribute` strategies by name, for the training entry points.

    strategy = make_strategy("mirrored")   # before any other TensorFlow work
    with strategy.scope():
        model = ...; model.compile(...)
    fit(model, x, y, batch_size=64)        # each global batch split over the replicas

`"default"` is TensorFlow's default strategy (one device); `"mirrored"` a `MirroredStrategy`
over the visible GPUs, or over `cpu_replicas` logical devices carved out of the CPU when there
is no GPU; `"multi_worker"` a `MultiWorkerMirroredStrategy` over the workers that the
`TF_CONFIG` environment variable describes (one process per worker, each with its own
`task.index`). The losses of `keras_faceset.losses` are correct under all three (see their
docstrings: the center-loss update uses the global batch; triplet mining and batch contrastive
pairs stay within each replica's share unless `mining_batch="global"`).
"""

from __future__ import annotations

import contextlib
import json
import os
import weakref
from collections.abc import Iterator

import keras
import tensorflow as tf

from keras_faceset.strategies import STRATEGIES

TF_CONFIG_EXAMPLE = (
    '{"cluster": {"worker": ["host1:12345", "host2:12345"]}, '
    '"task": {"type": "worker", "index": 0}}'
)


def make_strategy(name: str = "default", cpu_replicas: int = 2) -> tf.distribute.Strategy:
    """The `tf.distribute.Strategy` called `name` (one of `STRATEGIES`).

    `"mirrored"` without a GPU splits the CPU into `cpu_replicas` logical devices, which
    TensorFlow allows only before it has initialised its devices: call this first, before any
    other TensorFlow work. `"multi_worker"` reads `TF_CONFIG` (checked, see
    `check_tf_config`) and must also come first, on every worker.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy(mirrored_devices(cpu_replicas))
    if name == "multi_worker":
        check_tf_config(os.environ.get("TF_CONFIG"))
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise ValueError(f"Unknown strategy {name!r}; expected one of {STRATEGIES}")


@contextlib.contextmanager
def strategy_scope(name: str = "default", cpu_replicas: int = 2) -> Iterator:
    """`with strategy_scope("mirrored") as strategy:` builds and compiles models under
    `make_strategy(name, cpu_replicas)`; `fit` outside the block still uses it."""
    strategy = make_strategy(name, cpu_replicas)
    with strategy.scope():
        yield strategy


def mirrored_devices(cpu_replicas: int = 2) -> list[str]:
    """The devices of a `MirroredStrategy`: every visible GPU, else `cpu_replicas` logical
    CPU devices (configured here if TensorFlow has not initialised its devices yet)."""
    if tf.config.list_physical_devices("GPU"):  # listing logical devices would initialise them
        return [device.name for device in tf.config.list_logical_devices("GPU")]
    if cpu_replicas < 1:
        raise ValueError(f"cpu_replicas must be >= 1, got {cpu_replicas}")
    cpu = tf.config.list_physical_devices("CPU")[0]
    if len(tf.config.get_logical_device_configuration(cpu) or [None]) != cpu_replicas:
        try:
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * cpu_replicas
            )
        except RuntimeError as error:
            raise RuntimeError(
                f"cannot split the CPU into {cpu_replicas} devices: TensorFlow has already "
                "initialised its devices. Call make_strategy('mirrored') before any other "
                "TensorFlow work (building a model, running an op)."
            ) from error
    return [device.name for device in tf.config.list_logical_devices("CPU")]


def check_tf_config(text: str | None) -> dict:
    """The parsed `TF_CONFIG` of a multi-worker run; `ValueError` naming what is missing."""
    if not text:
        raise ValueError(
            "the multi_worker strategy needs the TF_CONFIG environment variable on every "
            f"worker, e.g. TF_CONFIG='{TF_CONFIG_EXAMPLE}' (index 1 on the second worker)"
        )
    try:
        config = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"TF_CONFIG is not valid JSON ({error}): {text!r}") from error
    cluster = config.get("cluster") if isinstance(config, dict) else None
    task = config.get("task") if isinstance(config, dict) else None
    if not isinstance(cluster, dict) or not (cluster.get("worker") or cluster.get("chief")):
        raise ValueError(
            f"TF_CONFIG needs a cluster with a 'worker' list of host:port, e.g. "
            f"{TF_CONFIG_EXAMPLE}; got {text!r}"
        )
    if not isinstance(task, dict) or task.get("type") not in cluster:
        raise ValueError(
            f"TF_CONFIG's task must name one of the cluster's jobs {sorted(cluster)} "
            f"('task': {{'type': 'worker', 'index': i}}); got {text!r}"
        )
    index, hosts = task.get("index", 0), cluster[task["type"]]
    if not isinstance(index, int) or not 0 <= index < len(hosts):
        raise ValueError(
            f"TF_CONFIG's task index {index!r} is not one of the {len(hosts)} "
            f"{task['type']} addresses {hosts}"
        )
    return config


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the run's files: always, except on the non-chief workers of
    a multi-worker run (the chief is task `chief`, else worker 0)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def fit(
    model: keras.Model,
    x,
    y=None,
    *,
    batch_size: int,
    epochs: int = 1,
    shuffle: bool = False,
    seed: int = 0,
    callbacks: list | None = None,
) -> dict[str, list[float]]:
    """`model.fit(x, y, batch_size=..., epochs=..., shuffle=..., verbose=0).history` under the
    strategy `model` was built in (`model.distribute_strategy`).

    On one replica that is Keras' own `fit`. On several, Keras' `model.train_step` runs in a
    loop of its own over global batches of `batch_size` (shuffled with `seed`: the same order
    on every worker), each split over the replicas, with the `callbacks`' epoch and batch
    hooks; the logs are the mean of the replicas' metrics. Keras 3's `fit` builds a model
    under a multi-replica strategy on the first batch averaged over the replicas (bool inputs
    such as set masks fail, integer labels arrive as floats), and under a
    `MultiWorkerMirroredStrategy` it fails outright (nested batches and scalar logs go to
    reductions that strategy does not support).
    """
    strategy = model.distribute_strategy
    multi_worker = isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)
    if strategy.num_replicas_in_sync == 1 and not multi_worker:
        options = dict(batch_size=batch_size, epochs=epochs, shuffle=shuffle, verbose=0)
        return model.fit(x, y, callbacks=callbacks, **options).history
    data = keras.tree.lists_to_tuples((x,) if y is None else (x, y))  # tf.data: lists are arrays
    dataset = tf.data.Dataset.from_tensor_slices(data)
    if shuffle:
        dataset = dataset.shuffle(len(dataset), seed=seed, reshuffle_each_iteration=True)
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    dataset = dataset.batch(batch_size).with_options(options)
    step = replica_step(model, dataset)
    batches = strategy.experimental_distribute_dataset(dataset)
    callbacks = keras.callbacks.CallbackList(callbacks, model=model)
    history, logs = {}, {}
    callbacks.on_train_begin()
    for epoch in range(epochs):
        model.reset_metrics()
        callbacks.on_epoch_begin(epoch)
        for index, batch in enumerate(batches):
            callbacks.on_train_batch_begin(index)
            outputs = step(batch)
            # each replica reads its own metrics: their mean is the global batch's
            logs = {k: float(strategy.reduce("MEAN", v, axis=None)) for k, v in outputs.items()}
            callbacks.on_train_batch_end(index, logs)
        callbacks.on_epoch_end(epoch, logs)
        for key, value in logs.items():
            history.setdefault(key, []).append(value)
    callbacks.on_train_end(logs)
    return history


_STEPS = weakref.WeakKeyDictionary()  # model -> (its optimizer, its traced replica step)


def replica_step(model: keras.Model, dataset: tf.data.Dataset):
    """A `tf.function` running `model.train_step` on every replica of a distributed batch,
    traced once per model and optimizer (a new `compile` gets a new one); the first call
    builds the model's training variables (`build_for_replicas`) from `dataset`'s first
    global batch."""
    optimizer, step = _STEPS.get(model, (None, None))
    if step is not None and optimizer is model.optimizer:
        return step
    build_for_replicas(model, next(iter(dataset)))
    strategy, owner = model.distribute_strategy, weakref.ref(model)  # the cache keeps no model

    @tf.function
    @tf.autograph.experimental.do_not_convert
    def step(batch):
        return strategy.run(owner().train_step, args=(batch,))

    _STEPS[model] = (model.optimizer, step)
    return step


def build_for_replicas(model: keras.Model, batch) -> None:
    """Create, before the replicas run, the variables Keras makes on a model's first training
    step (the compiled losses' and metrics' trackers, the optimizer's slots): created by the
    replicas inside the step, they fail under `MirroredStrategy`. One eager forward pass and
    loss on `batch` (a global batch) builds them; the model's non-trainable state (seed
    generators) is put back after."""
    x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(batch)
    state = [(v, v.numpy()) for v in model.non_trainable_variables]
    with model.distribute_strategy.scope():
        y_pred = model(x, training=False)
        model.compute_loss(x, y, y_pred, sample_weight, training=False)
        model.compute_metrics(x, y, y_pred, sample_weight)
        if not model.optimizer.built:
            model.optimizer.build(model.trainable_variables)
    for variable, value in state:
        variable.assign(value)
