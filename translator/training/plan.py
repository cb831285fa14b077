"""What a run counts in steps or epochs, set from how long the run is predicted to be.

A config gives the warm-up, the bidirectional (BiT) stage and the averaging window either as
counts (`train.warmup_steps`, `data.bidirectional_steps`, `train.average_last`) or as fractions of
the run (`train.warmup_fraction`, `data.bidirectional_fraction`, `train.average_fraction`); the
start and end of concatenation (`data.concat_from`, `data.concat_until`) are fractions of the
run. A fraction is of epochs x steps per epoch; with a time budget, of the epochs predicted to
fit in it on this machine: estimated from the first steps' speed, then after every epoch
(`TimeBudget`).
So one command gives the same shape of schedule on a CPU three times slower, in a third of the
steps. The linear decay's zero point (`decay_steps=auto`) follows the same prediction.
"""

from __future__ import annotations

import logging

import tensorflow as tf
from omegaconf import DictConfig

from translator.training.schedules import LinearDecaySchedule

log = logging.getLogger(__name__)

# Batches the input pipeline may have prepared ahead of the step the model is at: a stage end
# closer than this to the current step is no longer moved, so the step where the data switch
# happened is the step recorded (and replayed when a run resumes).
PIPELINE_LEAD = 64

NEVER = 2**62  # a stage end that is never reached


class StepPlan:
    """The run's warm-up, data stages (BiT end, concatenation start and end), decay end and
    averaging window, following its length.

    Args:
        cfg: the run's config (`train` and `data`).
        steps_per_epoch: optimizer steps per epoch.
        schedule: the learning-rate schedule; its warm-up and zero point move when it is a
            `LinearDecaySchedule` with `warmup_fraction` or `decay_steps=auto`.
        bidirectional_end: the step variable the training stream stops adding reversed pairs
            at (`run_batches`), or None without bidirectional training.
        concat_start: the step variable the training stream starts joining pairs at, or None
            when they are joined from the start (or never).
        concat_end: the step variable it stops joining pairs at, or None when they are joined
            to the end (or never).
    """

    def __init__(self, cfg: DictConfig, steps_per_epoch: int, schedule=None,
                 bidirectional_end=None, concat_start=None, concat_end=None):  # fmt: skip
        self.train, self.data = cfg.train, cfg.data
        self.steps_per_epoch = steps_per_epoch
        linear = isinstance(schedule, LinearDecaySchedule)
        self.schedule = schedule if linear else None
        self.auto_decay = linear and self.train.decay_steps == "auto"
        # Each data stage: the state key, its step variable and its fraction of the run.
        self.stages = [(key, variable, fraction) for key, variable, fraction in (
            ("bidirectional_steps", bidirectional_end, self.data.bidirectional_fraction),
            ("concat_steps", concat_start, self.data.concat_from),
            ("concat_end_steps", concat_end, self.data.concat_until),
        ) if variable is not None and fraction]  # fmt: skip
        self.predicted_epochs = int(self.train.epochs)

    @property
    def follows_length(self) -> bool:
        """Whether anything here depends on the run's predicted length."""
        fractions = (self.train.warmup_fraction, self.train.average_fraction)
        return self.auto_decay or any(fractions) or bool(self.stages)

    def update(self, predicted_epochs: int, step: int) -> dict:
        """Set what follows the run's length to `predicted_epochs` (at most `train.epochs`) when
        the model is at optimizer step `step`; returns the settings, for the logs."""
        self.predicted_epochs = epochs = max(1, min(int(predicted_epochs), self.train.epochs))
        total = epochs * self.steps_per_epoch
        settings = {"predicted_steps": total}
        if self.train.warmup_fraction and self.schedule is not None:
            # Before the zero point, which is kept past the warm-up.
            settings["warmup_steps"] = self._move_warmup(total, step)
        if self.auto_decay:
            settings["decay_steps"] = self.schedule.set_total_steps(total)
        for key, variable, fraction in self.stages:
            settings[key] = self._move_stage(variable, fraction, total, step)
        if self.train.average_fraction:
            settings["average_epochs"] = self.average_window(epochs)
        return settings

    def _move_warmup(self, total: int, step: int) -> int:
        """The warm-up follows the prediction until it is over (a shorter one than the steps
        already taken ends now)."""
        wanted = round(self.train.warmup_fraction * total)
        wanted = min(max(wanted, self.train.warmup_min_steps), self.train.warmup_steps)
        if step < self.schedule.warmup_steps:
            return self.schedule.set_warmup_steps(max(wanted, step + 1))
        return self.schedule.warmup_steps

    @staticmethod
    def _move_stage(variable: tf.Variable, fraction: float, total: int, step: int) -> int:
        """A stage's switch step follows the prediction before training starts, then while it
        is further ahead than the batches the pipeline may already hold (and comes no sooner
        than that)."""
        current = int(variable.numpy())
        wanted = round(fraction * total)
        if step > 0:
            if current < step + PIPELINE_LEAD:
                return current  # the pipeline may have passed it already
            wanted = max(wanted, step + PIPELINE_LEAD)  # as soon as it safely can
        variable.assign(wanted)
        return wanted

    def average_window(self, epochs: int) -> int:
        """Epochs to average at the end of a run of `epochs` (0: no averaging)."""
        if self.train.average_fraction:
            return max(1, round(self.train.average_fraction * epochs))
        return int(self.train.average_last)

    def epochs_to_keep(self) -> int:
        """Epoch weights to keep on disk: the window, and while it is a fraction of a predicted
        length, two more (the prediction may still grow)."""
        window = self.average_window(self.predicted_epochs)
        return window + 2 if self.train.average_fraction else window

    def state(self) -> dict:
        """What a resumed run needs beyond the schedule's own variables."""
        state = {"predicted_epochs": self.predicted_epochs}
        for key, variable, _ in self.stages:
            state[key] = int(variable.numpy())
        if self.schedule is not None:
            state["warmup_steps"] = self.schedule.warmup_steps
        return state

    def restore(self, state: dict) -> None:
        self.predicted_epochs = state.get("predicted_epochs", self.predicted_epochs)
        for key, variable, _ in self.stages:
            if key in state:
                variable.assign(state[key])
        if self.schedule is not None and "warmup_steps" in state:
            self.schedule.set_warmup_steps(state["warmup_steps"])


def bidirectional_variable(data: DictConfig, resumed_state: dict) -> tf.Variable | None:
    """The step at which the training stream stops adding reversed pairs
    (`data.bidirectional_fraction`, else None): see `stage_variable`."""
    if not data.bidirectional_fraction:
        return None
    return stage_variable("bidirectional_steps", "bidirectional_end", resumed_state)


def concat_variable(data: DictConfig, resumed_state: dict) -> tf.Variable | None:
    """The step at which the training stream starts joining pairs (`data.concat_from`; None
    when pairs are joined from the start or never): see `stage_variable`."""
    if not (data.concat and data.concat_from):
        return None
    return stage_variable("concat_steps", "concat_start", resumed_state)


def concat_end_variable(data: DictConfig, resumed_state: dict) -> tf.Variable | None:
    """The step at which the training stream stops joining pairs (`data.concat_until`; None
    when pairs are joined to the end or never): see `stage_variable`."""
    if not (data.concat and data.concat_until < 1):
        return None
    return stage_variable("concat_end_steps", "concat_end", resumed_state)


def stage_variable(key: str, name: str, resumed_state: dict) -> tf.Variable:
    """A data stage's switch step as a variable the pipeline reads: first never (the plan sets
    it), or what an interrupted run had set (its plan's `key`)."""
    step = resumed_state.get("plan", {}).get(key, NEVER)
    return tf.Variable(step, dtype=tf.int64, trainable=False, name=name)
