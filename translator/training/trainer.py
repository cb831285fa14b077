"""Train a Transformer from a composed config and leave a self-contained run directory
(see `translator.run_dir` for what it holds).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import partial
from typing import Any

import keras
import tensorflow as tf
from omegaconf import DictConfig, OmegaConf

from translator.config import validate
from translator.data import load_corpus
from translator.data.prepare import TrainingData, prepare
from translator.errors import CorpusError, TranslatorError, first_line
from translator.model.transformer import Transformer
from translator.run_dir import RunDir
from translator.runtime import across_workers, agreed_clock, start_runtime
from translator.tokenizer import TokenizerPair
from translator.training.adapt import freeze, initialize, source_run, source_tokenizers
from translator.training.batches import run_batches
from translator.training.callbacks import ResumedEpoch, TargetTokens, make_callbacks
from translator.training.feed import StreamFeed
from translator.training.losses import MaskedCrossEntropy
from translator.training.metrics import MaskedAccuracy
from translator.training.model import TrainingTransformer
from translator.training.plan import (
    StepPlan,
    bidirectional_variable,
    concat_end_variable,
    concat_variable,
)
from translator.training.quality import quality_callback
from translator.training.rdrop import RDropTransformer
from translator.training.schedules import PerUpdate, build_schedule, describe_schedule
from translator.training.workers import (
    check_same_start,
    is_multi_worker,
    peers_alive,
    worker_run_dir,
    worker_share,
)

log = logging.getLogger(__name__)

# Settings that leave the experiment as it is, which a resumed run may change freely: where
# files live, what is printed or logged, threads, timeouts, how often it backs up, in-memory
# caching, and the decode settings inference starts from (training does not decode).
FREE_TO_CHANGE = (
    "run_name", "run_dir", "paths", "decode", "data.tfds_data_dir", "data.network_check_host",
    "data.cache", "tokenizer.num_threads", "train.allow_changes", "train.verbose",
    "train.tensorboard", "train.threads", "train.worker_timeout_seconds",
    "train.backup_every_steps", "train.jit_compile",
)  # fmt: skip
# Settings built into the run's tokenizers and weights: `train.allow_changes` cannot accept them.
FIXED = ("tokenizer", "model")


def prepare_training(cfg: DictConfig, run: RunDir) -> TrainingData:
    """The prepared training data (`translator.data.prepare`), with the run's tokenizers when
    it has them (resuming), else with those the preparation learned or reused, saved in it."""
    given = None
    saved = not TokenizerPair.missing_files(run.tokenizer_dir)
    if saved:
        log.info("reusing the tokenizers in %s", run.tokenizer_dir)
        given = TokenizerPair.load(run.tokenizer_dir)
    elif cfg.train.init_from:
        log.info("using the tokenizers of %s", cfg.train.init_from)
        given = source_tokenizers(cfg)
    training = prepare(cfg, given)
    if not saved:
        training.tokenizers.save(run.tokenizer_dir)
    run.save_preparation(training.record())
    return training


def check_settings(cfg: DictConfig) -> None:
    """Refuse settings that cannot work, before any data is read or anything written: each
    group's own checks (translator/config.py), then those that span groups."""
    validate(cfg)
    bidirectional = cfg.data.bidirectional_steps or cfg.data.bidirectional_fraction
    if bidirectional and not cfg.tokenizer.shared:
        raise TranslatorError(
            "bidirectional training (data.bidirectional_steps or data.bidirectional_fraction) "
            "needs one vocabulary for both languages: add tokenizer=shared"
        )
    check_accumulation(cfg.train)
    if cfg.model.share_embeddings and not cfg.tokenizer.shared:
        raise TranslatorError(
            "model.share_embeddings=true needs one vocabulary for both languages: "
            "add tokenizer=shared"
        )


def build_model(
    cfg: DictConfig, tokenizers: TokenizerPair, example_batch, schedule=None
) -> Transformer:
    """The compiled model; `schedule` defaults to the one `cfg.train` describes."""
    consistency = float(cfg.train.consistency)
    model_class = RDropTransformer if consistency else TrainingTransformer
    model = model_class.from_settings(
        cfg.model, tokenizers.source.vocab_size, tokenizers.target.vocab_size
    )
    model(example_batch[0])  # create the weights
    freeze(model, list(cfg.train.freeze))
    if consistency:
        model.consistency = consistency
    if schedule is None:
        schedule = build_schedule(cfg.model.d_model, cfg.train)
    accumulate = int(cfg.train.accumulate_steps)
    optimizer = keras.optimizers.Adam(
        learning_rate=PerUpdate(schedule, accumulate) if accumulate > 1 else schedule,
        beta_1=cfg.train.beta_1,
        beta_2=cfg.train.beta_2,
        epsilon=cfg.train.epsilon,
        clipnorm=cfg.train.clipnorm,
        gradient_accumulation_steps=accumulate if accumulate > 1 else None,
    )
    model.compile(
        optimizer=optimizer,
        loss=MaskedCrossEntropy(cfg.train.label_smoothing),
        metrics=[MaskedAccuracy(), TargetTokens()],
        jit_compile=bool(cfg.train.jit_compile),
    )
    return model


def check_accumulation(train: DictConfig, replicas: int = 1) -> None:
    """Gradient accumulation uses the Keras optimizer's own, which works on one device and
    cannot be combined with loss scaling or a multi-replica strategy (keras-team/keras#20582)."""
    if train.accumulate_steps == 1:
        return
    if train.precision == "mixed_float16":
        raise TranslatorError(
            "train.accumulate_steps>1 cannot be combined with train.precision=mixed_float16 "
            "(Keras's loss-scale optimizer refuses accumulation); use mixed_bfloat16 or float32"
        )
    if train.distribution in ("mirrored", "multi_worker") or replicas > 1:
        raise TranslatorError(
            f"train.accumulate_steps>1 cannot be combined with several replicas (train."
            f"distribution={train.distribution}, {replicas} replica(s)): Keras's gradient "
            "accumulation fails under tf.distribute (keras-team/keras#20582); raise "
            "data.batch_tokens instead"
        )


def make_plan(cfg, steps_per_epoch: int, schedule, stages: dict, resumed: dict) -> StepPlan:
    """The run's plan: as an interrupted run left it, or for a new run, sized to `train.epochs`
    until a time budget predicts otherwise. `stages`: the data stages' step variables."""
    plan = StepPlan(cfg, steps_per_epoch, schedule, **stages)
    if resumed:
        plan.restore(resumed.get("plan", {}))
    else:
        log.info("plan: %s", plan.update(cfg.train.epochs, step=0))
    return plan


def check_run_dir(run: RunDir) -> None:
    """Refuse to train over a finished run (its weights would be overwritten)."""
    if run.is_finished():
        raise TranslatorError(
            f"{run} already holds a finished run; pick another run_name=... "
            "(or delete that folder to retrain it)"
        )


def matches(key: str, prefixes) -> bool:
    """Whether the dotted `key` is one of `prefixes` or inside one (`train` holds train.epochs)."""
    return any(key == prefix or key.startswith(prefix + ".") for prefix in prefixes)


def flatten(node: dict, prefix: str = "") -> dict[str, Any]:
    """A nested config as {dotted key: value}; lists are values."""
    flat = {}
    for key, value in node.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def experiment_changes(old: dict, new: dict, allowed=()) -> list[tuple[str, Any, Any]]:
    """(key, old value, new value) of each setting in which the resolved config `new` differs
    from `old` and changes the experiment: not in FREE_TO_CHANGE, nor in `allowed` unless it
    is FIXED. A key one of them lacks (added to the code since the run began) is not compared."""

    def refused(key: str) -> bool:
        if matches(key, FREE_TO_CHANGE):
            return False
        return matches(key, FIXED) or not matches(key, allowed)

    old, new = flatten(old), flatten(new)
    changed = [key for key in old if key in new and old[key] != new[key]]
    return [(key, old[key], new[key]) for key in changed if refused(key)]


def setting(value) -> str:
    """A value as a command-line override writes it."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return f"[{','.join(map(setting, value))}]"
    return str(value)


def changes_refused(run: RunDir, changes: list[tuple[str, Any, Any]]) -> TranslatorError:
    """One line naming the changed settings, their old and new values, and the ways out."""
    started = ", ".join(f"{key}={setting(old)}" for key, old, _ in changes)
    now = ", ".join(setting(new) for _, _, new in changes)
    keys = [key for key, _, _ in changes if not matches(key, FIXED)]
    ways = "resume with the same settings, use another run_name"
    if keys:
        ways += f", or pass train.allow_changes=[{','.join(keys)}] for settings that may change"
    if len(keys) < len(changes):
        ways += "; tokenizer.* and model.* never change within a run"
    return TranslatorError(
        f"{run}: this run was started with {started}; this command has {now} ({ways})"
    )


def check_resume(cfg: DictConfig, run: RunDir) -> None:
    """Resume a run only as the experiment it began as: a run with something to resume (its
    tokenizers or a backup) refuses a command whose resolved config differs from its
    config.yaml in a setting that changes the experiment, except those `train.allow_changes`
    names (e.g. a longer train.max_minutes). The run's config.yaml then records the new values
    (`prepare_data`)."""
    started = run.backup_dir.exists() or not TokenizerPair.missing_files(run.tokenizer_dir)
    if not (started and run.config_file.exists()):
        return
    old = OmegaConf.to_container(run.load_config(), resolve=True)
    new = OmegaConf.to_container(cfg, resolve=True)
    refused = experiment_changes(old, new, list(cfg.train.allow_changes))
    if refused:
        raise changes_refused(run, refused)
    for key, before, after in experiment_changes(old, new):
        log.warning("resuming %s with %s=%s (was %s)", run, key, setting(after), setting(before))


def train(cfg: DictConfig) -> dict:
    """Train the model `cfg` describes and return the final metrics.

    Resumes from the run directory's backup when an earlier run of it was interrupted, if the
    command's settings are the run's (`check_resume`). Holds the run's lock meanwhile, so a
    second command on the same run is refused (`RunDir.locked`). Returns a dict with epochs,
    wall time, losses, accuracies and tokens/s. One of several workers
    (`train.distribution=multi_worker`) writes the run directory only if it is the chief.
    """
    start = time.perf_counter()  # the time budget counts data preparation too
    run = RunDir(cfg.run_dir)
    check_run_dir(run)
    check_settings(cfg)
    if cfg.train.init_from:
        source_run(cfg)  # finished, with the same model and vocabulary settings
    strategy = start_runtime(cfg.train, cfg.seed)
    check_accumulation(cfg.train, strategy.num_replicas_in_sync)
    with worker_run_dir(run, strategy) as own:  # the chief holds the run's lock
        check_run_dir(run)  # again, locked: another command may have finished it meanwhile
        check_resume(cfg, run)
        own.path.mkdir(parents=True, exist_ok=True)
        check_same_start(strategy, run, own.resumed_state().get("optimizer_steps", 0))
        return train_in(cfg, own, strategy, start, run)


def train_in(cfg: DictConfig, run: RunDir, strategy, start: float, shared: RunDir | None = None
             ) -> dict:  # fmt: skip
    """`train` in the run directory `run`, under `strategy`, with the budget's clock at `start`.
    `shared` is the run directory itself when `run` is a worker's temporary copy: every worker
    saves its data positions in its backup folder."""
    shared = shared or run
    resumed = run.resumed_state()
    run.complete_history()  # the line of a backed-up epoch that a kill kept from being logged
    tokenizers, batches, stages, valid_corpus = prepare_data(cfg, run, strategy, resumed)

    # Model, optimizer, schedule, and the plan of what follows the run's length.
    with strategy.scope():
        max_steps = cfg.train.epochs * batches.steps_per_epoch
        schedule = build_schedule(cfg.model.d_model, cfg.train, max_steps)
        # Built on a validation batch: an iterator over the training stream would advance its
        # shuffle's seeds by however many passes its prefetching read, before fit starts.
        model = build_model(cfg, tokenizers, next(iter(batches.validation)), schedule)
        if cfg.train.init_from and not resumed:  # resuming: the backup holds the weights
            initialize(model, cfg, run)
    plan = make_plan(cfg, batches.steps_per_epoch, schedule, stages, resumed)
    run.save_model_settings(model.get_config())
    log.info("model: %s, %d parameters", cfg.model.name, model.count_params())

    # The loop. A run that had stopped training before it was interrupted runs no epoch: fit
    # only ends it (averaging), then metrics are written. Workers share one clock.
    epochs = run.resumed_epochs() if resumed.get("stopped") else cfg.train.epochs
    validation_batches = cfg.train.validation_steps or int(batches.validation.cardinality())
    clock = agreed_clock(strategy, start) if is_multi_worker(strategy) else None
    resume_at = (run.resumed_epochs(), resumed.get("step_in_epoch", 0))
    feed = data_feed(batches, shared, resumed, resume_at, worker_share(strategy)[0])
    quality = quality_callback(cfg, tokenizers, valid_corpus, run)
    callbacks = make_callbacks(cfg, run, 0.0 if clock else start, schedule, plan,
                               validation_batches, clock, feed, quality)  # fmt: skip
    fit_start = time.perf_counter()
    with peers_alive(strategy), damaged_shards(batches):
        history = fit(model, batches, feed, cfg, callbacks, epochs, resume_at)
    seconds = time.perf_counter() - fit_start

    if is_multi_worker(strategy):  # every worker has saved its last data position
        across_workers(strategy, 0.0)
    # Final figures.
    with strategy.scope():
        metrics = summarize(history.history, seconds, model, run)
    run.save_metrics(metrics)
    run.remove_backup()  # finished: a restart now refuses instead of resuming
    log.info("finished: %s", metrics)
    return metrics


def prepare_data(cfg: DictConfig, run: RunDir, strategy, resumed: dict):
    """The training data prepared (or an earlier preparation reused), the validation corpus
    read, the tokenizers saved with the resolved config, and the run's batches:
    (tokenizers, RunBatches, the data stages' step variables by name, the validation corpus)."""
    training = prepare_training(cfg, run)
    valid_corpus = load_corpus(cfg.data, "validation")
    log.info("data: %d training pairs, %d validation pairs",
             sum(p.pairs for p in training.prepared), len(valid_corpus))  # fmt: skip
    run.save_config(cfg)
    stages = {"bidirectional_end": bidirectional_variable(cfg.data, resumed),
              "concat_start": concat_variable(cfg.data, resumed),
              "concat_end": concat_end_variable(cfg.data, resumed)}  # fmt: skip
    batches = run_batches(cfg, training, valid_corpus, strategy.num_replicas_in_sync,
                          worker=worker_share(strategy), **stages)  # fmt: skip
    log.info(describe_schedule(cfg.train, batches.steps_per_epoch))
    return training.tokenizers, batches, stages, valid_corpus


def data_feed(batches, run: RunDir, resumed: dict, resume_at, worker: int) -> StreamFeed:
    """The run's training stream, at the position an interrupted run saved for this worker
    (`StreamFeed`, in `run`'s backup folder, which every worker writes its own position to);
    without one (a worker killed before it saved), the stream replayed up to where the run was,
    re-reading what it had trained on."""
    feed = StreamFeed(batches.stream(), worker, run.backup_dir)
    steps = resumed.get("optimizer_steps", 0)
    if not steps:
        return feed
    position = feed.saved(steps)
    if position is not None:
        feed.restore(position)
        return feed
    log.warning("worker %d: no saved data position at update %d: replaying the stream to it",
                worker, steps)  # fmt: skip
    epoch, step = resume_at
    return StreamFeed(batches.train_from(epoch * batches.steps_per_epoch + step), worker,
                      run.backup_dir)  # fmt: skip


@contextmanager
def damaged_shards(batches) -> Iterator[None]:
    """A shard that fails its checksum while training is read: one error line naming it."""
    try:
        yield
    except tf.errors.DataLossError as error:
        raise CorpusError(
            f"a shard of the prepared training data is damaged ({first_line(error)})"
            f"; delete {' and '.join(batches.sources)} to prepare again"
        ) from None


def fit(model, batches, feed: StreamFeed, cfg: DictConfig, callbacks: list, epochs: int,
        resume_at=(0, 0)):  # fmt: skip
    """Keras fit over the endless training stream (`feed`, already at the run's position), an
    epoch's batches at a time, from `resume_at` = (epochs done, updates done in the next one)
    of an interrupted run."""
    epoch, step = resume_at
    verbose = keras_verbosity(cfg.train.verbose)
    run = partial(model.fit, feed.dataset(), validation_data=batches.validation,
                  verbose=verbose, validation_steps=cfg.train.validation_steps,
                  shuffle=False)  # the dataset shuffles itself, with a seed  # fmt: skip
    if step:
        return fit_from_within_epoch(model, batches, run, callbacks, epochs, resume_at, verbose)
    return run(epochs=epochs, callbacks=callbacks, steps_per_epoch=batches.batches_per_epoch)


def fit_from_within_epoch(model, batches, run, callbacks, epochs, resume_at, verbose):
    """`fit` resumed at update `step` of epoch `epoch`: two fits, the epoch's remaining batches
    then the later epochs, with one `ResumedEpoch` list carrying the callbacks through both as
    one training run."""
    epoch, step = resume_at
    left = batches.batches_per_epoch - step * batches.accumulate
    callbacks = ResumedEpoch(callbacks, add_history=True, add_progbar=verbose != 0,
                             verbose=verbose, epochs=epochs, model=model, steps=left)  # fmt: skip
    run(epochs=epoch + 1, callbacks=callbacks, steps_per_epoch=left)
    callbacks.last_part = True
    if model.stop_training or epoch + 1 >= epochs:
        callbacks.on_train_end()
        return model.history
    model._initial_epoch = None  # set by the backup's restore: the first part began there
    callbacks.set_params({**callbacks.params, "steps": batches.batches_per_epoch})
    return run(initial_epoch=epoch + 1, epochs=epochs, callbacks=callbacks,
               steps_per_epoch=batches.batches_per_epoch)  # fmt: skip


def keras_verbosity(verbose: str | int) -> int:
    """auto: a progress bar on a terminal; in a log file only the run's own line per epoch."""
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 0
    return int(verbose)


def summarize(history: dict, seconds: float, model: Transformer, run: RunDir) -> dict:
    """The run's final figures: its last epoch's (from history.jsonl, so across resumes)."""
    last = (run.history() or [{}])[-1]
    return {
        "run_dir": str(run),
        "epochs_this_session": len(history.get("loss", [])),
        "optimizer_steps": int(model.optimizer.iterations.numpy()),
        "wall_seconds": round(seconds, 1),
        "loss": last.get("loss"),
        "val_loss": last.get("val_loss"),
        "accuracy": last.get("masked_accuracy"),
        "val_accuracy": last.get("val_masked_accuracy"),
        "tokens_per_second": last.get("tokens_per_second"),
        "parameters": int(model.count_params()),
        "replicas": int(tf.distribute.get_strategy().num_replicas_in_sync),
        "precision": keras.mixed_precision.global_policy().name,
    }
