"""Train a Transformer from a composed config and leave a self-contained run directory
(see `translator.run_dir` for what it holds).
"""

from __future__ import annotations

import logging
import sys
import time

import keras
import tensorflow as tf
from omegaconf import DictConfig

from translator.config import validate
from translator.data import load_corpus
from translator.errors import TranslatorError
from translator.model.transformer import Transformer
from translator.run_dir import RunDir
from translator.runtime import start_runtime
from translator.tokenizer import TokenizerPair, train_tokenizers
from translator.training.batches import run_batches
from translator.training.callbacks import TargetTokens, make_callbacks
from translator.training.losses import MaskedCrossEntropy
from translator.training.metrics import MaskedAccuracy
from translator.training.model import TrainingTransformer
from translator.training.plan import StepPlan, bidirectional_variable
from translator.training.rdrop import RDropTransformer
from translator.training.schedules import build_schedule, describe_schedule

log = logging.getLogger(__name__)


def prepare_tokenizers(cfg: DictConfig, run: RunDir, train_corpus) -> TokenizerPair:
    """Reuse the run's tokenizers when resuming; otherwise learn and save them."""
    if not TokenizerPair.missing_files(run.tokenizer_dir):
        log.info("reusing the tokenizers in %s", run.tokenizer_dir)
        return TokenizerPair.load(run.tokenizer_dir)
    pair = train_tokenizers(train_corpus.source, train_corpus.target, cfg.tokenizer)
    pair.save(run.tokenizer_dir)
    return pair


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
    if consistency:
        model.consistency = consistency
    if schedule is None:
        schedule = build_schedule(cfg.model.d_model, cfg.train)
    optimizer = keras.optimizers.Adam(
        learning_rate=schedule,
        beta_1=cfg.train.beta_1,
        beta_2=cfg.train.beta_2,
        epsilon=cfg.train.epsilon,
        clipnorm=cfg.train.clipnorm,
    )
    model.compile(
        optimizer=optimizer,
        loss=MaskedCrossEntropy(cfg.train.label_smoothing),
        metrics=[MaskedAccuracy(), TargetTokens()],
        jit_compile=bool(cfg.train.jit_compile),
    )
    return model


def make_plan(cfg, steps_per_epoch: int, schedule, bidirectional_end, resumed: dict) -> StepPlan:
    """The run's plan: as an interrupted run left it, or for a new run, sized to `train.epochs`
    until a time budget predicts otherwise."""
    plan = StepPlan(cfg, steps_per_epoch, schedule, bidirectional_end)
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


def train(cfg: DictConfig) -> dict:
    """Train the model `cfg` describes and return the final metrics.

    Resumes from the run directory's backup when an earlier run of it was interrupted. Returns a
    dict with epochs, wall time, losses, accuracies and tokens/s.
    """
    start = time.perf_counter()  # the time budget counts data preparation too
    run = RunDir(cfg.run_dir)
    check_run_dir(run)
    check_settings(cfg)
    run.path.mkdir(parents=True, exist_ok=True)
    strategy = start_runtime(cfg.train, cfg.seed)
    resumed = run.resumed_state()
    tokenizers, batches, bidirectional_end = prepare_data(
        cfg, run, strategy.num_replicas_in_sync, resumed
    )

    # Model, optimizer, schedule, and the plan of what follows the run's length.
    with strategy.scope():
        max_steps = cfg.train.epochs * batches.steps_per_epoch
        schedule = build_schedule(cfg.model.d_model, cfg.train, max_steps)
        # Built on a validation batch: an iterator over the training stream would advance its
        # shuffle's seeds by however many passes its prefetching read, before fit starts.
        model = build_model(cfg, tokenizers, next(iter(batches.validation)), schedule)
    plan = make_plan(cfg, batches.steps_per_epoch, schedule, bidirectional_end, resumed)
    run.save_model_settings(model.get_config())
    log.info("model: %s, %d parameters", cfg.model.name, model.count_params())

    # The loop. A run that had stopped training before it was interrupted runs no epoch: fit
    # only ends it (averaging), then metrics are written.
    epochs = run.resumed_epochs() if resumed.get("stopped") else cfg.train.epochs
    validation_batches = cfg.train.validation_steps or int(batches.validation.cardinality())
    callbacks = make_callbacks(cfg, run, start, schedule, plan, validation_batches)
    fit_start = time.perf_counter()
    history = fit(model, batches, cfg, callbacks, epochs)
    seconds = time.perf_counter() - fit_start

    # Final figures.
    with strategy.scope():
        metrics = summarize(history.history, seconds, model, run)
    run.save_metrics(metrics)
    run.remove_backup()  # finished: a restart now refuses instead of resuming
    log.info("finished: %s", metrics)
    return metrics


def prepare_data(cfg: DictConfig, run: RunDir, replicas: int, resumed: dict):
    """The corpora read, the tokenizers learned (or reused) and saved with the resolved config,
    and the run's batches: (tokenizers, RunBatches, the BiT switch variable or None)."""
    corpora = load_corpus(cfg.data, "train"), load_corpus(cfg.data, "validation")
    log.info("data: %d training pairs, %d validation pairs", *map(len, corpora))
    tokenizers = prepare_tokenizers(cfg, run, corpora[0])
    run.save_config(cfg)
    bidirectional_end = bidirectional_variable(cfg.data, resumed)
    batches = run_batches(
        cfg, corpora, tokenizers, replicas, run.resumed_epochs(), bidirectional_end
    )
    log.info(describe_schedule(cfg.train, batches.steps_per_epoch))
    return tokenizers, batches, bidirectional_end


def fit(model, batches, cfg: DictConfig, callbacks: list, epochs: int):
    """Keras fit over the endless training stream, `steps_per_epoch` at a time."""
    return model.fit(
        batches.train,
        validation_data=batches.validation,
        epochs=epochs,
        steps_per_epoch=batches.steps_per_epoch,
        validation_steps=cfg.train.validation_steps,
        callbacks=callbacks,
        verbose=keras_verbosity(cfg.train.verbose),
        shuffle=False,  # the dataset shuffles itself, with a seed
    )


def keras_verbosity(verbose: str | int) -> int:
    """auto: a progress bar on a terminal; in a log file only the run's own line per epoch."""
    if verbose == "auto":
        return 1 if sys.stdout.isatty() else 0
    return int(verbose)


def summarize(history: dict, seconds: float, model: Transformer, run: RunDir) -> dict:
    """The run's final figures: its last epoch's (from history.jsonl, so across resumes)."""
    last = run.history()[-1] if run.history_file.exists() else {}
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
