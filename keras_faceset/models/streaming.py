"""Streaming set embeddings for live video: one aggregator state per track, updated frame by
frame, equal to the batch head on the frames seen so far.

For heads whose set embedding is a normalised weighted mean with per-frame weights
`w_k = exp(ℓ_k)` (mean: `ℓ = 0`, QAN: `ℓ = log μ`, one-block NAN: `ℓ = qᵀ f`), the state is
O(1) per track, a running log-sum-exp:

    m ← max(m, ℓ),  s ← s·e^(m_old − m) + e^(ℓ − m),  v ← v·e^(m_old − m) + e^(ℓ − m) f

and the embedding is `normalize(v / s)` (float64 accumulators). A NAN block ≥ 2 re-attends to
every frame with a query computed from the previous block's result over *all* frames, which no
finite summary allows: for `num_blocks >= 2` the state keeps the raw frame embeddings (O(T·dim)
per track) and `embedding` runs the head on them (exact by construction).
"""

from __future__ import annotations

import dataclasses

import keras
import numpy as np

from keras_faceset.models.set_head import SetHead


@dataclasses.dataclass(frozen=True)
class StreamState:
    """Aggregation state of `num_tracks` tracks (NumPy; `update` returns a new state).

    `counts`: valid frames seen per track. Constant-state heads fill `log_max` (m), `total`
    (s) and `weighted_sum` (v); multi-block NAN fills `frames`/`valid` (and `features` for a
    head with `feature_shape`), one `(N, dim)` / `(N,)` / `(N, *feature_shape)` array per update.
    """

    counts: np.ndarray
    log_max: np.ndarray
    total: np.ndarray
    weighted_sum: np.ndarray
    frames: tuple[np.ndarray, ...] = ()
    valid: tuple[np.ndarray, ...] = ()
    features: tuple[np.ndarray, ...] = ()

    @property
    def num_tracks(self) -> int:
        return self.counts.shape[0]


class StreamingAggregator:
    """Frame-by-frame set embeddings with a trained head (`NANHead`, `QANHead`, `SeqFaceHead`).

    ::

        stream = StreamingAggregator(head)
        state = stream.init_state(num_tracks)
        for embeddings, valid in frames:              # (N, dim), (N,) bool per video frame
            state = stream.update(state, embeddings, valid=valid)
            track_embeddings = stream.embedding(state)  # (N, D), as head on the frames so far

    Invalid frames are skipped (a track without a valid frame has a zero embedding). A QAN head
    with `feature_shape` also needs `frame_features` (N, *feature_shape) in `update`.
    """

    def __init__(self, head: SetHead):
        if not isinstance(head, SetHead):
            raise ValueError(f"head must be a SetHead (e.g. NANHead), got {type(head).__name__}.")
        self.head = head
        self.constant_state = head.supports_constant_state

    def init_state(self, num_tracks: int) -> StreamState:
        if isinstance(num_tracks, bool) or not isinstance(num_tracks, int) or num_tracks < 1:
            raise ValueError(f"num_tracks must be a positive int, got {num_tracks!r}.")
        width = self.head.output_dim if self.constant_state else 0
        return StreamState(
            counts=np.zeros(num_tracks, np.int64),
            log_max=np.full(num_tracks, -np.inf),
            total=np.zeros(num_tracks),
            weighted_sum=np.zeros((num_tracks, width)),
        )

    def update(
        self,
        state: StreamState,
        frame_embeddings,
        frame_features=None,
        valid=None,
    ) -> StreamState:
        """The state after one more frame per track: `frame_embeddings` (N, dim), optional
        `frame_features` (N, *feature_shape) and `valid` (N,) bool (default: all valid)."""
        embeddings, features, valid = self._check(state, frame_embeddings, frame_features, valid)
        if not self.constant_state:
            return dataclasses.replace(
                state,
                counts=state.counts + valid,
                frames=(*state.frames, embeddings),
                valid=(*state.valid, valid),
                features=state.features if features is None else (*state.features, features),
            )
        encoded = self.head.encode_frames(embeddings)
        log_w = self.head.frame_log_weights(encoded, embeddings, features)
        f = keras.ops.convert_to_numpy(encoded).astype(np.float64)
        log_w = keras.ops.convert_to_numpy(log_w).astype(np.float64)
        valid = valid & np.isfinite(log_w)  # w = 0 (QAN's μ = 0) contributes nothing
        log_max = np.where(valid, np.maximum(state.log_max, log_w), state.log_max)
        with np.errstate(invalid="ignore", over="ignore"):
            old_scale = np.where(valid, np.exp(state.log_max - log_max), 1.0)
            new_weight = np.where(valid, np.exp(log_w - log_max), 0.0)
        return dataclasses.replace(
            state,
            counts=state.counts + valid,
            log_max=log_max,
            total=state.total * old_scale + new_weight,
            weighted_sum=state.weighted_sum * old_scale[:, None] + new_weight[:, None] * f,
        )

    def embedding(self, state: StreamState) -> np.ndarray:
        """`(N, D)` float32 set embeddings of the frames seen so far."""
        if not self.constant_state:
            if not state.frames:
                return np.zeros((state.num_tracks, self.head.output_dim), np.float32)
            inputs = {
                "frame_embeddings": np.stack(state.frames, axis=1),
                "mask": np.stack(state.valid, axis=1),
            }
            if state.features:
                inputs["frame_features"] = np.stack(state.features, axis=1)
            outputs = self.head(inputs)
            return keras.ops.convert_to_numpy(outputs["embedding"])
        total = state.total[:, None]
        pooled = np.where(total > 0, state.weighted_sum / np.where(total > 0, total, 1.0), 0.0)
        norm = np.sqrt(np.maximum(np.sum(pooled**2, axis=-1, keepdims=True), 1e-24))
        return (pooled / norm).astype(np.float32)

    def _check(self, state: StreamState, frame_embeddings, frame_features, valid):
        num_tracks, dim = state.num_tracks, self.head.dim
        embeddings = np.asarray(frame_embeddings, np.float32)
        if embeddings.shape != (num_tracks, dim):
            raise ValueError(
                f"frame_embeddings must have shape (num_tracks, dim) = {(num_tracks, dim)}, "
                f"got {embeddings.shape}."
            )
        valid = np.ones(num_tracks, bool) if valid is None else np.asarray(valid)
        if valid.shape != (num_tracks,) or valid.dtype != bool:
            raise ValueError(
                f"valid must be a bool array of shape ({num_tracks},), got {valid.dtype} "
                f"{valid.shape}."
            )
        embeddings = np.where(valid[:, None], embeddings, 0.0).astype(np.float32)
        feature_shape = self.head.feature_shape
        if feature_shape is None:
            if frame_features is not None:
                raise ValueError(f"{self.head.name} takes no frame_features.")
            return embeddings, None, valid
        if frame_features is None:
            raise ValueError(f"{self.head.name} needs frame_features {feature_shape} per frame.")
        features = np.asarray(frame_features, np.float32)
        if features.shape != (num_tracks, *feature_shape):
            raise ValueError(
                f"frame_features must have shape {(num_tracks, *feature_shape)}, got "
                f"{features.shape}."
            )
        keep = valid.reshape((num_tracks,) + (1,) * len(feature_shape))
        return embeddings, np.where(keep, features, 0.0).astype(np.float32), valid
