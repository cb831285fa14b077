"""Export a run: a SavedModel whose serving signature maps strings to strings, or (with
format=ctranslate2) a CTranslate2 model directory (`translator.inference.ct2_model`).

The graph holds the tokenizers (tensorflow-text ops), the encoder, and the cached search, so the
export reloads in a process that imports only tensorflow and tensorflow_text:

    import tensorflow as tf, tensorflow_text  # registers the SentencePiece ops
    translate = tf.saved_model.load("export_dir").signatures["serving_default"]
    translate(sentences=tf.constant(["A dog runs."]))["translations"]
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import tensorflow as tf
from omegaconf import DictConfig, OmegaConf

from translator.atomic import temporary_beside
from translator.errors import TranslatorError
from translator.inference.ct2_model import QUANTIZATIONS, weights_origin, write_model
from translator.inference.translator import Translator

log = logging.getLogger(__name__)


class ExportedTranslator(tf.Module):
    """Strings (B,) -> translations (B,) and scores (B,); empty inputs give empty outputs."""

    def __init__(self, translator: Translator):
        super().__init__(name="translator")
        self._translator = translator  # plain object: its pieces are tracked below
        self.model = translator.model
        self.source_tokenizer = translator.tokenizers.source
        self.target_tokenizer = translator.tokenizers.target

    @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="sentences")])
    def serve(self, sentences):
        stripped = tf.strings.strip(sentences)
        tokens, scores = self._translator.search(self._translator.source_ids(stripped))
        translations = self.target_tokenizer.detokenize(tokens[:, 0])
        empty = tf.equal(stripped, "")
        return {
            "translations": tf.where(empty, "", translations),
            "scores": tf.where(empty, 0.0, scores[:, 0]),
        }


FORMATS = ("savedmodel", "ctranslate2")


def export(cfg: DictConfig) -> dict:
    """Write `cfg.run_dir` as a SavedModel (default: run_dir/export) or, with
    format=ctranslate2, as a CTranslate2 model (default: run_dir/export-ctranslate2-<quant>)."""
    if cfg.format not in FORMATS:
        raise TranslatorError(f"format={cfg.format!r}: expected savedmodel or ctranslate2")
    if cfg.format == "ctranslate2" and cfg.quantization not in QUANTIZATIONS:
        expected = ", ".join(QUANTIZATIONS)
        raise TranslatorError(f"quantization={cfg.quantization!r}: expected {expected}")
    translator = Translator.from_command(cfg)
    if cfg.format == "ctranslate2":
        default = translator.run.path / f"export-ctranslate2-{cfg.quantization}"
        return export_ctranslate2(translator, check_target(cfg, default), cfg.quantization)
    return export_savedmodel(translator, check_target(cfg, translator.run.export_dir))


def check_target(cfg: DictConfig, default: Path) -> Path:
    """The folder to write: `cfg.export_dir` or `default`, refused when it holds something and
    overwrite is false."""
    target = Path(cfg.export_dir or default)
    if target.is_dir() and any(target.iterdir()) and not cfg.overwrite:
        raise TranslatorError(f"{target} is not empty; pass overwrite=true to replace it")
    if target.exists() and not target.is_dir():
        raise TranslatorError(f"{target} exists and is not a folder")
    return target


def export_ctranslate2(translator: Translator, target: Path, quantization: str) -> dict:
    origin = weights_origin(translator.run, translator.weights_file)
    write_model(translator.model, translator.tokenizers, target, quantization, origin)
    print(f"wrote a CTranslate2 model ({quantization}) to {target}; {target}/README.txt says "
          "how to load it")  # fmt: skip
    return {"export_dir": str(target), "format": "ctranslate2", "quantization": quantization}


def export_savedmodel(translator: Translator, target: Path) -> dict:
    if translator.sampler_settings:
        raise TranslatorError("a SavedModel decodes by greedy or beam search, not by sampling: "
                              "export with decode.sampling_topk=1 or decode=beam")  # fmt: skip
    # Written beside the target and moved into place whole: never a half-written SavedModel.
    module = ExportedTranslator(translator)
    with temporary_beside(target) as partial:
        signatures = {"serving_default": module.serve.get_concrete_function()}
        tf.saved_model.save(module, str(partial), signatures=signatures)
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
    print(f"wrote SavedModel to {target} ({describe_decode(translator.decode)})")
    return {
        "export_dir": str(target),
        "format": "savedmodel",
        "decode": OmegaConf.to_container(translator.decode),
    }


def describe_decode(decode: DictConfig) -> str:
    if decode.strategy == "greedy":
        return "greedy search"
    return f"beam search, beam {decode.beam_size}, length penalty {decode.length_penalty:g}"
