"""Gaussian precision loss: a frame's quality learnt as the precision of its embedding.

A frame embedding is its identity's centre plus isotropic Gaussian noise whose precision (inverse
variance) μ depends on the frame: `f = c + ε`, `ε ~ N(0, I / μ)` in units of a reference
variance. With `a = ‖f − c‖² / D` the frame's squared residual in those units, the negative
log-likelihood of μ is, up to constants and a factor D / 2,

    l(a, μ) = μ a − log μ                                                  (1)

minimised by `μ = 1 / E[a | frame]`: a quality network trained with (1) on residuals to known
identity centres predicts each frame's precision, and the precision-weighted mean
`Σ μ_k f_k / Σ μ_k` (QAN's eq. 1 with these μ) is the maximum-likelihood estimate of the centre.
Unlike a set loss trained end to end, the target says how much less a degraded frame is worth
(its residual), not only that it is worth less (cf. PFE, Shi & Jain 2019; CR-FIQA, Boutros et
al. 2023, which also learn quality from a sample's distance to its class centre).
"""

import keras
from keras import ops

PRECISION_FLOOR = 1e-6
"""μ is clipped below at this value inside `log` (a sigmoid quality can reach 0)."""


def precision_nll(residuals, precision):
    """Per-frame eq. (1), `μ a − log μ`, of squared residuals `a` >= 0 and precisions `μ` > 0
    of the same shape (μ clipped below at `PRECISION_FLOOR`)."""
    residuals = ops.convert_to_tensor(residuals)
    precision = ops.convert_to_tensor(precision)
    if tuple(residuals.shape) != tuple(precision.shape):
        raise ValueError(
            f"precision_nll: residuals {tuple(residuals.shape)} and precisions "
            f"{tuple(precision.shape)} must have the same shape (one residual per frame)"
        )
    precision = ops.maximum(ops.cast(precision, "float32"), PRECISION_FLOOR)
    return ops.cast(residuals, "float32") * precision - ops.log(precision)


@keras.saving.register_keras_serializable(package="keras_faceset")
class GaussianPrecisionLoss(keras.losses.Loss):
    """`precision_nll` as a Keras loss: y_true are the frames' squared residuals to their
    identity's centre (in units of a reference variance), y_pred the predicted precisions (e.g.
    QAN's "quality" output)."""

    def __init__(
        self, reduction: str = "sum_over_batch_size", name: str = "gaussian_precision", dtype=None
    ):
        super().__init__(name=name, reduction=reduction, dtype=dtype)

    def call(self, y_true, y_pred):
        return precision_nll(y_true, y_pred)
