"""The Transformer learning-rate schedule: linear warmup, then inverse square root decay."""

from __future__ import annotations

import keras
from keras import ops


@keras.saving.register_keras_serializable(package="translator")
class TransformerSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """lr(step) = scale * d_model^-0.5 * min(step^-0.5, step * warmup^-1.5).

    Keras passes the optimizer's iteration count, which is 0 at the first update; steps below 1
    are taken as 1 so the first update already learns.

    Args:
        d_model: model width.
        warmup_steps: steps of linear warmup; the peak is at `warmup_steps`.
        scale: multiplier of the whole curve.
    """

    def __init__(self, d_model: int, warmup_steps: int = 4000, scale: float = 1.0):
        self.d_model = d_model
        self.warmup_steps = warmup_steps
        self.scale = scale

    def __call__(self, step):
        step = ops.maximum(ops.cast(step, "float32"), 1.0)
        decay = ops.rsqrt(step)
        warmup = step * (self.warmup_steps**-1.5)
        return self.scale * (self.d_model**-0.5) * ops.minimum(decay, warmup)

    def get_config(self):
        return {"d_model": self.d_model, "warmup_steps": self.warmup_steps, "scale": self.scale}
