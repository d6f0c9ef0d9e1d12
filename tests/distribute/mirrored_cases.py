"""Run in a fresh interpreter: the losses under a `MirroredStrategy` over 2 logical CPU devices
next to the default strategy (one device) on the same global batches.

    python mirrored_cases.py RESULTS.npz

The CPU is split by `make_strategy("mirrored")` before TensorFlow initialises its devices,
which a test session that has already run TensorFlow cannot do. RESULTS.npz gets, per case,
`<case>|<run>|loss` (the per-epoch losses), `<case>|<run>|<i>` (the model's weights after
training) and `<case>|<run>|replica_gap` (two replicas: the largest gap between a variable's
copies) for the runs of `fit_cases`, plus the direct `strategy.run` checks of `step_cases`.
"""

import sys

import keras
import numpy as np
import tensorflow as tf

from keras_faceset.losses import (
    CenterLoss,
    ContrastiveLoss,
    LSRLoss,
    TripletLoss,
    sample_negative_mask,
    updated_centers,
)
from keras_faceset.models import SeqFaceHead
from keras_faceset.models.distribute import fit, make_strategy

DIM, CLASSES, BATCH, SAMPLES, EPOCHS = 6, 5, 8, 24, 2


def data(seed: int = 0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(SAMPLES, DIM)).astype("float32")
    y = rng.integers(0, CLASSES, SAMPLES).astype("int32")
    return x, y


def center_model():
    """Dense -> CenterLoss -> softmax classifier, with the paper's update on."""
    features, labels = keras.Input((DIM,)), keras.Input((), dtype="int32")
    embeddings = keras.layers.Dense(4, name="embedding")(features)
    embeddings = CenterLoss(CLASSES, alpha=0.5, weight=1.0, name="center")([embeddings, labels])
    logits = keras.layers.Dense(CLASSES, name="logits")(embeddings)
    model = keras.Model([features, labels], logits)
    model.compile(
        keras.optimizers.SGD(0.1), keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    )
    return model, lambda x, y: ([x, y], y)


def seqface_model():
    """SeqFace's training graph: DSA (all negatives, p=1) then a center loss, a softmax."""
    head = SeqFaceHead(DIM, projection_dim=DIM)
    model = head.training_model(
        3, CLASSES - 3, classifier="softmax", center_loss_weight=0.5, dsa_options={"p": 1.0}
    )
    model.compile(
        keras.optimizers.Adam(1e-2),
        {"logits": keras.losses.SparseCategoricalCrossentropy(from_logits=True)},
    )
    return model, lambda x, y: (
        {"frame_embeddings": x, "labels": y},
        {"logits": np.minimum(y, 2)},
    )


def triplet_model(mining_batch: str):
    def build():
        features = keras.Input((DIM,))
        embeddings = keras.layers.Dense(4, name="embedding")(features)
        model = keras.Model(features, embeddings)
        loss = TripletLoss(mining="hard", margin=0.5, mining_batch=mining_batch)
        model.compile(keras.optimizers.SGD(0.1), loss)
        return model, lambda x, y: (x, y)

    return build


def contrastive_model(mining_batch: str):
    def build():
        features = keras.Input((DIM,))
        embeddings = keras.layers.Dense(4, name="embedding")(features)
        model = keras.Model(features, embeddings)
        loss = ContrastiveLoss(margin=1.0, pairs="batch", mining_batch=mining_batch)
        model.compile(keras.optimizers.SGD(0.1), loss)
        return model, lambda x, y: (x, y)

    return build


def lsr_model():
    """Logits of the identities 0-2 under the LSR loss; identities 3-4 are unlabeled (-1)."""
    features = keras.Input((DIM,))
    model = keras.Model(features, keras.layers.Dense(3, name="logits")(features))
    model.compile(keras.optimizers.SGD(0.1), LSRLoss())
    return model, lambda x, y: (x, np.where(y < 3, y, -1).astype("int32"))


def two_outputs_model():
    """Global batch-hard triplets on one output, a mean squared error on another (Keras then
    tracks a loss per output: variables that must exist before the replicas run)."""
    features = keras.Input((DIM,))
    outputs = {
        "embedding": keras.layers.Dense(4, name="embedding")(features),
        "score": keras.layers.Dense(1, name="score")(features),
    }
    model = keras.Model(features, outputs)
    loss = {"embedding": TripletLoss(mining="hard", mining_batch="global"), "score": "mse"}
    model.compile(keras.optimizers.SGD(0.1), loss)
    return model, lambda x, y: (x, {"embedding": y, "score": x[:, :1]})


CASES = {
    "center": center_model,
    "seqface": seqface_model,
    "triplet_global": triplet_model("global"),
    "triplet_replica": triplet_model("replica"),
    "two_outputs": two_outputs_model,
    "contrastive_global": contrastive_model("global"),
    "contrastive_replica": contrastive_model("replica"),
    "lsr": lsr_model,
}


def keras_fit(model, x, y) -> dict:
    return model.fit(x, y, batch_size=BATCH, epochs=EPOCHS, shuffle=False, verbose=0).history


def helper_fit(model, x, y) -> dict:
    return fit(model, x, y, batch_size=BATCH, epochs=EPOCHS)


def fit_cases(mirrored, results: dict) -> None:
    """Each case trained by Keras' `fit` on one device and on two replicas, and by
    `keras_faceset.models.distribute.fit` on two replicas ("loop")."""
    x, y = data()
    runs = (
        ("default", tf.distribute.get_strategy(), keras_fit),
        ("mirrored", mirrored, keras_fit),
        ("loop", mirrored, helper_fit),
    )
    for case, build in CASES.items():
        for name, strategy, run in runs:
            keras.utils.set_random_seed(0)
            with strategy.scope():
                model, feed = build()
            results[f"{case}|{name}|loss"] = np.array(run(model, *feed(x, y))["loss"])
            for i, weight in enumerate(model.weights):
                results[f"{case}|{name}|{i}"] = keras.ops.convert_to_numpy(weight)
            if name != "default":  # largest gap between a variable's replica copies
                copies = [[c.numpy() for c in w.value.values] for w in model.weights]
                results[f"{case}|{name}|replica_gap"] = np.array(
                    max(np.abs(a - b).max() for a, b in copies)
                )


def refit_cases(mirrored, results: dict) -> None:
    """`fit`'s loop called once per epoch continues where it stopped, and a new `compile` (a
    zero learning rate here) is followed, not the step traced for the old optimizer."""
    x, y = data()
    keras.utils.set_random_seed(0)
    with mirrored.scope():
        model, feed = center_model()
    losses = [fit(model, *feed(x, y), batch_size=BATCH)["loss"][0] for _ in range(EPOCHS)]
    results["refit|loop|loss"] = np.array(losses)
    for i, weight in enumerate(model.weights):
        results[f"refit|loop|{i}"] = keras.ops.convert_to_numpy(weight)
    with mirrored.scope():
        model.compile(keras.optimizers.SGD(0.0), model.loss)
    fit(model, *feed(x, y), batch_size=BATCH)
    results["refit|frozen_gap"] = np.array(
        max(
            np.abs(keras.ops.convert_to_numpy(w) - results[f"refit|loop|{i}"]).max()
            for i, w in enumerate(model.weights)
            if w.trainable
        )
    )


def step_cases(mirrored, results: dict) -> None:
    """Uneven replica batches (4 + 3 rows) straight through `strategy.run`, and DSA's draws
    on two replicas given the same labels."""

    def run(function, *arrays, split: int):
        """`function` on rows `[:split]` (replica 0) and `[split:]` (replica 1) of `arrays`;
        the replicas' outputs, stacked."""
        inputs = [
            mirrored.experimental_distribute_values_from_function(
                lambda context, a=a: tf.constant(
                    (a[:split], a[split:])[context.replica_id_in_sync_group]
                )
            )
            for a in arrays
        ]
        outputs = tf.function(lambda *args: mirrored.run(function, args=args))(*inputs)
        return [v.numpy() for v in mirrored.experimental_local_results(outputs)]

    x, y = data(1)
    x, y = x[:7], y[:7]
    centers = np.random.default_rng(2).normal(size=(CLASSES, DIM)).astype("float32")
    update = run(lambda y, x: updated_centers(y, x, centers, 0.5), y, x, split=4)
    results["uneven|centers|mirrored"] = np.stack(update)
    results["uneven|centers|default"] = keras.ops.convert_to_numpy(
        updated_centers(y, x, centers, 0.5)
    )
    loss = TripletLoss(mining="semi_hard", mining_batch="global", reduction=None)
    results["uneven|triplet|mirrored"] = np.concatenate(run(loss, y, x, split=4))
    default = TripletLoss(mining="semi_hard", reduction=None)
    results["uneven|triplet|default"] = keras.ops.convert_to_numpy(default(y, x))
    loss = ContrastiveLoss(pairs="batch", mining_batch="global", reduction=None)
    results["uneven|contrastive|mirrored"] = np.concatenate(run(loss, y, x, split=4))
    default = ContrastiveLoss(pairs="batch", reduction=None)
    results["uneven|contrastive|default"] = keras.ops.convert_to_numpy(default(y, x))
    generator = keras.random.SeedGenerator(3)
    labels = np.arange(8, dtype="int32") % 4  # the same labels on both replicas
    masks = run(
        lambda y: sample_negative_mask(y, 12, 6, p=0.3, seed=generator),
        np.concatenate([labels, labels]),
        split=8,
    )
    results["dsa|masks|mirrored"] = np.stack(masks)
    results["dsa|labels"] = labels


def main(path: str) -> int:
    mirrored = make_strategy("mirrored", cpu_replicas=2)  # before TensorFlow's devices start
    results = {"replicas": np.array(mirrored.num_replicas_in_sync)}
    fit_cases(mirrored, results)
    refit_cases(mirrored, results)
    step_cases(mirrored, results)
    np.savez(path, **results)
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
