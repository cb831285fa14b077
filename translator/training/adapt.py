"""Fine-tuning: a new run that starts from a finished run's weights and tokenizer
(`train.init_from`), optionally with parts of the model kept fixed (`train.freeze`).

The new run has its own optimizer (its step count at 0) and its own learning-rate schedule
(warm-up, decay, budget): only weights carry over. Its vocabulary is the source run's, whatever
data it trains on; text that vocabulary never saw is split into smaller pieces, down to bytes.
"""

from __future__ import annotations

import hashlib
import logging
import warnings

import keras
from omegaconf import DictConfig, OmegaConf

from translator.errors import RunDirError, TranslatorError, first_line
from translator.run_dir import RunDir
from translator.tokenizer import TokenizerPair

log = logging.getLogger(__name__)

# Settings that may differ from the source run's: they do not shape the weights.
FREE_MODEL_KEYS = ("name", "dropout", "attention_dropout", "activation_dropout")
# The tokenizer settings its vocabulary was built with: the new run must describe the same one.
VOCABULARY_KEYS = ("kind", "model_type", "vocab_size", "shared", "lowercase", "byte_fallback")


def source_run(cfg: DictConfig) -> RunDir:
    """The finished run `train.init_from` names, checked against this run's settings."""
    run = RunDir(cfg.train.init_from)
    if not run.is_finished():
        why = "not found" if not run.path.is_dir() else "not a finished run (no metrics.json)"
        raise TranslatorError(f"train.init_from={cfg.train.init_from}: {why}")
    run.check_complete()
    source_cfg = run.load_config()
    differing = differences(source_cfg, cfg)
    if differing:
        listed = ", ".join(f"{key}={old} there, {new} here" for key, old, new in differing)
        raise TranslatorError(f"train.init_from={run}: this run's settings differ from the "
                              f"source run's: {listed}")  # fmt: skip
    return run


def differences(source: DictConfig, new: DictConfig) -> list[tuple[str, object, object]]:
    """(key, source value, new value) of the model and vocabulary settings that differ."""
    keys = [f"model.{k}" for k in new.model if k not in FREE_MODEL_KEYS]
    keys += [f"tokenizer.{k}" for k in VOCABULARY_KEYS]
    found = []
    for key in keys:
        old, now = OmegaConf.select(source, key), OmegaConf.select(new, key)
        if old != now:
            found.append((key, old, now))
    return found


def source_tokenizers(cfg: DictConfig) -> TokenizerPair:
    """The tokenizers of the run `train.init_from` names."""
    return TokenizerPair.load(source_run(cfg).tokenizer_dir)


def initialize(model: keras.Model, cfg: DictConfig, run: RunDir) -> None:
    """Load the source run's weights (`train.init_weights`) into `model` and record in `run`
    where they came from."""
    source = source_run(cfg)
    weights = source.choose_weights(cfg.train.init_weights)
    try:
        with warnings.catch_warnings():  # the source's optimizer state is left behind on purpose
            warnings.filterwarnings("ignore", message="Skipping variable loading for optimizer")
            model.load_weights(weights)
    except Exception as error:  # noqa: BLE001 - h5py and Keras raise many kinds
        raise RunDirError(f"{weights}: cannot load these weights ({first_line(error)})") from None
    digest = hashlib.sha256(weights.read_bytes()).hexdigest()[:16]
    run.save_origin({"init_from": str(source.path.resolve()), "weights": weights.name,
                     "sha256": digest})  # fmt: skip
    log.info("fine-tuning from %s (%s)", weights, digest)


def parts(model: keras.Model, name: str) -> list[keras.Layer]:
    """The layers `train.freeze` names (see `translator.config.FREEZABLE`)."""
    if name == "embeddings":
        return [model.encoder.embedding, model.decoder.embedding]
    if name == "output":
        if model.output_projection is None:
            raise TranslatorError("train.freeze=[output]: the output layer is the target embedding "
                                  "(model.tie_embeddings=true); freeze embeddings")  # fmt: skip
        return [model.output_projection]
    stack = model.encoder if name.startswith("encoder") else model.decoder
    if "." not in name:
        return [*stack.layers, *([stack.final_norm] if stack.final_norm is not None else [])]
    index = int(name.split("_")[-1])
    if index >= len(stack.layers):
        raise TranslatorError(f"train.freeze={name}: the model has {len(stack.layers)} layers "
                              f"(layer_0 to layer_{len(stack.layers) - 1})")  # fmt: skip
    return [stack.layers[index]]


def freeze(model: keras.Model, names: list[str]) -> None:
    """Keep the named parts fixed: their weights get no updates (set before compiling)."""
    if not names:
        return
    fixed = {}
    for name in names:
        for layer in parts(model, str(name)):
            layer.trainable = False
            fixed.update({id(w): int(w.numpy().size) for w in layer.weights})
    if not model.trainable_weights:
        raise TranslatorError(f"train.freeze={list(names)}: nothing is left to train")
    log.info("frozen: %s (%d of %d parameters fixed)", ", ".join(map(str, names)),
             sum(fixed.values()), model.count_params())  # fmt: skip
