"""Streaming aggregation: after every frame it equals the batch head on the frames so far."""

import keras
import numpy as np
import pytest

from keras_faceset.models.nan import NANHead
from keras_faceset.models.qan import QANHead
from keras_faceset.models.seqface import SeqFaceHead
from keras_faceset.models.streaming import StreamingAggregator
from tests.models.set_helpers import DIM, numpy_outputs, randomize, unit

HEADS = {
    "nan1": lambda: NANHead(DIM, num_blocks=1),
    "nan2": lambda: NANHead(DIM, num_blocks=2, projection_dim=8),
    "nan1_features": lambda: NANHead(DIM, num_blocks=1, feature_shape=12, max_logit=1.5),
    "nan2_features": lambda: NANHead(DIM, num_blocks=2, feature_shape=12, max_logit=2.0),
    "qan": lambda: QANHead(DIM, filters=6),
    "qan_features": lambda: QANHead(DIM, feature_shape=12, filters=6, projection_dim=8),
    "mean": lambda: SeqFaceHead(DIM),
}
NUM_TRACKS, NUM_FRAMES = 4, 7


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_stream_equals_batch_after_every_frame(rng, kind):
    head = randomize(HEADS[kind](), rng, scale=1.5)
    stream = StreamingAggregator(head)
    assert stream.constant_state == (not kind.startswith("nan2"))
    frames = rng.normal(size=(NUM_TRACKS, NUM_FRAMES, DIM)).astype("float32")
    features = rng.normal(size=(NUM_TRACKS, NUM_FRAMES, 12)).astype("float32")
    valid = rng.uniform(size=(NUM_TRACKS, NUM_FRAMES)) < 0.7
    valid[0] = True  # a track with every frame
    valid[1, 0] = False  # a track starting with an invalid frame
    valid[3] = False  # a track never seen
    garbage = np.where(valid[..., None], frames, 1e30).astype("float32")  # invalid: skipped
    uses_features = head.feature_shape is not None
    state = stream.init_state(NUM_TRACKS)
    for n in range(1, NUM_FRAMES + 1):
        state = stream.update(
            state,
            garbage[:, n - 1],
            features[:, n - 1] if uses_features else None,
            valid=valid[:, n - 1],
        )
        inputs = {"frame_embeddings": frames[:, :n], "mask": valid[:, :n]}
        if uses_features:
            inputs["frame_features"] = features[:, :n]
        expected = numpy_outputs(head(inputs))["embedding"]
        np.testing.assert_allclose(stream.embedding(state), expected, atol=1e-5, err_msg=f"{n}")
    np.testing.assert_array_equal(state.counts, valid.sum(-1))
    np.testing.assert_array_equal(stream.embedding(state)[3], 0.0)


def test_one_frame_gives_its_normalised_embedding(rng):
    head = randomize(NANHead(DIM, num_blocks=1), rng)
    stream = StreamingAggregator(head)
    frame = rng.normal(size=(2, DIM)).astype("float32")
    state = stream.update(stream.init_state(2), frame)
    np.testing.assert_allclose(stream.embedding(state), unit(frame), atol=1e-6)


def test_constant_state_does_not_grow_and_multi_block_keeps_frames(rng):
    one, two = (StreamingAggregator(NANHead(DIM, num_blocks=b)) for b in (1, 2))
    states = [stream.init_state(3) for stream in (one, two)]
    for _ in range(5):
        frame = rng.normal(size=(3, DIM)).astype("float32")
        states = [s.update(state, frame) for s, state in zip((one, two), states, strict=True)]
    assert states[0].weighted_sum.shape == (3, DIM) and states[0].frames == ()
    assert len(states[1].frames) == 5 and states[1].weighted_sum.shape == (3, 0)


def test_quality_zero_frames_are_skipped(rng):
    """μ = 0 exactly (log μ = −inf) contributes nothing, as in `QualityPooling`."""
    head = QANHead(DIM, initial_bias=-200.0)  # sigmoid(-200) underflows to 0 in float32
    stream = StreamingAggregator(head)
    state = stream.update(stream.init_state(2), rng.normal(size=(2, DIM)))
    np.testing.assert_array_equal(state.counts, 0)
    np.testing.assert_array_equal(stream.embedding(state), 0.0)
    inputs = {"frame_embeddings": rng.normal(size=(2, 1, DIM)), "mask": np.ones((2, 1), bool)}
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(head(inputs)["embedding"]), 0.0)


def test_bad_arguments_raise(rng):
    stream = StreamingAggregator(QANHead(DIM, feature_shape=12))
    state = stream.init_state(2)
    frames = rng.normal(size=(2, DIM))
    with pytest.raises(ValueError, match="needs frame_features"):
        stream.update(state, frames)
    with pytest.raises(ValueError, match="frame_features must have shape"):
        stream.update(state, frames, rng.normal(size=(2, 5)))
    with pytest.raises(ValueError, match="frame_embeddings must have shape"):
        stream.update(state, rng.normal(size=(3, DIM)), rng.normal(size=(3, 12)))
    with pytest.raises(ValueError, match="valid must be a bool array"):
        stream.update(state, frames, rng.normal(size=(2, 12)), valid=np.ones(2))
    with pytest.raises(ValueError, match="takes no frame_features"):
        StreamingAggregator(NANHead(DIM)).update(
            StreamingAggregator(NANHead(DIM)).init_state(2), frames, frames
        )
    with pytest.raises(ValueError, match="num_tracks"):
        stream.init_state(0)
    with pytest.raises(ValueError, match="SetHead"):
        StreamingAggregator(keras.Sequential([keras.layers.Dense(2)]))
