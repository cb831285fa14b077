"""Hydra configuration: typed schemas of the config groups, and composing configs from `configs/`.

Each group's YAML files (`configs/<group>/`) hold the default values with a comment on what each
does; the dataclasses below are their schemas, registered in Hydra's ConfigStore as `<group>/schema`
and named first in the defaults list of the group's base file. Hydra therefore refuses an unknown
key or a value of the wrong type when it composes a config, naming the key, and `validate(cfg)`
checks ranges and choices (each schema's `__post_init__`) before a command does any work.

`${project_root:}` resolves to the project root, so paths such as `${paths.root}/data` work
whatever the working directory.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from translator.errors import TranslatorError
from translator.run_dir import WEIGHT_CHOICES

PROJECT_ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = PROJECT_ROOT / "configs"

if not OmegaConf.has_resolver("project_root"):
    OmegaConf.register_new_resolver("project_root", lambda: str(PROJECT_ROOT))


def _refuse(key: str, value, expected: str) -> None:
    raise ValueError(f"{key}={value!r}: expected {expected}")


def _number(key: str, value, low: float, high: float | None = None, closed: bool = True) -> None:
    """`value` in [low, high) (or [low, high] when closed), else an error naming `key`."""
    above = value >= low
    below = high is None or (value <= high if closed else value < high)
    if isinstance(value, bool) or not (above and below):
        bounds = f">= {low}" if high is None else f"in [{low}, {high}{']' if closed else ')'}"
        _refuse(key, value, f"a number {bounds}")


FREEZABLE = re.compile(r"embeddings|encoder|decoder|output|(encoder|decoder)\.layer_\d+")


@dataclass
class CorpusEntry:
    """One of several training corpora (`data.corpora`): a folder of parallel text."""

    path: str = MISSING
    weight: float = 1.0
    name: str | None = None
    split: Any = None
    max_pairs: int | None = None

    def __post_init__(self):
        _number("data.corpora[].weight", self.weight, 0, closed=True)
        if not self.weight > 0:
            _refuse("data.corpora[].weight", self.weight, "a number > 0")


@dataclass
class DataConfig:
    """A corpus (`kind`: parallel_text or tfds) and how it is batched."""

    name: str = MISSING
    kind: str = MISSING
    source: str = MISSING
    target: str = MISSING
    splits: dict[str, Any] = MISSING
    path: str | None = None
    tfds_name: str | None = None
    tfds_data_dir: str | None = None
    network_check_host: str | None = None
    max_tokens: int = MISSING
    truncate: bool = MISSING
    bucket: bool = MISSING
    bucket_width: int = MISSING
    pad_to_bucket: bool = MISSING
    batch_tokens: int = MISSING
    batch_size: int = MISSING
    shuffle_buffer: int = MISSING
    cache: bool = MISSING
    source_dropout: float = MISSING
    bidirectional_steps: int = MISSING
    bidirectional_fraction: float = 0.0
    max_pairs: int | None = None
    max_length_ratio: float | None = None
    dedup: bool = False
    shards: int = 16
    corpora: list[CorpusEntry] = field(default_factory=list)
    tag_synthetic: str | None = None
    concat: float = 0.0
    concat_most: int = 3
    concat_from: float = 0.0
    concat_until: float = 1.0

    def __post_init__(self):
        if self.kind not in ("parallel_text", "tfds"):
            _refuse("data.kind", self.kind, "parallel_text or tfds")
        _number("data.source_dropout", self.source_dropout, 0, 1, closed=False)
        _number("data.bidirectional_steps", self.bidirectional_steps, 0)
        _number("data.bidirectional_fraction", self.bidirectional_fraction, 0, 1, closed=False)
        if self.bidirectional_steps and self.bidirectional_fraction:
            _refuse("data.bidirectional_fraction", self.bidirectional_fraction,
                    "0 when data.bidirectional_steps is set (one or the other)")  # fmt: skip
        _number("data.max_tokens", self.max_tokens, 3)
        for key in ("bucket_width", "batch_tokens", "batch_size", "shuffle_buffer"):
            _number(f"data.{key}", getattr(self, key), 1)
        if self.max_pairs is not None:
            _number("data.max_pairs", self.max_pairs, 1)
        if self.max_length_ratio is not None:
            _number("data.max_length_ratio", self.max_length_ratio, 1)
        _number("data.shards", self.shards, 1)
        _number("data.concat", self.concat, 0, 1)
        _number("data.concat_most", self.concat_most, 2)
        _number("data.concat_from", self.concat_from, 0, 1, closed=False)
        _number("data.concat_until", self.concat_until, 0, 1)
        if self.concat_from and not self.concat:
            _refuse("data.concat_from", self.concat_from,
                    "0 when data.concat=0 (no pairs are joined)")  # fmt: skip
        if self.concat_until < 1 and not self.concat:
            _refuse("data.concat_until", self.concat_until,
                    "1 when data.concat=0 (no pairs are joined)")  # fmt: skip
        if self.concat_until <= self.concat_from:
            _refuse("data.concat_until", self.concat_until,
                    f"a fraction above data.concat_from={self.concat_from}")  # fmt: skip


@dataclass
class TokenizerConfig:
    """SentencePiece vocabularies."""

    kind: str = MISSING
    model_type: str = MISSING
    vocab_size: int = MISSING
    shared: bool = MISSING
    lowercase: bool = MISSING
    character_coverage: float = MISSING
    byte_fallback: bool = MISSING
    max_sentences: int = MISSING
    max_sample_chars: int | None = None
    seed_sentencepiece_size: int = MISSING
    num_threads: int = MISSING
    sample_nbest_size: int = MISSING
    sample_alpha: float = MISSING
    model_dir: str | None = None

    def __post_init__(self):
        if self.model_type not in ("unigram", "bpe"):
            _refuse("tokenizer.model_type", self.model_type, "unigram or bpe")
        _number("tokenizer.vocab_size", self.vocab_size, 8)
        _number("tokenizer.character_coverage", self.character_coverage, 0.9, 1.0)
        if self.sample_nbest_size not in (0, 1) and self.sample_alpha <= 0:
            _refuse("tokenizer.sample_alpha", self.sample_alpha, "a number above 0")


@dataclass
class ModelConfig:
    """The Transformer's size and options."""

    name: str = MISSING
    num_layers: int = MISSING
    d_model: int = MISSING
    num_heads: int = MISSING
    dff: int = MISSING
    dropout: float = MISSING
    attention_dropout: float | None = None
    activation_dropout: float | None = None
    norm_first: bool = MISSING
    tie_embeddings: bool = MISSING
    share_embeddings: bool = MISSING
    max_positions: int = MISSING
    attention_score: str = MISSING

    def __post_init__(self):
        if self.attention_score not in ("scaled_dot", "dot", "additive"):
            _refuse("model.attention_score", self.attention_score, "scaled_dot, dot or additive")
        for key in ("num_layers", "d_model", "num_heads", "dff", "max_positions"):
            _number(f"model.{key}", getattr(self, key), 1)
        if self.d_model % self.num_heads:
            _refuse("model.num_heads", self.num_heads, f"a divisor of d_model={self.d_model}")
        for key in ("dropout", "attention_dropout", "activation_dropout"):
            if getattr(self, key) is not None:
                _number(f"model.{key}", getattr(self, key), 0, 1, closed=False)


@dataclass
class TrainConfig:
    """The optimizer, schedule, precision, devices and budget of a training run."""

    epochs: int = MISSING
    steps_per_epoch: int | None = None
    validation_steps: int | None = None
    label_smoothing: float = MISSING
    consistency: float = MISSING
    warmup_steps: int = MISSING
    warmup_fraction: float | None = None
    warmup_min_steps: int = 1
    lr_scale: float = MISSING
    decay: str = MISSING
    decay_steps: Any = None  # a step, auto, or null
    beta_1: float = MISSING
    beta_2: float = MISSING
    epsilon: float = MISSING
    clipnorm: float | None = None
    accumulate_steps: int = 1
    backup_every_steps: int | None = None
    precision: str = MISSING
    jit_compile: bool = MISSING
    distribution: str = MISSING
    devices: list[str] | None = None
    worker_timeout_seconds: float = 600.0
    average_last: int = MISSING
    average_fraction: float | None = None
    early_stopping_patience: int | None = None
    max_minutes: float | None = None
    threads: int | None = None
    tensorboard: bool = MISSING
    verbose: Any = "auto"  # auto, 0, 1 or 2
    allow_changes: list[str] = MISSING  # settings a resumed run may change
    init_from: str | None = None
    init_weights: str = "auto"
    freeze: list[str] = field(default_factory=list)
    validate_bleu_every: int = 1
    validate_bleu_sentences: int = 200
    validate_bleu_decode: str = "greedy"
    select_by: str = "loss"

    def __post_init__(self):
        _number("train.epochs", self.epochs, 1)
        self.check_adaptation()
        _number("train.warmup_steps", self.warmup_steps, 1)
        _number("train.label_smoothing", self.label_smoothing, 0, 1, closed=False)
        _number("train.consistency", self.consistency, 0)
        _number("train.average_last", self.average_last, 0)
        _number("train.accumulate_steps", self.accumulate_steps, 1)
        if self.backup_every_steps is not None:
            _number("train.backup_every_steps", self.backup_every_steps, 1)
        if self.average_fraction is not None:
            if not 0 < self.average_fraction <= 1:
                _refuse("train.average_fraction", self.average_fraction, "a number in (0, 1]")
            if self.average_last:
                _refuse("train.average_fraction", self.average_fraction,
                        "null when train.average_last is set (one or the other)")  # fmt: skip
        if self.precision not in ("auto", "float32", "mixed_float16", "mixed_bfloat16"):
            _refuse(
                "train.precision", self.precision, "auto, float32, mixed_float16 or mixed_bfloat16"
            )
        if self.distribution not in ("auto", "none", "mirrored", "multi_worker"):
            _refuse("train.distribution", self.distribution, "auto, none, mirrored or multi_worker")
        if self.verbose not in ("auto", 0, 1, 2):
            _refuse("train.verbose", self.verbose, "auto, 0, 1 or 2")
        if self.max_minutes is not None:
            _number("train.max_minutes", self.max_minutes, 0)
        self.check_schedule()

    def check_adaptation(self) -> None:
        """Fine-tuning (`init_from`, `freeze`) and validation by translation quality."""
        if self.init_weights not in WEIGHT_CHOICES:
            _refuse("train.init_weights", self.init_weights, ", ".join(WEIGHT_CHOICES))  # RunDir's
        for part in self.freeze:
            if not FREEZABLE.fullmatch(str(part)):
                _refuse("train.freeze", part, "a list of embeddings, encoder, decoder, output, "
                        "encoder.layer_<i> or decoder.layer_<i>")  # fmt: skip
        _number("train.validate_bleu_every", self.validate_bleu_every, 0)
        _number("train.validate_bleu_sentences", self.validate_bleu_sentences, 1)
        if self.validate_bleu_decode not in ("greedy", "run"):
            _refuse("train.validate_bleu_decode", self.validate_bleu_decode, "greedy or run")
        if self.select_by not in ("loss", "bleu", "chrf"):
            _refuse("train.select_by", self.select_by, "loss, bleu or chrf")
        if self.select_by != "loss" and not self.validate_bleu_every:
            why = "loss when train.validate_bleu_every=0 (no BLEU or chrF is computed)"
            _refuse("train.select_by", self.select_by, why)

    def check_schedule(self) -> None:
        if self.decay not in ("inverse_sqrt", "linear"):
            _refuse("train.decay", self.decay, "inverse_sqrt or linear")
        if self.warmup_fraction is not None:
            if not 0 < self.warmup_fraction < 1:
                _refuse("train.warmup_fraction", self.warmup_fraction, "a number in (0, 1)")
            _number("train.warmup_min_steps", self.warmup_min_steps, 1, self.warmup_steps)
            if self.decay != "linear":
                why = "null with decay=inverse_sqrt (its warm-up shapes the whole curve)"
                _refuse("train.warmup_fraction", self.warmup_fraction, why)
        if self.decay != "linear":
            return
        if self.decay_steps == "auto":
            if not self.max_minutes:
                raise ValueError(
                    "train.decay_steps=auto: the rate reaches zero where the time budget ends, "
                    "so it needs train.max_minutes"
                )
            return
        steps = self.decay_steps
        if isinstance(steps, bool) or not isinstance(steps, int) or steps <= self.warmup_steps:
            raise ValueError(
                f"train.decay_steps={steps}: decay=linear needs the step where the rate reaches "
                f"zero, above train.warmup_steps={self.warmup_steps} (or auto, with "
                "train.max_minutes)"
            )


@dataclass
class DecodeConfig:
    """Greedy or beam search. Null values (inference commands) mean: as the run's config says."""

    strategy: str | None = None
    beam_size: int | None = None
    length_penalty: float | None = None
    n_best: int | None = None
    max_length_a: float | None = None
    max_length_b: int | None = None
    batch_size: int | None = None
    parallel_batches: int | None = None
    use_cache: bool | None = None
    sampling_topk: int | None = None
    sampling_topp: float | None = None
    sampling_temperature: float | None = None
    sampling_seed: int | None = None

    def __post_init__(self):
        if self.strategy not in (None, "greedy", "beam"):
            _refuse("decode.strategy", self.strategy, "greedy or beam")
        for key in ("beam_size", "n_best", "batch_size", "parallel_batches"):
            if getattr(self, key) is not None:
                _number(f"decode.{key}", getattr(self, key), 1)
        if None not in (self.beam_size, self.n_best) and self.n_best > self.beam_size:
            _refuse("decode.n_best", self.n_best, f"at most decode.beam_size={self.beam_size}")
        self._check_sampling()

    def _check_sampling(self):
        if self.sampling_topk is not None:
            _number("decode.sampling_topk", self.sampling_topk, 0)
        if self.sampling_topp is not None:
            _number("decode.sampling_topp", self.sampling_topp, 0, 1)
            if self.sampling_topp == 0:
                _refuse("decode.sampling_topp", 0, "a number in (0, 1]")
        if self.sampling_temperature is not None and not self.sampling_temperature > 0:
            _refuse("decode.sampling_temperature", self.sampling_temperature, "a number > 0")
        if self.strategy == "beam" and self.samples:
            _refuse("decode.strategy", "beam", "greedy when sampling (decode.sampling_topk != 1)")

    @property
    def samples(self) -> bool:
        """Whether tokens are drawn at random rather than the most probable taken."""
        return self.sampling_topk not in (None, 1)


ENGINES = ("tensorflow", "ctranslate2")
COMPUTE_TYPES = ("default", "float32", "int8", "int8_float32", "int16")


@dataclass
class EngineConfig:
    """What runs the decoder: TensorFlow, or the run converted to CTranslate2."""

    name: str = "tensorflow"
    compute_type: str = "default"
    threads: int = 0
    model_dir: str | None = None

    def __post_init__(self):
        if self.name not in ENGINES:
            _refuse("engine.name", self.name, " or ".join(ENGINES))
        if self.compute_type not in COMPUTE_TYPES:
            _refuse("engine.compute_type", self.compute_type, ", ".join(COMPUTE_TYPES))
        _number("engine.threads", self.threads, 0)


LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


@dataclass
class ServeConfig:
    """The server's address and limits: the top-level keys of configs/serve.yaml (the values
    and what each does are there)."""

    host: str = MISSING
    port: int = MISSING
    max_batch_size: int = MISSING
    max_wait_ms: float = MISSING
    max_body_bytes: int = MISSING
    max_sentences: int = MISSING
    max_chars: int = MISSING
    max_prefix_chars: int = MISSING
    max_constraints: int = MISSING
    max_constraint_chars: int = MISSING
    alignment_layer: int = MISSING
    segment: bool = MISSING
    max_segments: int = MISSING
    max_beam_size: int = MISSING
    max_n_best: int = MISSING
    request_timeout_s: float = MISSING
    max_attention_weights: int = MISSING
    read_timeout_s: float = MISSING
    keep_alive_s: float = MISSING
    max_connections: int = MISSING
    allowed_hosts: list[str] = MISSING
    allowed_origins: list[str] = MISSING
    log_level: str = MISSING

    def __post_init__(self):
        _number("port", self.port, 0, 65535)  # 0: any free port
        for key in ("max_batch_size", "max_body_bytes", "max_sentences", "max_chars",
                    "max_prefix_chars", "max_constraints", "max_constraint_chars",
                    "max_segments", "max_beam_size", "max_n_best",
                    "max_attention_weights", "max_connections"):  # fmt: skip
            _number(key, getattr(self, key), 1)
        _number("max_wait_ms", self.max_wait_ms, 0)
        for key in ("request_timeout_s", "read_timeout_s", "keep_alive_s"):
            if not getattr(self, key) > 0:
                _refuse(key, getattr(self, key), "a number > 0")
        if self.log_level not in LOG_LEVELS:
            _refuse("log_level", self.log_level, ", ".join(LOG_LEVELS))


@dataclass
class PathsConfig:
    root: str = MISSING
    shared_data: str = MISSING
    checkpoints: str = MISSING
    outputs: str = MISSING
    prepared: str = MISSING


SCHEMAS = {
    "data": DataConfig,
    "tokenizer": TokenizerConfig,
    "model": ModelConfig,
    "train": TrainConfig,
    "decode": DecodeConfig,
    "engine": EngineConfig,
    "paths": PathsConfig,
}

for _group, _schema in SCHEMAS.items():
    ConfigStore.instance().store(group=_group, name="schema", node=_schema)


def validate(cfg: DictConfig, groups: tuple[str, ...] | None = None) -> None:
    """Check ranges and choices of the config's groups; a TranslatorError names the bad key."""
    for group in groups or [g for g in SCHEMAS if g in cfg]:
        _check(lambda group=group: cfg[group])


def validate_serve(cfg: DictConfig) -> None:
    """Check the serve config's own keys (types, ranges, choices) as `validate` does groups."""
    values = {f.name: cfg[f.name] for f in fields(ServeConfig)}
    _check(lambda: OmegaConf.merge(OmegaConf.structured(ServeConfig), values))


def _check(node) -> None:
    """Build the schema object of `node()`, running its `__post_init__`; a TranslatorError
    with the first line of what OmegaConf or the schema refused."""
    try:
        OmegaConf.to_object(node())
    except OmegaConfBaseException as error:  # a wrong type (some are ValueErrors too)
        message, key = str(error).splitlines()[0], getattr(error, "full_key", None)
        message = f"{key}: {message}" if key and key not in message else message
        raise TranslatorError(message) from None
    except ValueError as error:  # the schema's own checks
        raise TranslatorError(str(error)) from None


def load_config(config_name: str = "train", overrides: list[str] | None = None) -> DictConfig:
    """Compose a config from `configs/` the way the scripts do (inside a Hydra app too)."""
    if GlobalHydra.instance().is_initialized():  # e.g. called from a @hydra.main script
        return compose(config_name=config_name, overrides=list(overrides or []))
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        return compose(config_name=config_name, overrides=list(overrides or []))
