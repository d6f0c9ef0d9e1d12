"""Cross-replica collectives for the losses under `tf.distribute` (TensorFlow backend).

Keras runs a training step once per replica, each on its share of the global batch. The
helpers here let a loss see the global batch: outside `tf.distribute` (one replica, any
backend) they are the identity, so the single-device code path is unchanged.
"""

import keras
from keras import ops


def replica_context():
    """The `tf.distribute` replica context when a step runs on more than one replica in sync,
    else None (one replica, a cross-replica context, or a backend other than TensorFlow)."""
    if keras.backend.backend() != "tensorflow":
        return None
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is None or context.num_replicas_in_sync == 1:
        return None
    return context


def build_labels(labels):
    """Integer `labels` back from Keras' build of the compiled losses under a multi-replica
    strategy, which runs in the cross-replica context on the first batch averaged over the
    replicas (float labels, only their shape matters); any other labels unchanged."""
    if keras.backend.backend() != "tensorflow":
        return labels
    import tensorflow as tf

    dtype = keras.backend.standardize_dtype(labels.dtype)
    building = (
        tf.distribute.in_cross_replica_context()
        and tf.distribute.get_strategy().num_replicas_in_sync > 1
    )
    return ops.cast(labels, "int32") if building and "float" in dtype else labels


def all_gather(values):
    """`values` of every replica concatenated along axis 0, in replica order (the global
    batch); `values` itself on one replica. Gradients flow back to each replica's rows."""
    context = replica_context()
    if context is None:
        return values
    import tensorflow as tf

    # An identity takes the replica's device: a step's inputs have none, which the
    # multi-worker gather refuses ("destinations can not be empty").
    return context.all_gather(tf.identity(values), axis=0)


def local_rows(global_values, local_size):
    """This replica's `local_size` rows of a tensor gathered with `all_gather`."""
    context = replica_context()
    if context is None:
        return global_values
    import tensorflow as tf

    sizes = context.all_gather(tf.reshape(tf.cast(local_size, tf.int32), [1]), axis=0)
    replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
    start = tf.reduce_sum(sizes[:replica])
    return global_values[start : start + tf.cast(local_size, tf.int32)]


def uniform(shape, seed):
    """`keras.random.uniform(shape, seed=seed)` in [0, 1); on several replicas the seed is
    folded with the replica id, so that replicas draw independent numbers (the same seed
    state on every replica would otherwise give each replica's rows the same draws)."""
    context = replica_context()
    if context is None:
        return keras.random.uniform(shape, seed=seed)
    import tensorflow as tf

    if isinstance(seed, keras.random.SeedGenerator):
        seed = seed.next()
    elif isinstance(seed, int):
        seed = [seed, 0]
    else:  # None: a seed from Keras' global generator
        seed = keras.random.randint((2,), 0, 2**31 - 1, dtype="int32")
    seed = tf.cast(tf.math.floormod(ops.convert_to_tensor(seed), 2**31 - 1), tf.int32)
    replica = tf.cast(context.replica_id_in_sync_group, tf.int32)
    seed = tf.random.experimental.stateless_fold_in(seed, replica)
    return tf.random.stateless_uniform(shape, seed=seed, dtype=keras.backend.floatx())
