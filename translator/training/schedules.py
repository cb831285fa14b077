"""Learning-rate schedules: linear warmup, then inverse square root or linear decay to zero."""

from __future__ import annotations

import keras
from keras import ops
from omegaconf import DictConfig


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


@keras.saving.register_keras_serializable(package="translator")
class LinearDecaySchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warmup to `peak` at `warmup_steps`, then a straight line to zero at `total_steps`.

    For a fixed budget, ending the run at zero learning rate beats a schedule that is still high
    when time runs out. Steps below 1 are taken as 1; steps past `total_steps` get zero. The end
    of the warm-up and the zero point live in variables, so `set_warmup_steps` and
    `set_total_steps` can move them while a compiled step runs (a time budget moves them to
    where its predicted number of steps puts them: `translator.training.plan`).

    Args:
        peak: the learning rate at `warmup_steps`.
        warmup_steps: steps of linear warmup.
        total_steps: the step at which the rate reaches zero; must exceed `warmup_steps`.
    """

    def __init__(self, peak: float, warmup_steps: int, total_steps: int):
        if total_steps <= warmup_steps:
            raise ValueError(f"total_steps={total_steps} must exceed warmup_steps={warmup_steps}")
        self.peak = peak
        self.warmup = keras.Variable(float(warmup_steps), dtype="float32", trainable=False)
        self.end = keras.Variable(float(total_steps), dtype="float32", trainable=False)

    @property
    def warmup_steps(self) -> int:
        return int(round(float(self.warmup.numpy())))

    @property
    def total_steps(self) -> int:
        return int(round(float(self.end.numpy())))

    def set_warmup_steps(self, warmup_steps: int) -> int:
        """Move the peak (kept at least 1 and below the zero point); returns the step set."""
        warmup_steps = min(max(int(warmup_steps), 1), self.total_steps - 1)
        self.warmup.assign(float(warmup_steps))
        return warmup_steps

    def set_total_steps(self, total_steps: int) -> int:
        """Move the zero point (kept past the warm-up); returns the step it was set to."""
        total_steps = max(int(total_steps), self.warmup_steps + 1)
        self.end.assign(float(total_steps))
        return total_steps

    def __call__(self, step):
        step = ops.maximum(ops.cast(step, "float32"), 1.0)
        warmup_steps = ops.convert_to_tensor(self.warmup)
        end = ops.convert_to_tensor(self.end)
        warmup = step / warmup_steps
        decay = (end - step) / (end - warmup_steps)
        return self.peak * ops.clip(ops.minimum(warmup, decay), 0.0, 1.0)

    def get_config(self):
        return {
            "peak": self.peak,
            "warmup_steps": self.warmup_steps,
            "total_steps": self.total_steps,
        }


def build_schedule(
    d_model: int, train, max_steps: int | None = None
) -> keras.optimizers.schedules.LearningRateSchedule:
    """The schedule `train.decay` names. Both peak at lr_scale * d_model^-0.5 * warmup^-0.5
    (`train.warmup_steps`, also when a time budget shortens the warm-up).

    With `decay_steps=auto` the linear schedule first aims at `max_steps` (the most updates the
    run may make: epochs x steps per epoch); the time budget then moves its zero point, and its
    warm-up with `train.warmup_fraction`, to its predicted steps (`translator.training.plan`).
    """
    if train.decay == "inverse_sqrt":
        return TransformerSchedule(d_model, train.warmup_steps, train.lr_scale)
    total = train.decay_steps
    if total == "auto":
        total = max(max_steps or 0, train.warmup_steps + 1)
    peak = train.lr_scale * d_model**-0.5 * train.warmup_steps**-0.5
    return LinearDecaySchedule(peak, train.warmup_steps, total)


def describe_schedule(train: DictConfig, per_epoch: int) -> str:
    """One log line: how the learning rate decays, and where the zero point falls in epochs."""
    if train.decay != "linear":
        return f"lr: warmup {train.warmup_steps} steps, then inverse square root decay"
    if train.decay_steps == "auto":
        return (
            f"lr: warmup {train.warmup_steps} steps, then linear decay to zero where the "
            f"{train.max_minutes}-minute budget is predicted to end (re-estimated every epoch)"
        )
    return (
        f"lr: warmup {train.warmup_steps} steps, then linear decay to zero at step "
        f"{train.decay_steps} (epoch {train.decay_steps / per_epoch:.1f} "
        f"at {per_epoch} steps/epoch)"
    )


@keras.saving.register_keras_serializable(package="translator")
class PerUpdate(keras.optimizers.schedules.LearningRateSchedule):
    """`schedule` counted in optimizer updates when each update accumulates `steps` batches.

    Keras evaluates a schedule at the optimizer's batch counter, which counts every batch when
    gradients are accumulated (`gradient_accumulation_steps`); this gives `schedule` the number
    of updates made instead, so warm-up and decay mean the same with or without accumulation.
    """

    def __init__(self, schedule, steps: int):
        self.schedule = schedule
        self.steps = steps

    def __call__(self, step):
        return self.schedule(ops.floor_divide(ops.cast(step, "int64"), self.steps))

    def get_config(self):
        return {
            "schedule": keras.saving.serialize_keras_object(self.schedule),
            "steps": self.steps,
        }

    @classmethod
    def from_config(cls, config):
        schedule = keras.saving.deserialize_keras_object(config["schedule"])
        return cls(schedule, config["steps"])
