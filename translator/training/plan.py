"""What a run counts in steps or epochs, set from how long the run is predicted to be.

A config gives the warm-up, the bidirectional (BiT) stage and the averaging window either as
counts (`train.warmup_steps`, `data.bidirectional_steps`, `train.average_last`) or as fractions of
the run (`train.warmup_fraction`, `data.bidirectional_fraction`, `train.average_fraction`). A
fraction is of epochs x steps per epoch; with a time budget, of the epochs predicted to fit in it
on this machine: estimated from the first steps' speed, then after every epoch (`TimeBudget`).
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
    """The run's warm-up, BiT stage end, decay end and averaging window, following its length.

    Args:
        cfg: the run's config (`train` and `data`).
        steps_per_epoch: optimizer steps per epoch.
        schedule: the learning-rate schedule; its warm-up and zero point move when it is a
            `LinearDecaySchedule` with `warmup_fraction` or `decay_steps=auto`.
        bidirectional_end: the step variable the training stream switches at (`run_batches`),
            or None without bidirectional training.
    """

    def __init__(
        self, cfg: DictConfig, steps_per_epoch: int, schedule=None, bidirectional_end=None
    ):
        self.train, self.data = cfg.train, cfg.data
        self.steps_per_epoch = steps_per_epoch
        linear = isinstance(schedule, LinearDecaySchedule)
        self.schedule = schedule if linear else None
        self.auto_decay = linear and self.train.decay_steps == "auto"
        self.bidirectional_end = bidirectional_end
        self.predicted_epochs = int(self.train.epochs)

    @property
    def follows_length(self) -> bool:
        """Whether anything here depends on the run's predicted length."""
        fractions = (self.train.warmup_fraction, self.data.bidirectional_fraction,
                     self.train.average_fraction)  # fmt: skip
        return self.auto_decay or any(fractions)

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
        if self.data.bidirectional_fraction and self.bidirectional_end is not None:
            settings["bidirectional_steps"] = self._move_bidirectional_end(total, step)
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

    def _move_bidirectional_end(self, total: int, step: int) -> int:
        """The BiT stage follows the prediction before training starts, then while its end is
        further ahead than the batches the pipeline may already hold (and ends no sooner than
        that)."""
        current = int(self.bidirectional_end.numpy())
        wanted = round(self.data.bidirectional_fraction * total)
        if step > 0:
            if current < step + PIPELINE_LEAD:
                return current  # the pipeline may have passed it already
            wanted = max(wanted, step + PIPELINE_LEAD)  # as soon as it safely can
        self.bidirectional_end.assign(wanted)
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
        if self.bidirectional_end is not None:
            state["bidirectional_steps"] = int(self.bidirectional_end.numpy())
        if self.schedule is not None:
            state["warmup_steps"] = self.schedule.warmup_steps
        return state

    def restore(self, state: dict) -> None:
        self.predicted_epochs = state.get("predicted_epochs", self.predicted_epochs)
        if self.bidirectional_end is not None and "bidirectional_steps" in state:
            self.bidirectional_end.assign(state["bidirectional_steps"])
        if self.schedule is not None and "warmup_steps" in state:
            self.schedule.set_warmup_steps(state["warmup_steps"])


def bidirectional_variable(data: DictConfig, resumed_state: dict) -> tf.Variable | None:
    """The step at which the training stream stops adding reversed pairs, as a variable the
    pipeline reads: `data.bidirectional_steps`, or for a fraction first never (the plan sets it),
    or what an interrupted run had set."""
    if not data.bidirectional_fraction:
        return None
    end = resumed_state.get("plan", {}).get("bidirectional_steps", NEVER)
    return tf.Variable(end, dtype=tf.int64, trainable=False, name="bidirectional_end")
