"""The set-head contract: frame embeddings (+ features) and a mask -> set embedding + weights.

A head (`MeanHead`, `NANHead`, `QANHead`, `SeqFaceHead`) works on precomputed frame embeddings
`{"frame_embeddings": (B, T, dim), "mask": (B, T)}` (plus `"frame_features"` for a head that
scores quality from backbone features) and returns `{"embedding": (B, D), "weights": (B, T)}`.
The mask (bool, True = real frame) is required: masked frames are zeroed first (padding garbage
reaches neither outputs nor gradients) and get weight 0. The embedding is L2-normalised; the
weights sum to 1 over the unmasked frames of each set.
"""

from __future__ import annotations

import keras
from keras import ops

from keras_faceset.layers import L2Normalize
from keras_faceset.layers.masking import check_frame_mask, static_shape_mismatch


@keras.saving.register_keras_serializable(package="keras_faceset")
class MaskFrames(keras.layers.Layer):
    """`[frames (B, T, ...), mask (B, T)] -> frames` with masked frames set to exactly 0."""

    def call(self, inputs):
        frames, mask = inputs
        if len(frames.shape) < 3:
            raise ValueError(
                f"MaskFrames expects frames (batch, set_size, ...), got shape "
                f"{tuple(frames.shape)}."
            )
        mask = check_frame_mask(mask, frames.shape[:2], "MaskFrames")
        keep = ops.reshape(mask, (*ops.shape(mask), *([1] * (len(frames.shape) - 2))))
        return ops.where(keep, frames, ops.zeros_like(frames))

    def compute_output_shape(self, input_shape):
        return input_shape[0]


def frame_feature_shape(shape: int | tuple[int, ...] | list[int]) -> tuple[int, ...]:
    """A head's per-frame feature shape: `C` -> `(C,)` (pooled vectors) or `(H, W, C)` (maps)."""
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    if len(shape) not in (1, 3) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape
    ):
        raise ValueError(
            f"frame feature shape must be a positive int C (pooled vectors) or (H, W, C) "
            f"(feature maps), got {shape!r}."
        )
    return shape


def positive_int(name: str, value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}.")
    return value


class SetHead(keras.Model):
    """Base of the set heads: frame embeddings (+ features) and a mask -> set embedding.

    Graph: mask the frames -> optional per-frame `Dense(projection_dim)` ("projection") ->
    L2-normalise each frame (`f_k`) -> the subclass's aggregation (`r`, weights) ->
    L2-normalise `r` ("embedding"). A set of one frame thus gives `f_1`.

    Subclasses build their aggregation in `__init__` between `_frame_graph` and
    `_finish`, and implement `frame_log_weights` (used by `StreamingAggregator`).
    """

    def _frame_graph(
        self, dim: int, projection_dim: int | None, feature_shape: tuple[int, ...] | None
    ):
        """Inputs dict and the normalised frame features `f` (B, T, D)."""
        dim = positive_int("dim", dim)
        if projection_dim is not None:
            positive_int("projection_dim", projection_dim)
        inputs = {
            "frame_embeddings": keras.Input((None, dim), name="frame_embeddings"),
            "mask": keras.Input((None,), dtype="bool", name="mask"),
        }
        if feature_shape is not None:
            inputs["frame_features"] = keras.Input((None, *feature_shape), name="frame_features")
        frames = MaskFrames(name="mask_frames")([inputs["frame_embeddings"], inputs["mask"]])
        if projection_dim is not None:
            frames = keras.layers.Dense(projection_dim, name="projection")(frames)
        return inputs, L2Normalize(name="frame_normalize")(frames)

    def _finish(
        self, inputs: dict, pooled, weights, name: str, extra_outputs: dict | None = None, **kwargs
    ) -> None:
        outputs = {"embedding": L2Normalize(name="embedding")(pooled), "weights": weights}
        super().__init__(
            inputs=inputs, outputs={**outputs, **(extra_outputs or {})}, name=name, **kwargs
        )

    @property
    def dim(self) -> int:
        """Size of the frame embeddings the head takes."""
        return self.input["frame_embeddings"].shape[-1]

    @property
    def output_dim(self) -> int:
        """Size of the set embedding."""
        return self.output["embedding"].shape[-1]

    @property
    def projection_dim(self) -> int | None:
        """Size of the per-frame projection, None without one."""
        return self.get_layer("projection").units if self.has_projection else None

    @property
    def has_projection(self) -> bool:
        return any(layer.name == "projection" for layer in self.layers)

    @property
    def feature_shape(self) -> tuple[int, ...] | None:
        """Per-frame shape of the `"frame_features"` input, None when the head takes none."""
        features = self.input.get("frame_features")
        return None if features is None else tuple(features.shape[2:])

    @property
    def supports_constant_state(self) -> bool:
        """True when streaming needs O(1) state per track (a weighted running sum)."""
        return True

    def check_inputs(self, inputs) -> None:
        """`ValueError` naming the input when a dict of arrays does not fit the head:
        frame_embeddings (batch, set_size, dim), frame_features (batch, set_size, *feature_shape),
        mask (batch, set_size). Keras checks shapes while tracing, and once a trace has seen
        other sizes its traced function has unknown ones: `predict` and `predict_on_batch`
        therefore check the arrays here, on every call, before the traced function runs."""
        if not isinstance(inputs, dict) or not hasattr(inputs.get("frame_embeddings"), "shape"):
            return
        frames = tuple(inputs["frame_embeddings"].shape)[:2]
        for name, spec in self.input.items():
            shape = tuple(getattr(inputs.get(name), "shape", ()))
            expected = (*frames, *spec.shape[2:])
            if name in inputs and static_shape_mismatch(shape, expected):
                what = ", ".join(["batch", "set_size", *map(str, spec.shape[2:])])
                raise ValueError(
                    f"{self.name}: {name} must have shape ({what}) = {expected}, batch and "
                    f"set_size as in frame_embeddings; got {shape}. Give the head its "
                    "backbone's frame outputs and one mask entry per frame."
                )

    def predict(self, x, *args, **kwargs):
        self.check_inputs(x)
        return super().predict(x, *args, **kwargs)

    def predict_on_batch(self, x):
        self.check_inputs(x)
        return super().predict_on_batch(x)

    def project(self, frame_embeddings):
        """The per-frame projection (identity without one), on any leading shape."""
        if not self.has_projection:
            return frame_embeddings
        return self.get_layer("projection")(frame_embeddings)

    def encode_frames(self, frame_embeddings):
        """`(N, dim)` frame embeddings -> the normalised frame features `f` (N, D)."""
        frames = self.project(ops.convert_to_tensor(frame_embeddings, "float32"))
        return self.get_layer("frame_normalize")(frames)

    def frame_log_weights(self, features, frame_embeddings, frame_features=None):
        """Unnormalised log-weights `ℓ_k` (N,) of single frames, so that the set embedding is
        `normalize(Σ exp(ℓ_k) f_k / Σ exp(ℓ_k))` (for heads with `supports_constant_state`)."""
        raise NotImplementedError

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "dim": self.dim,
            "projection_dim": self.projection_dim,
        }

    @classmethod
    def from_config(cls, config: dict) -> SetHead:
        return cls(**config)
