"""Train a Transformer from a composed config and leave a self-contained run directory.

A run directory (`cfg.run_dir`) holds:
    config.yaml          the resolved config
    tokenizer/           source/target SentencePiece models
    model.json           the Transformer's constructor arguments
    last.weights.h5      weights after the latest epoch
    best.weights.h5      weights with the lowest validation loss
    averaged.weights.h5  mean of the last `train.average_last` epochs (when set)
    epochs/              the weights of those epochs
    backup/              Keras BackupAndRestore state (model + optimizer + epoch), for resuming
    logs/                TensorBoard
    history.jsonl        one line of metrics per epoch
    metrics.json         final figures (written when training ends)
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

import keras
import tensorflow as tf
from omegaconf import DictConfig

from translator.config import save_resolved
from translator.data import load_corpus, make_batches
from translator.errors import TranslatorError
from translator.model.transformer import Transformer
from translator.tokenizer import TokenizerPair, train_tokenizers
from translator.training.callbacks import (
    AverageCheckpoints,
    EpochSummary,
    LearningRate,
    TargetTokens,
    Throughput,
    TimeBudget,
)
from translator.training.losses import MaskedCrossEntropy
from translator.training.metrics import MaskedAccuracy
from translator.training.schedules import build_schedule, check_schedule

log = logging.getLogger(__name__)

PRECISIONS = ("float32", "mixed_float16", "mixed_bfloat16")


def select_strategy(train: DictConfig) -> tf.distribute.Strategy:
    """The tf.distribute strategy `train.distribution` asks for.

    auto: MirroredStrategy over the GPUs when there are several, else the default strategy.
    none: the default strategy. mirrored: MirroredStrategy over `train.devices` (or every GPU).
    multi_worker: MultiWorkerMirroredStrategy configured by the TF_CONFIG environment variable.
    """
    kind = train.distribution
    gpus = tf.config.list_logical_devices("GPU")
    if kind == "auto":
        kind = "mirrored" if len(gpus) > 1 else "none"
    if kind == "none":
        return tf.distribute.get_strategy()
    if kind == "mirrored":
        devices = list(train.get("devices") or []) or None
        cross_device_ops = None  # TensorFlow's choice: NCCL all-reduce on GPUs
        if devices and all("cpu" in d.lower() for d in devices):
            # The collective all-gather of sparse (embedding) gradients needs equal row counts on
            # every replica, which token batches do not have; reduce on one device instead.
            cross_device_ops = tf.distribute.ReductionToOneDevice()
        return tf.distribute.MirroredStrategy(devices=devices, cross_device_ops=cross_device_ops)
    if kind == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    raise TranslatorError(
        f"train.distribution={kind!r}: expected auto, none, mirrored or multi_worker"
    )


def set_threads(threads: int | None) -> None:
    """Limit TensorFlow's CPU thread pools (e.g. two runs sharing a machine, one core each)."""
    if not threads:
        return
    try:
        tf.config.threading.set_intra_op_parallelism_threads(int(threads))
        tf.config.threading.set_inter_op_parallelism_threads(int(threads))
    except RuntimeError:  # TensorFlow already started in this process (tests, notebooks)
        log.warning("train.threads=%s ignored: TensorFlow is already initialized", threads)


def set_precision(precision: str) -> None:
    if precision not in PRECISIONS:
        raise TranslatorError(f"train.precision={precision!r}: expected one of {PRECISIONS}")
    keras.mixed_precision.set_global_policy(precision)


def cpu_features(cpuinfo: str | None = None) -> dict:
    """The CPU's model name and vector extensions, from /proc/cpuinfo (empty where there is none).

    Throughput differs several-fold between CPUs with and without AVX-512, so logs and benchmark
    reports name them: figures from two machines are then never mistaken for one.
    """
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            return {}
    fields = {}
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        fields.setdefault(key.strip(), value.strip())  # the first processor's entry
    flags = set(fields.get("flags", "").split())
    vector = sorted(
        f for f in flags if f in ("avx", "avx2", "fma") or f.startswith(("avx512", "amx"))
    )
    return {"cpu_model": fields.get("model name", "unknown"), "vector_extensions": vector}


def precision_warning(precision: str, cpu: dict, gpus: int) -> str | None:
    """A warning when mixed_bfloat16 trains on a CPU without bfloat16 instructions, else None.

    Without avx512_bf16 or AMX the CPU has no bfloat16 arithmetic and the kernels emulate it, so
    the policy that trains faster on the machines a config was tuned on may be slower there.
    """
    if precision != "mixed_bfloat16" or gpus or not cpu:
        return None
    if {"avx512_bf16", "amx_bf16"} & set(cpu["vector_extensions"]):
        return None
    return (
        "train.precision=mixed_bfloat16 on a CPU without avx512_bf16 or amx_bf16: bfloat16 is "
        "emulated here and may train slower than train.precision=float32"
    )


def describe_devices(
    strategy: tf.distribute.Strategy, train: DictConfig, gpus: list, cpu: dict
) -> str:
    cpu = f"{cpu['cpu_model']}, {' '.join(cpu['vector_extensions'])}" if cpu else "unknown CPU"
    where = f"{len(gpus)} GPU(s): {[g.name for g in gpus]}" if gpus else "CPU only (no GPU visible)"
    where += f"; CPU: {cpu}"
    replicas = strategy.num_replicas_in_sync
    return (
        f"devices: {where}; strategy {type(strategy).__name__} with {replicas} replica(s); "
        f"precision {train.precision}; XLA {'on' if train.jit_compile else 'off'}"
    )


def describe_schedule(train: DictConfig, per_epoch: int) -> str:
    """One log line: how the learning rate decays, and where the zero point falls in epochs."""
    if train.get("decay", "inverse_sqrt") != "linear":
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


def prepare_tokenizers(cfg: DictConfig, run_dir: Path, train_corpus) -> TokenizerPair:
    """Reuse the run's tokenizers when resuming; otherwise learn and save them."""
    folder = run_dir / "tokenizer"
    if (folder / "target.model").exists():
        log.info("reusing the tokenizers in %s", folder)
        return TokenizerPair.load(folder)
    pair = train_tokenizers(train_corpus.source, train_corpus.target, cfg.tokenizer)
    pair.save(folder)
    return pair


def check_settings(cfg: DictConfig) -> None:
    """Refuse settings that cannot work, before any data is read or anything written."""
    check_schedule(cfg.train)
    weight = cfg.train.get("consistency") or 0.0
    if isinstance(weight, bool) or not (isinstance(weight, int | float) and weight >= 0):
        raise TranslatorError(
            f"train.consistency={weight!r}: expected a number >= 0 (the R-Drop weight; 0: off)"
        )
    rate = cfg.data.get("source_dropout") or 0.0
    if isinstance(rate, bool) or not (isinstance(rate, int | float) and 0 <= rate < 1):
        raise TranslatorError(f"data.source_dropout={rate!r}: expected a rate in [0, 1) (0: off)")
    steps = cfg.data.get("bidirectional_steps") or 0
    if isinstance(steps, bool) or not (isinstance(steps, int) and steps >= 0):
        raise TranslatorError(
            f"data.bidirectional_steps={steps!r}: expected a whole number of steps >= 0 (0: off)"
        )
    if steps and not cfg.tokenizer.get("shared"):
        raise TranslatorError(
            "data.bidirectional_steps needs one vocabulary for both languages: add tokenizer=shared"
        )
    nbest, alpha = cfg.tokenizer.sample_nbest_size, cfg.tokenizer.sample_alpha
    if not isinstance(nbest, int):
        raise TranslatorError(
            f"tokenizer.sample_nbest_size={nbest!r}: expected a whole number "
            "(0: off, n > 1: sample among the n best segmentations, -1: among all)"
        )
    if nbest not in (0, 1) and not (isinstance(alpha, int | float) and alpha > 0):
        raise TranslatorError(f"tokenizer.sample_alpha={alpha!r}: expected a number above 0")
    if cfg.model.get("share_embeddings") and not cfg.tokenizer.get("shared"):
        raise TranslatorError(
            "model.share_embeddings=true needs one vocabulary for both languages: "
            "add tokenizer=shared"
        )


def build_model(
    cfg: DictConfig, tokenizers: TokenizerPair, example_batch, schedule=None
) -> Transformer:
    """The compiled model; `schedule` defaults to the one `cfg.train` describes."""
    model = Transformer.from_settings(
        cfg.model, tokenizers.source.vocab_size, tokenizers.target.vocab_size
    )
    model(example_batch[0])  # create the weights
    model.consistency = float(cfg.train.get("consistency") or 0.0)
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


def make_callbacks(
    cfg: DictConfig, run_dir: Path, start: float | None = None, schedule=None
) -> list[keras.callbacks.Callback]:
    callbacks = [Throughput()]
    if cfg.train.max_minutes:
        # Stops at an epoch boundary: later callbacks still see that epoch, and the run ends
        # through on_train_end (averaging, metrics) like one that ran all its epochs. Before
        # LearningRate and EpochSummary, so the rate they log follows a moved zero point.
        auto = cfg.train.get("decay") == "linear" and cfg.train.decay_steps == "auto"
        callbacks.append(TimeBudget(cfg.train.max_minutes, start, schedule if auto else None))
    callbacks += [
        LearningRate(),
        keras.callbacks.BackupAndRestore(str(run_dir / "backup"), delete_checkpoint=True),
        keras.callbacks.ModelCheckpoint(
            str(run_dir / "last.weights.h5"), save_weights_only=True, save_best_only=False
        ),
        keras.callbacks.ModelCheckpoint(
            str(run_dir / "best.weights.h5"),
            save_weights_only=True,
            save_best_only=True,
            monitor="val_loss",
            mode="min",
        ),
        keras.callbacks.TerminateOnNaN(),
        EpochSummary(run_dir / "history.jsonl"),
    ]
    if cfg.train.average_last:
        callbacks.append(
            AverageCheckpoints(
                cfg.train.average_last, run_dir / "epochs", run_dir / "averaged.weights.h5"
            )
        )
    if cfg.train.tensorboard:
        callbacks.append(keras.callbacks.TensorBoard(str(run_dir / "logs"), update_freq="epoch"))
    if cfg.train.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss",
                patience=cfg.train.early_stopping_patience,
                restore_best_weights=False,
            )
        )
    return callbacks


def check_run_dir(run_dir: Path) -> None:
    """Refuse to train over a finished run (its weights would be overwritten)."""
    finished = (run_dir / "metrics.json").exists() and not (run_dir / "backup").exists()
    if finished:
        raise TranslatorError(
            f"{run_dir} already holds a finished run; pick another run_name=... "
            "(or delete that folder to retrain it)"
        )


def train(cfg: DictConfig) -> dict:
    """Train the model `cfg` describes and return the final metrics.

    Resumes from `cfg.run_dir/backup` when an earlier run of the same run directory was
    interrupted. Returns a dict with epochs, wall time, losses, accuracies and tokens/s.
    """
    start = time.perf_counter()
    run_dir = Path(cfg.run_dir)
    check_run_dir(run_dir)
    check_settings(cfg)
    run_dir.mkdir(parents=True, exist_ok=True)
    set_threads(cfg.train.threads)
    keras.utils.set_random_seed(cfg.seed)
    set_precision(cfg.train.precision)
    strategy = select_strategy(cfg.train)
    gpus, cpu = tf.config.list_physical_devices("GPU"), cpu_features()
    log.info(describe_devices(strategy, cfg.train, gpus, cpu))
    if warning := precision_warning(cfg.train.precision, cpu, len(gpus)):
        log.warning(warning)

    # Data and tokenizers.
    train_corpus = load_corpus(cfg.data, "train")
    valid_corpus = load_corpus(cfg.data, "validation")
    log.info("data: %d training pairs, %d validation pairs", len(train_corpus), len(valid_corpus))
    tokenizers = prepare_tokenizers(cfg, run_dir, train_corpus)
    save_resolved(cfg, run_dir / "config.yaml")
    replicas = strategy.num_replicas_in_sync
    # Training batches may sample their segmentations (subword regularization); validation
    # batches and everything saved use the deterministic tokenizers.
    sampling = tokenizers.sampling(cfg.tokenizer.sample_nbest_size, cfg.tokenizer.sample_alpha)
    if sampling.samples:
        log.info(
            "subword regularization: training segmentations sampled among the %s best (alpha %s)",
            "all" if cfg.tokenizer.sample_nbest_size < 0 else cfg.tokenizer.sample_nbest_size,
            cfg.tokenizer.sample_alpha,
        )
    if cfg.data.get("source_dropout"):
        log.info(
            "source dropout: training source pieces replaced by UNK at %s", cfg.data.source_dropout
        )
    train_data = make_batches(
        train_corpus, sampling, cfg.data, training=True, seed=cfg.seed, replicas=replicas
    )
    valid_data = make_batches(valid_corpus, tokenizers, cfg.data, training=False, replicas=replicas)
    # Bucket sizes depend only on sentence lengths, so the batch count of deterministic
    # segmentations is fixed (with sampled ones it varies a little: an epoch is then the count of
    # one pass). Telling Keras gives validation a progress bar with a total.
    batches = count_batches(train_data, "training", cfg.data)
    valid_data = with_known_length(valid_data, "validation", cfg.data)
    steps_per_epoch = cfg.train.steps_per_epoch or batches
    # One iterator for the whole run: Keras keeps it across epochs when the data repeats and
    # steps_per_epoch is set. A new iterator per epoch means dropping the old one, and that waits
    # for tf.data's autotuning thread to wake from its sleep (up to a minute): 50-s stalls on
    # about half of the epochs of a Multi30k run.
    train_data = train_data.repeat()
    if bidirectional := cfg.data.get("bidirectional_steps") or 0:
        # Bidirectional training (Ding et al., 2021): the first steps also see every pair reversed,
        # then the rest of the run trains on the task's direction alone.
        left = max(0, bidirectional - resumed_epochs(run_dir) * steps_per_epoch)
        both = make_batches(
            train_corpus,
            sampling,
            cfg.data,
            training=True,
            seed=cfg.seed,
            replicas=replicas,
            bidirectional=True,
        )
        train_data = both.repeat().take(left).concatenate(train_data)
        log.info(
            "bidirectional training: steps 1-%d also on reversed pairs (%d left), then %s only",
            bidirectional,
            left,
            f"{cfg.data.source}->{cfg.data.target}",
        )
    log.info(describe_schedule(cfg.train, steps_per_epoch))

    # Model, optimizer and callbacks.
    with strategy.scope():
        max_steps = cfg.train.epochs * steps_per_epoch
        schedule = build_schedule(cfg.model.d_model, cfg.train, max_steps)
        model = build_model(cfg, tokenizers, next(iter(train_data)), schedule)
    (run_dir / "model.json").write_text(json.dumps(model.get_config(), indent=2))
    log.info("model: %s, %d parameters", cfg.model.name, model.count_params())

    verbose = cfg.train.verbose
    if verbose == "auto":
        verbose = 1 if sys.stdout.isatty() else 2
    fit_start = time.perf_counter()
    history = model.fit(
        train_data,
        validation_data=valid_data,
        epochs=cfg.train.epochs,
        steps_per_epoch=steps_per_epoch,
        validation_steps=cfg.train.validation_steps,
        callbacks=make_callbacks(cfg, run_dir, start, schedule),
        verbose=verbose,
        shuffle=False,  # the dataset shuffles itself, with a seed
    )
    seconds = time.perf_counter() - fit_start

    with strategy.scope():
        metrics = summarize(history.history, seconds, model, run_dir)
    (run_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    log.info("finished: %s", metrics)
    return metrics


def resumed_epochs(run_dir: Path) -> int:
    """Epochs an interrupted run of `run_dir` finished (0 for a new run)."""
    metadata = run_dir / "backup" / "training_metadata.json"
    if not metadata.exists():
        return 0
    return int(json.loads(metadata.read_text())["epoch"])


def count_batches(dataset: tf.data.Dataset, split: str, data: DictConfig) -> int:
    """Batches in one pass over `dataset`; an error when there are none."""
    batches = int(dataset.reduce(0, lambda count, _: count + 1))
    if batches == 0:
        raise TranslatorError(
            f"the {split} split gives no batch: every pair is longer than data.max_tokens="
            f"{data.max_tokens} tokens (or, with several replicas, too few pairs to split)"
        )
    return batches


def with_known_length(dataset: tf.data.Dataset, split: str, data: DictConfig) -> tf.data.Dataset:
    return dataset.apply(
        tf.data.experimental.assert_cardinality(count_batches(dataset, split, data))
    )


def summarize(history: dict, seconds: float, model: Transformer, run_dir: Path) -> dict:
    last = {k: float(v[-1]) for k, v in history.items() if v}
    return {
        "run_dir": str(run_dir),
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
    }
