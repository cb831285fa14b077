"""Validation by translation quality: every few epochs the model translates validation
sentences and the epoch's logs gain `val_bleu` and `val_chrf` (sacreBLEU), which
`train.select_by` may make the measure of the best weights and of early stopping."""

from __future__ import annotations

import logging
import math
import time

import keras
import tensorflow as tf
from omegaconf import DictConfig, OmegaConf
from sacrebleu.metrics import BLEU, CHRF

from translator.data import Corpus
from translator.run_dir import RunDir
from translator.tokenizer import TokenizerPair

log = logging.getLogger(__name__)

EXAMPLES = 3  # translations shown in TensorBoard's text tab each time
MONITORS = {"loss": ("val_loss", "min"), "bleu": ("val_bleu", "max"), "chrf": ("val_chrf", "max")}


def monitor(train: DictConfig) -> tuple[str, str]:
    """The log key `train.select_by` follows and whether lower (min) or higher (max) is better."""
    return MONITORS[train.select_by]


class TranslationQuality(keras.callbacks.Callback):
    """Every `every` epochs (and after the last), translates `sentences` validation sources with
    the model being trained and adds to the epoch's logs val_bleu, val_chrf (cased 13a BLEU and
    chrF against the references) and val_bleu_seconds (their cost). A few examples go to
    TensorBoard's text tab when `logs_dir` is given.

    Args:
        tokenizers: the run's tokenizers.
        corpus: the validation corpus (its first `sentences` pairs are used).
        decode: the decode settings (greedy, or the run's).
        max_tokens: the data's source length limit.
    """

    def __init__(self, tokenizers: TokenizerPair, corpus: Corpus, decode: DictConfig,
                 max_tokens: int, every: int = 1, sentences: int = 200,
                 logs_dir=None):  # fmt: skip
        super().__init__()
        self.tokenizers, self.decode, self.max_tokens = tokenizers, decode, max_tokens
        self.sources = list(corpus.source[:sentences])
        self.references = list(corpus.target[:sentences])
        self.every = every
        self.logs_dir = logs_dir
        self._translator = None
        self._writer = None

    def on_epoch_end(self, epoch, logs=None):
        last = self.model.stop_training or epoch + 1 == self.params.get("epochs")
        if logs is None or ((epoch + 1) % self.every and not last):
            return
        start = time.perf_counter()
        hypotheses = self.translator().translate(self.sources)
        logs["val_bleu"] = BLEU().corpus_score(hypotheses, [self.references]).score
        logs["val_chrf"] = CHRF().corpus_score(hypotheses, [self.references]).score
        logs["val_bleu_seconds"] = time.perf_counter() - start
        self.show_examples(epoch, hypotheses)

    def translator(self):
        """One Translator on the training model for the whole run: its graphs are traced once."""
        if self._translator is None:
            from translator.inference.translator import Translator

            self._translator = Translator(self.model, self.tokenizers, self.decode,
                                          self.max_tokens)  # fmt: skip
        return self._translator

    def show_examples(self, epoch: int, hypotheses: list[str]) -> None:
        if self.logs_dir is None:
            return
        if self._writer is None:
            self._writer = tf.summary.create_file_writer(str(self.logs_dir / "translations"))
        rows = ["| source | reference | translation |", "|---|---|---|"]
        for source, reference, hypothesis in list(
            zip(self.sources, self.references, hypotheses, strict=True)
        )[:EXAMPLES]:
            rows.append(f"| {cell(source)} | {cell(reference)} | {cell(hypothesis)} |")
        with self._writer.as_default():
            tf.summary.text("validation_translations", "\n".join(rows), step=epoch + 1)
        self._writer.flush()


def cell(text: str) -> str:
    """Text in a Markdown table cell."""
    return text.replace("|", "\\|").replace("\n", " ")


class BestSoFar:
    """The best value of a monitored log key: `improves(logs)` says whether this epoch's beats
    it (and records it); epochs that lack the key (BLEU not computed) never do."""

    def __init__(self, key: str, mode: str):
        self.key, self.mode = key, mode
        self.best = math.inf if mode == "min" else -math.inf

    def improves(self, logs: dict | None) -> bool:
        value = (logs or {}).get(self.key)
        if value is None:
            return False
        better = value < self.best if self.mode == "min" else value > self.best
        if better:
            self.best = float(value)
        return better


def quality_callback(cfg: DictConfig, tokenizers: TokenizerPair, corpus: Corpus, run: RunDir):
    """The run's TranslationQuality, or None when `train.validate_bleu_every` is 0."""
    train = cfg.train
    if not train.validate_bleu_every:
        return None
    from translator.inference.translator import decode_settings

    greedy = {"strategy": "greedy", "sampling_topk": 1}
    own = OmegaConf.create(OmegaConf.to_container(cfg.decode))  # without its schema's type
    decode = decode_settings(own, greedy if train.validate_bleu_decode == "greedy" else None)
    logs_dir = run.logs_dir if train.tensorboard else None
    return TranslationQuality(tokenizers, corpus, decode, cfg.data.max_tokens,
                              train.validate_bleu_every, train.validate_bleu_sentences,
                              logs_dir)  # fmt: skip
