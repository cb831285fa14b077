"""Export a run as a SavedModel whose serving signature maps strings to strings.

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

from translator.errors import TranslatorError
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


def export(cfg: DictConfig) -> dict:
    """Write the SavedModel of `cfg.run_dir` to `cfg.export_dir` (default: run_dir/export)."""
    translator = Translator.from_command(cfg)
    target = Path(cfg.export_dir or translator.run.export_dir)
    if target.is_dir() and any(target.iterdir()) and not cfg.overwrite:
        raise TranslatorError(f"{target} is not empty; pass overwrite=true to replace it")
    if target.exists() and not target.is_dir():
        raise TranslatorError(f"{target} exists and is not a folder")
    # Written beside the target and moved into place whole: never a half-written SavedModel.
    partial = target.with_name(target.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    module = ExportedTranslator(translator)
    tf.saved_model.save(
        module, str(partial), signatures={"serving_default": module.serve.get_concrete_function()}
    )
    shutil.rmtree(target, ignore_errors=True)
    os.replace(partial, target)
    print(f"wrote SavedModel to {target} ({describe_decode(translator.decode)})")
    return {"export_dir": str(target), "decode": OmegaConf.to_container(translator.decode)}


def describe_decode(decode: DictConfig) -> str:
    if decode.strategy == "greedy":
        return "greedy search"
    return f"beam search, beam {decode.beam_size}, length penalty {decode.length_penalty:g}"
