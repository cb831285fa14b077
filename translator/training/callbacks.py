"""Training callbacks: this project's own, and `make_callbacks`, the list a run trains with."""

from __future__ import annotations

import json
import logging
import math
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import keras
from keras import ops
from omegaconf import DictConfig

from translator.atomic import save_weights_atomic, write_atomic
from translator.run_dir import RunDir
from translator.tokenizer import PAD_ID
from translator.training.quality import BestSoFar, monitor
from translator.training.schedules import LinearDecaySchedule

log = logging.getLogger(__name__)


@keras.saving.register_keras_serializable(package="translator")
class TargetTokens(keras.metrics.Metric):
    """Counts the non-padding target tokens seen this epoch (for tokens/s)."""

    def __init__(self, name="tokens", **kwargs):
        super().__init__(name=name, **kwargs)
        self.count = self.add_variable(shape=(), initializer="zeros", name="count")

    def update_state(self, y_true, y_pred, sample_weight=None):
        self.count.assign_add(ops.sum(ops.cast(ops.not_equal(y_true, PAD_ID), "float32")))

    def result(self):
        return ops.add(self.count, 0.0)  # a copy: logs must not alias the variable

    def reset_state(self):
        self.count.assign(0.0)


class Throughput(keras.callbacks.Callback):
    """Adds `epoch_seconds` and `tokens_per_second` (target tokens) to each epoch's logs."""

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def shift_epoch_start(self, seconds: float) -> None:
        """The epoch began `seconds` earlier (a run resumed within it)."""
        self._start -= seconds

    def on_epoch_end(self, epoch, logs=None):
        if logs is None:
            return
        seconds = time.perf_counter() - self._start
        logs["epoch_seconds"] = seconds
        if "tokens" in logs:
            logs["tokens_per_second"] = logs["tokens"] / seconds


class LearningRate(keras.callbacks.Callback):
    """Adds `learning_rate`, the rate the next update will use, to each epoch's logs."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            logs["learning_rate"] = float(self.model.optimizer.learning_rate)


class TimeBudget(keras.callbacks.Callback):
    """Stops training after the epoch that leaves too little time for another one.

    A run given `minutes` stops at an epoch boundary as soon as the time spent since `start`
    (a `clock()` reading, e.g. from before the data were prepared) plus the longest
    epoch so far would overrun the budget, so every later callback (checkpoints, averaging) still
    runs and the run finishes normally.

    Given a `StepPlan`, it predicts how many epochs the budget allows, first from the speed of
    the first epoch's steps `PROBE` (the first few warm up the kernels), then after every epoch
    from the median epoch time, and hands the prediction to the plan: the warm-up, BiT stage,
    decay end and averaging window then follow this machine's speed. What the plan set is
    added to the epoch's logs. `clock` defaults to `time.perf_counter`; several workers share
    one (`translator.runtime.agreed_clock`), so that they stop and plan alike.

    Attributes:
        durations: the seconds of each epoch so far (saved and restored by `RunBackup`).
        predicted: whether the first epoch's prediction was made (likewise).
    """

    PROBE = (5, 30)  # the first-epoch steps between which the speed is measured
    VALIDATION_COST = 1 / 3  # a validation batch's time, relative to a training step's

    def __init__(self, minutes: float, start: float | None = None, plan=None,
                 validation_batches: int = 0, clock: Callable[[], float] | None = None
                 ):  # fmt: skip
        super().__init__()
        self.clock = clock or (lambda: time.perf_counter())
        self.seconds = 60.0 * minutes
        self.start = start
        self.plan = plan
        self.validation_batches = validation_batches
        self.stopped_epoch = None
        self.durations = []
        self.predicted = False

    def on_train_begin(self, logs=None):
        if self.start is None:
            self.start = self.clock()
        self.durations = []
        self.predicted = False
        self._last_end = None
        self._probe_start = None

    def on_epoch_begin(self, epoch, logs=None):
        # An epoch lasts from the end of the one before (saving and averaging in between count).
        self._epoch_start = self._last_end or self.clock()

    def shift_epoch_start(self, seconds: float) -> None:
        """The epoch began `seconds` earlier (a run resumed within it)."""
        self._epoch_start -= seconds

    def on_train_batch_end(self, batch, logs=None):
        if self.predicted or self.plan is None or batch not in self.PROBE:
            return  # the prediction of the first epoch is made once
        now = self.clock()
        if batch == self.PROBE[0]:
            self._probe_start = now
            return
        if self._probe_start is None:
            return
        per_step = (now - self._probe_start) / (self.PROBE[1] - self.PROBE[0])
        steps = self.params["steps"] + self.VALIDATION_COST * self.validation_batches
        epoch_seconds = per_step * steps
        epochs = math.floor((self.seconds - (self._epoch_start - self.start)) / epoch_seconds)
        settings = self.plan.update(epochs, self._step())
        self.predicted = True
        log.info("time budget: %.2f s per step, about %d epochs fit; %s", per_step, epochs,
                 ", ".join(f"{k}={v}" for k, v in settings.items()))  # fmt: skip

    def epochs_left(self, now: float) -> int:
        """Epochs still to run: each starts only if the longest epoch so far fits after it."""
        spare = self.seconds - (now - self.start) - max(self.durations)
        if spare < 0:
            return 0
        return math.floor(spare / statistics.median(self.durations)) + 1

    def on_epoch_end(self, epoch, logs=None):
        now = self._last_end = self.clock()
        self.durations.append(now - self._epoch_start)
        self.predicted = True
        left = self.epochs_left(now)
        if self.plan is not None and left > 0:
            settings = self.plan.update(epoch + 1 + left, self._step())
            if logs is not None:
                logs.update(settings)
        if logs is not None:
            logs["budget_minutes_left"] = max(0.0, (self.seconds - (now - self.start)) / 60)
        if left == 0:
            self.stopped_epoch = epoch + 1
            self.model.stop_training = True
            log.info(
                "time budget: stopping after epoch %d (%.1f of %.1f minutes used)",
                epoch + 1,
                (now - self.start) / 60,
                self.seconds / 60,
            )

    def _step(self) -> int:
        return int(self.model.optimizer.iterations.numpy())


def epoch_record(epoch: int, logs: dict | None) -> dict:
    """The history line of `epoch` (counted from 0, as Keras does): its number and logs."""
    return {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}


class EpochSummary(keras.callbacks.Callback):
    """Appends every epoch's logs as one JSON line to the run's history (kept across resumes).

    It runs after `RunBackup`, so an epoch is logged only once a restart would resume after it:
    a kill between the two cannot log an epoch twice, and the line it kept from being written
    is in the backup (`RunDir.complete_history` appends it on resuming).
    """

    def __init__(self, run: RunDir):
        super().__init__()
        self.run = run

    def on_epoch_end(self, epoch, logs=None):
        record = epoch_record(epoch, logs)
        self.run.append_history(record)
        log.info(
            "epoch %d: %s",
            epoch + 1,
            ", ".join(f"{k}={v:.4g}" for k, v in record.items() if k != "epoch"),
        )


class SaveWeights(keras.callbacks.Callback):
    """Writes the run's `last` weights after every epoch, or its `best` ones after every epoch
    that improves the monitored score (`monitor` = (log key, min or max); by default the
    validation loss), each through a temporary file (`save_weights_atomic`): a crash mid-write
    leaves the previous complete file.

    Attributes:
        best: the best score so far (what `RunBackup` saves and restores).
    """

    def __init__(self, run: RunDir, kind: str, monitor: tuple[str, str] = ("val_loss", "min")):
        super().__init__()
        self.path = run.weights_file(kind)
        self.only_improvements = kind == "best"
        self._best = BestSoFar(*monitor)

    @property
    def best(self) -> float:
        return self._best.best

    @best.setter
    def best(self, value: float) -> None:
        self._best.best = value

    def on_epoch_end(self, epoch, logs=None):
        if self.only_improvements and not self._best.improves(logs):
            return
        save_weights_atomic(self.model, self.path)


class EarlyStoppingOn(keras.callbacks.EarlyStopping):
    """Keras's EarlyStopping, counting only the epochs whose logs hold its monitor (validation
    BLEU may be computed every few epochs): patience is in such epochs."""

    def on_epoch_end(self, epoch, logs=None):
        if (logs or {}).get(self.monitor) is not None:
            super().on_epoch_end(epoch, logs)


class AverageCheckpoints(keras.callbacks.Callback):
    """Keeps the weights of the last epochs in the run's `epochs/` folder and, when training
    ends, writes the element-wise mean of the last `plan.average_window(epochs)` to its averaged
    weights (checkpoint averaging, Vaswani et al. 2017).

    While the run's length is still a prediction, a few epochs more than its window are kept
    (`StepPlan.epochs_to_keep`). The epoch files live on disk, so an interrupted run that resumes
    still averages every kept epoch. Non-trainable state (none in this model) is averaged too.
    """

    def __init__(self, plan, run: RunDir):
        super().__init__()
        self.plan = plan
        self.run = run
        self.epochs = 0

    def on_epoch_end(self, epoch, logs=None):
        self.epochs = epoch + 1
        self.run.epochs_dir.mkdir(parents=True, exist_ok=True)
        save_weights_atomic(self.model, self.run.epoch_weights_file(epoch + 1))
        for old in self.run.epoch_weights_files()[: -self.plan.epochs_to_keep()]:
            old.unlink()

    def on_train_end(self, logs=None):
        files = self.run.epoch_weights_files()
        if not files:
            return
        # The epochs trained: this session's count, or for a run resumed only to finish, its
        # last epoch file's number.
        epochs = self.epochs or int(files[-1].name.split("_")[1].split(".")[0])
        files = files[-self.plan.average_window(epochs) :]
        final = [v.numpy() for v in self.model.weights]
        total = [0.0 * w for w in final]
        for path in files:
            self.model.load_weights(str(path))
            total = [t + v.numpy() for t, v in zip(total, self.model.weights, strict=True)]
        for variable, summed in zip(self.model.weights, total, strict=True):
            variable.assign(summed / len(files))
        path = self.run.weights_file("averaged")
        save_weights_atomic(self.model, path)
        for variable, value in zip(self.model.weights, final, strict=True):
            variable.assign(value)  # leave the model as training left it
        log.info("averaged the last %d epochs into %s", len(files), path)


class RunBackup(keras.callbacks.BackupAndRestore):
    """Keras's BackupAndRestore (weights, optimizer, epoch), plus the state of the run around
    them, so that a resumed run continues the same experiment: the time already spent and the
    epoch times of the budget, the learning rate's zero point, the best validation loss so far
    and early stopping's counters. They are saved with every backup (`run_state.json` beside
    Keras's files) and put back before the first resumed epoch.

    With `every_steps`, it also backs up every that many optimizer updates within an epoch (at
    global update numbers that are multiples of it), with what continuing mid-epoch needs: the
    updates already made in the epoch, its running metrics and seconds, and the dropout random
    generators' states. `translator.training.trainer.fit` takes the run up at that update.

    Args:
        run: the run directory (its `backup/` folder).
        budget, schedule, plan, best, early_stopping, throughput: the run's TimeBudget,
            learning-rate schedule, StepPlan, best-weights SaveWeights, EarlyStopping and
            Throughput, each None when the run has none.
        every_steps: back up every that many updates too (None: at epoch ends only).
        steps_per_epoch: updates per epoch; accumulate: batches per update.
        feed: the run's `StreamFeed`, whose position each backup saves (None: not saved).
    """

    def __init__(self, run: RunDir, budget=None, schedule=None, plan=None, best=None,
                 early_stopping=None, throughput=None, every_steps=None, steps_per_epoch=0,
                 accumulate=1, feed=None):  # fmt: skip
        # The backup stays until the trainer has written metrics.json: a crash before then
        # resumes and finishes the run (averaging, metrics) instead of leaving it half done.
        super().__init__(str(run.backup_dir), delete_checkpoint=False)
        self.state_file = run.run_state_file
        self.budget, self.schedule, self.plan = budget, schedule, plan
        self.best, self.early_stopping, self.throughput = best, early_stopping, throughput
        self.every_steps, self.steps_per_epoch = every_steps, steps_per_epoch
        self.accumulate = accumulate
        self.feed = feed
        self._pending = None
        self._epoch = 0
        self._batches = 0  # batches trained in the current epoch
        self._metrics_so_far = None  # the resumed epoch's, added after its first batch

    def on_epoch_begin(self, epoch, logs=None):
        # After every callback's on_train_begin and on_epoch_begin, which reset their own state.
        self._epoch, self._batches = epoch, 0
        self._epoch_start = time.perf_counter()
        if self._pending is not None:
            self._restore(self._pending)
            self._pending = None

    def on_train_batch_end(self, batch, logs=None):
        self._batches += 1
        if self.feed is not None:
            self.feed.trained()
        if self._metrics_so_far is not None:
            # Keras builds its metrics in the first step. Each keeps sums (a mean: a total and
            # a count), so adding the interrupted epoch's gives the whole epoch's.
            for variable, value in zip(self.model.metrics_variables, self._metrics_so_far,
                                       strict=True):  # fmt: skip
                variable.assign_add(value)
            self._metrics_so_far = None
        if not self.every_steps or self._batches % self.accumulate:
            return
        step_in_epoch = self._batches // self.accumulate
        step = self._epoch * self.steps_per_epoch + step_in_epoch
        if step % self.every_steps == 0 and step_in_epoch < self.steps_per_epoch:
            self._save_model(step_in_epoch)

    def on_epoch_end(self, epoch, logs=None):
        self._current_epoch = epoch + 1
        self._last_batch_seen = 0
        self._save_model(history=epoch_record(epoch, logs))

    def _save_model(self, step_in_epoch: int = 0, history: dict | None = None):
        # Keras's two files, each written whole (a crash mid-write keeps the previous one),
        # then the run's state, which names the update they hold (and at an epoch's end holds
        # its history line, which EpochSummary appends after this).
        completed = self._epoch + 1 if not step_in_epoch else self._epoch
        Path(self.backup_dir).mkdir(parents=True, exist_ok=True)
        save_weights_atomic(self.model, Path(self._weights_path))
        metadata = {"epoch": completed, "batch": self._batches - 1 if step_in_epoch else 0}
        write_atomic(Path(self._training_metadata_path), json.dumps(metadata))
        # stopped: training is over (budget, early stopping or the last epoch), not interrupted.
        stopped = bool(self.model.stop_training) and not step_in_epoch
        steps = int(self.model.optimizer.iterations.numpy())
        state = {"epoch": completed, "stopped": stopped, "optimizer_steps": steps}
        if step_in_epoch:
            state["step_in_epoch"] = step_in_epoch
            state["within_epoch"] = self._within_epoch_state()
        state.update(self._run_state())
        if history is not None:
            state["history"] = history
        if self.feed is not None:  # the data position of this update
            state["data"] = self.feed.save(steps)
        write_atomic(self.state_file, json.dumps(state))

    def _within_epoch_state(self) -> dict:
        """What continuing in the middle of an epoch needs beyond the weights."""
        return {
            "seconds": time.perf_counter() - self._epoch_start,
            "metrics": [v.numpy().tolist() for v in self.model.metrics_variables],
            "seeds": [g.state.numpy().tolist() for g in seed_generators(self.model)],
        }

    def _run_state(self) -> dict:
        state = {}
        if self.budget is not None:
            state["budget"] = {
                "seconds_used": self.budget.clock() - self.budget.start,
                "durations": self.budget.durations,
                "predicted": self.budget.predicted,
            }
        if isinstance(self.schedule, LinearDecaySchedule):
            state["total_steps"] = int(self.schedule.total_steps)
        if self.plan is not None:
            state["plan"] = self.plan.state()
        if self.best is not None:
            state["best_score"] = float(self.best.best)
        if self.early_stopping is not None:
            stopping = self.early_stopping
            state["early_stopping"] = {"wait": stopping.wait, "best": float(stopping.best)}
        return state

    def _load_model(self):
        super()._load_model()
        if self.state_file.exists():
            self._pending = json.loads(self.state_file.read_text())

    def _restore(self, state: dict) -> None:
        if state["epoch"] != self.model._initial_epoch:
            log.warning("resume: run state of epoch %s, backup of epoch %s; using both as found",
                        state["epoch"], self.model._initial_epoch)  # fmt: skip
        if self.budget is not None and "budget" in state:
            self.budget.start -= state["budget"]["seconds_used"]
            self.budget.durations = list(state["budget"]["durations"])
            self.budget.predicted = state["budget"].get("predicted", bool(self.budget.durations))
        if isinstance(self.schedule, LinearDecaySchedule) and "total_steps" in state:
            self.schedule.set_total_steps(state["total_steps"])
        if self.plan is not None and "plan" in state:
            self.plan.restore(state["plan"])
        best = state.get("best_score", state.get("best_val_loss"))  # older backups: the loss
        if self.best is not None and best is not None:
            self.best.best = best
        if self.early_stopping is not None and "early_stopping" in state:
            self.early_stopping.wait = state["early_stopping"]["wait"]
            self.early_stopping.best = state["early_stopping"]["best"]
        if "within_epoch" in state:
            self._restore_within_epoch(state["step_in_epoch"], state["within_epoch"])
        log.info("resumed after %s with the run's state: %s", _position(state),
                 {k: v for k, v in state.items() if k not in ("within_epoch", "history")}
                 )  # fmt: skip

    def _restore_within_epoch(self, step_in_epoch: int, within: dict) -> None:
        """The epoch so far: its batches, running metrics, seconds and dropout generators."""
        self._batches = step_in_epoch * self.accumulate
        self._metrics_so_far = within["metrics"]
        for generator, value in zip(seed_generators(self.model), within["seeds"], strict=True):
            generator.state.assign(value)
        seconds = within["seconds"]
        self._epoch_start -= seconds
        for callback in (self.budget, self.throughput):
            if callback is not None:
                callback.shift_epoch_start(seconds)


class ResumedEpoch(keras.callbacks.CallbackList):
    """Callbacks over the two fits of a run resumed within an epoch (`fit`): they see one
    training run, begun in the first and ended in the last."""

    last_part = False

    def on_train_begin(self, logs=None):
        if not self.last_part:
            super().on_train_begin(logs)

    def on_train_end(self, logs=None):
        if self.last_part:
            super().on_train_end(logs)


def _position(state: dict) -> str:
    if state.get("step_in_epoch"):
        return f"update {state['step_in_epoch']} of epoch {state['epoch'] + 1}"
    return f"epoch {state['epoch']}"


def seed_generators(model) -> list:
    """The model's random generators (dropout's), whose states the weights files do not hold."""
    return [g for layer in model._flatten_layers(include_self=True) for g in layer._seed_generators]


def make_callbacks(
    cfg: DictConfig,
    run: RunDir,
    start: float | None = None,
    schedule=None,
    plan=None,
    validation_batches: int = 0,
    clock: Callable[[], float] | None = None,
    feed=None,
    quality=None,
) -> list[keras.callbacks.Callback]:
    """The run's callbacks, in the order they must run at each epoch's end. `quality`: the
    run's `TranslationQuality` (validation BLEU), or None."""
    budget = None
    if cfg.train.max_minutes:
        # Stops at an epoch boundary: later callbacks still see that epoch, and the run ends
        # through on_train_end (averaging, metrics) like one that ran all its epochs. Before
        # LearningRate and EpochSummary, so the rate they log follows the plan it moved.
        budget = TimeBudget(cfg.train.max_minutes, start, plan, validation_batches, clock)
    key, mode = monitor(cfg.train)
    best = SaveWeights(run, "best", (key, mode))
    stopping = None
    if cfg.train.early_stopping_patience:
        stopping = EarlyStoppingOn(monitor=key, mode=mode,
                                   patience=cfg.train.early_stopping_patience)  # fmt: skip
    throughput = Throughput()
    callbacks = [throughput, *([budget] if budget else []), LearningRate()]
    if quality is not None:  # before the callbacks that read val_bleu from the logs
        callbacks.append(quality)
    callbacks += [SaveWeights(run, "last"), best, keras.callbacks.TerminateOnNaN()]
    if plan is not None and plan.average_window(plan.predicted_epochs):
        callbacks.append(AverageCheckpoints(plan, run))
    if cfg.train.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(str(run.logs_dir), update_freq="epoch"))
    if stopping:
        callbacks.append(stopping)
    # After the others, so that its backup holds every other callback's state after the epoch.
    steps_per_epoch = plan.steps_per_epoch if plan is not None else 0
    callbacks.append(RunBackup(run, budget, schedule, plan, best, stopping, throughput,
                               cfg.train.backup_every_steps, steps_per_epoch,
                               cfg.train.accumulate_steps, feed))  # fmt: skip
    # After the backup: an epoch is logged once a restart would resume after it, never twice.
    callbacks.append(EpochSummary(run))
    return callbacks
