"""Margin classification heads for training face embeddings.

Each head owns a class-weight matrix ``W`` of shape ``(dim, num_classes)`` (Glorot init) whose
columns are L2-normalised in the forward pass, so ``cos θ_j = x̂ · ŵ_j``. Called on
``[embeddings, labels]`` (labels: integer class ids, shape ``(B,)`` or ``(B, 1)``) it returns
logits ``(B, num_classes)`` in which only the target logit carries the margin; train them with
``keras.losses.SparseCategoricalCrossentropy(from_logits=True)``::

    x = keras.Input((512,))
    y = keras.Input((), dtype="int32")
    logits = ArcFace(num_classes)([x, y])
    model = keras.Model([x, y], logits)
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit([features, ids], ids)

The margin is applied whenever labels are given (so ``evaluate`` reports the training
objective); a label of -1 marks an unlabeled sample (SeqFace's sequences, as in `LSRLoss`),
whose logits carry no margin. Any other label outside ``[0, num_classes)`` is an error.
Called on embeddings alone (``head(embeddings)`` or ``head([embeddings])``) a head returns
the un-margined scaled cosine logits ``s · cos θ_j``.
"""

import math

import keras
from keras import ops

from keras_faceset.losses import validate_labels

_EPS = 1e-12


def _safe_sqrt(x):
    """``sqrt(x)`` for ``x >= 0`` with a zero (not infinite) gradient at ``x = 0``."""
    positive = x > 0
    return ops.where(positive, ops.sqrt(ops.where(positive, x, ops.ones_like(x))), 0.0)


def _l2_normalize(x, axis: int):
    return x * ops.rsqrt(ops.maximum(ops.sum(ops.square(x), axis=axis, keepdims=True), _EPS))


def _check_positive(name: str, value: float) -> float:
    if not value > 0:
        raise ValueError(f"`{name}` must be > 0, got {value}")
    return float(value)


class _AngularMarginHead(keras.layers.Layer):
    """Normalised-cosine plumbing shared by the margin heads.

    logits_j = s · cos θ_j for j ≠ y and s · f(cos θ_y) for the target, where ``f`` is the
    subclass's ``_target_cosine``; ``s`` is a fixed scale, or the feature norm ‖x‖ when
    ``logit_scale`` is None (SphereFace).
    """

    def __init__(
        self,
        num_classes: int,
        logit_scale: float | None,
        kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        **kwargs,
    ):
        super().__init__(**kwargs)
        if int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(f"`num_classes` must be an integer >= 2, got {num_classes}")
        self.num_classes = int(num_classes)
        self._logit_scale = logit_scale
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        embeddings_shape, _ = self._split(input_shape)
        if len(embeddings_shape) != 2 or embeddings_shape[-1] is None:
            raise ValueError(
                f"embeddings must have shape (batch, dim) with a known dim, got {embeddings_shape}"
            )
        self.kernel = self.add_weight(
            name="kernel",
            shape=(embeddings_shape[-1], self.num_classes),
            initializer=self.kernel_initializer,
        )

    def call(self, inputs):
        embeddings, labels = self._split(inputs)
        embeddings = ops.cast(embeddings, self.compute_dtype)
        if len(embeddings.shape) != 2:
            raise ValueError(f"embeddings must have rank 2 (batch, dim), got {embeddings.shape}")
        squared_norm = ops.sum(ops.square(embeddings), axis=-1, keepdims=True)
        unit = embeddings * ops.rsqrt(ops.maximum(squared_norm, _EPS))
        cosine = ops.clip(ops.matmul(unit, _l2_normalize(self.kernel, axis=0)), -1.0, 1.0)
        scale = _safe_sqrt(squared_norm) if self._logit_scale is None else self._logit_scale
        if labels is None:
            return scale * cosine
        is_target = self._target_mask(labels, embeddings.shape[0])
        target_cosine = ops.sum(ops.where(is_target, cosine, 0.0), axis=-1, keepdims=True)
        return scale * ops.where(is_target, self._target_cosine(target_cosine), cosine)

    def _target_cosine(self, cosine):
        """Margined target ``f(cos θ_y)``; ``cosine`` has shape (B, 1)."""
        raise NotImplementedError

    def _target_mask(self, labels, batch_size):
        labels = validate_labels(
            labels, self.num_classes, f"{type(self).__name__} layer {self.name}", lowest=-1
        )
        if None not in (batch_size, labels.shape[0]) and batch_size != labels.shape[0]:
            raise ValueError(
                f"labels batch {labels.shape[0]} does not match embeddings batch {batch_size}"
            )
        return ops.equal(ops.expand_dims(labels, -1), ops.arange(self.num_classes, dtype="int32"))

    @staticmethod
    def _split(inputs):
        if not isinstance(inputs, (list, tuple)) or _is_shape(inputs):
            return inputs, None
        if len(inputs) not in (1, 2):
            raise ValueError(
                f"expected [embeddings, labels] or embeddings, got {len(inputs)} inputs"
            )
        return inputs[0], (inputs[1] if len(inputs) == 2 else None)

    def get_config(self):
        return {
            **super().get_config(),
            "num_classes": self.num_classes,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
        }


def _is_shape(value) -> bool:
    return isinstance(value, (list, tuple)) and all(d is None or isinstance(d, int) for d in value)


@keras.saving.register_keras_serializable(package="keras_faceset")
class NormalizedSoftmax(_AngularMarginHead):
    """L2-softmax / NormFace (Ranjan et al. 2017; Wang et al. 2017): ``logits_j = s · cos θ_j``.

    Features and class weights are both L2-normalised; no margin. ``scale`` (α in L2-softmax,
    s in NormFace) defaults to 30, inside the α ≈ 16–64 range of L2-softmax: too small a scale
    bounds the softmax probability of the target away from 1.
    Labels are accepted (and validated) only for a call signature shared with the margin heads.
    """

    def __init__(
        self,
        num_classes: int,
        scale: float = 30.0,
        kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        **kwargs,
    ):
        self.scale = _check_positive("scale", scale)
        super().__init__(num_classes, self.scale, kernel_initializer, **kwargs)

    def _target_cosine(self, cosine):
        return cosine

    def get_config(self):
        return {**super().get_config(), "scale": self.scale}


@keras.saving.register_keras_serializable(package="keras_faceset")
class CosFace(NormalizedSoftmax):
    """CosFace / large margin cosine loss (Wang et al. 2018): target ``s · (cos θ_y − m)``."""

    def __init__(
        self,
        num_classes: int,
        scale: float = 64.0,
        margin: float = 0.35,
        kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        **kwargs,
    ):
        if margin < 0:
            raise ValueError(f"`margin` must be >= 0, got {margin}")
        self.margin = float(margin)
        super().__init__(num_classes, scale, kernel_initializer, **kwargs)

    def _target_cosine(self, cosine):
        return cosine - self.margin

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


@keras.saving.register_keras_serializable(package="keras_faceset")
class ArcFace(NormalizedSoftmax):
    """ArcFace / additive angular margin (Deng et al. 2019): target ``s · cos(θ_y + m)``.

    As insightface (``easy_margin=False``), where ``θ_y + m > π`` would make the target
    non-monotonic the target falls back to ``cos θ_y − m·sin(π − m)``:
    ``f(c) = cos(θ + m) if c > cos(π − m) else c − m·sin(π − m)``, with
    ``cos(θ + m) = c·cos m − sin θ·sin m`` and ``sin θ = sqrt(1 − c²)`` (zero gradient at c = ±1).
    """

    def __init__(
        self,
        num_classes: int,
        scale: float = 64.0,
        margin: float = 0.5,
        kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        **kwargs,
    ):
        if not 0 <= margin < math.pi:
            raise ValueError(f"`margin` must be in [0, π), got {margin}")
        self.margin = float(margin)
        super().__init__(num_classes, scale, kernel_initializer, **kwargs)

    def _target_cosine(self, cosine):
        sine = _safe_sqrt(ops.clip(1.0 - ops.square(cosine), 0.0, 1.0))
        shifted = cosine * math.cos(self.margin) - sine * math.sin(self.margin)
        fallback = cosine - math.sin(math.pi - self.margin) * self.margin
        return ops.where(cosine > math.cos(math.pi - self.margin), shifted, fallback)

    def get_config(self):
        return {**super().get_config(), "margin": self.margin}


@keras.saving.register_keras_serializable(package="keras_faceset")
class SphereFace(_AngularMarginHead):
    """SphereFace / A-Softmax (Liu et al. 2017): multiplicative angular margin ``m``.

    Target ``‖x‖ · ψ(θ_y)``, others ``‖x‖ · cos θ_j`` (weights normalised, features not), with
    ``ψ(θ) = (−1)^k cos(mθ) − 2k`` for ``θ ∈ [kπ/m, (k+1)π/m]``: monotonically decreasing from
    ψ(0) = 1 to ψ(π) = 1 − 2m. ``cos(mθ)`` is the Chebyshev polynomial ``T_m(cos θ)``
    (m = 4: 8c⁴ − 8c² + 1) and ``k = floor(m·acos(c)/π)`` carries no gradient, as in the
    original Caffe layer. ``lambda_`` is the original's annealing weight:
    ``logit_y = (λ‖x‖cos θ_y + ‖x‖ψ(θ_y)) / (1 + λ)``; it is held in the non-trainable
    variable ``lambda_var`` so a callback can anneal it (``head.lambda_var.assign(λ)``).
    ``feature_scale`` δ, when given, L2-normalises the features and rescales them to norm δ
    (logits ``δ·ψ(θ_y)`` / ``δ·cos θ_j``), see ``L2SphereFace``.
    """

    def __init__(
        self,
        num_classes: int,
        margin: int = 4,
        lambda_: float = 0.0,
        feature_scale: float | None = None,
        kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        **kwargs,
    ):
        if int(margin) != margin or margin < 1:
            raise ValueError(f"`margin` must be an integer >= 1, got {margin}")
        if lambda_ < 0:
            raise ValueError(f"`lambda_` must be >= 0, got {lambda_}")
        self.margin = int(margin)
        self.lambda_ = float(lambda_)
        self.feature_scale = (
            None if feature_scale is None else _check_positive("feature_scale", feature_scale)
        )
        super().__init__(num_classes, self.feature_scale, kernel_initializer, **kwargs)

    def build(self, input_shape):
        super().build(input_shape)
        self.lambda_var = self.add_weight(
            name="lambda",
            shape=(),
            initializer=keras.initializers.Constant(self.lambda_),
            trainable=False,
        )

    def _target_cosine(self, cosine):
        previous, chebyshev = ops.ones_like(cosine), cosine
        for _ in range(self.margin - 1):  # T_{n+1}(c) = 2c·T_n(c) − T_{n−1}(c)
            previous, chebyshev = chebyshev, 2.0 * cosine * chebyshev - previous
        angle = ops.arccos(ops.clip(ops.stop_gradient(cosine), -1.0, 1.0))
        k = ops.clip(ops.floor(self.margin * angle / math.pi), 0.0, self.margin - 1.0)
        parity = ops.cast(ops.mod(k, 2.0), k.dtype)  # TF's mod returns float32 for bfloat16
        psi = (1.0 - 2.0 * parity) * chebyshev - 2.0 * k
        lam = ops.cast(self.lambda_var, cosine.dtype)
        return (lam * cosine + psi) / (1.0 + lam)

    def get_config(self):
        return {
            **super().get_config(),
            "margin": self.margin,
            "lambda_": self.lambda_,
            "feature_scale": self.feature_scale,
        }


@keras.saving.register_keras_serializable(package="keras_faceset")
class L2SphereFace(SphereFace):
    """SphereFace margin on L2-normalised features rescaled to a fixed norm δ (SeqFace, Hu et al.
    2018): target ``δ · ψ(θ_y)``, others ``δ · cos θ_j``.

    Fixing the feature norm removes the ‖x‖-driven logit growth of plain A-Softmax; δ
    (``feature_scale``) defaults to 30, the NormFace/L2-softmax range (our choice, tune per data).
    """

    def __init__(
        self,
        num_classes: int,
        margin: int = 4,
        lambda_: float = 0.0,
        feature_scale: float = 30.0,
        kernel_initializer: str | keras.initializers.Initializer = "glorot_uniform",
        **kwargs,
    ):
        if feature_scale is None:
            raise ValueError("`feature_scale` must be a number > 0 for L2SphereFace, got None")
        super().__init__(num_classes, margin, lambda_, feature_scale, kernel_initializer, **kwargs)
