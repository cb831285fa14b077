"""The batches a run trains and validates on.

Training batches come from one endless iterator for the whole run: Keras keeps it across epochs
when the data repeats and `steps_per_epoch` is set. A new iterator per epoch means dropping the
old one, and that waits for tf.data's autotuning thread to wake from its sleep (up to a minute):
50-s stalls on about half of the epochs of a Multi30k run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import partial

import tensorflow as tf
from omegaconf import DictConfig

from translator.data import Corpus, make_batches
from translator.data.pipeline import batches_per_pass
from translator.errors import TranslatorError
from translator.tokenizer import TokenizerPair

log = logging.getLogger(__name__)


@dataclass
class RunBatches:
    """Endless training batches, validation batches of known length, and the steps per epoch."""

    train: tf.data.Dataset
    validation: tf.data.Dataset
    steps_per_epoch: int


def run_batches(
    cfg: DictConfig,
    corpora: tuple[Corpus, Corpus],
    tokenizers: TokenizerPair,
    replicas: int = 1,
    resumed_epochs: int = 0,
    bidirectional_end: tf.Variable | None = None,
) -> RunBatches:
    """Batches of the (train, validation) `corpora` as `cfg.data` and `cfg.train` describe.

    Training batches are one endless stream of full batches (`make_batches(endless=True)`); an
    epoch is one pass on average. They may sample their segmentations (subword regularization);
    validation batches use the deterministic tokenizers. With bidirectional training, steps
    before `data.bidirectional_steps` (or the step `bidirectional_end` holds, which the run's
    plan sets) also train on the reversed pairs. After `resumed_epochs`, the stream continues
    where they ended.
    """
    train_corpus, valid_corpus = corpora
    sampling = tokenizers.sampling(cfg.tokenizer.sample_nbest_size, cfg.tokenizer.sample_alpha)
    describe_augmentation(cfg, sampling.samples)
    stream = partial(make_batches, train_corpus, sampling, cfg.data, training=True, seed=cfg.seed,
                     replicas=replicas, endless=True)  # fmt: skip
    train_data = stream()
    steps_per_epoch = steps_of_one_pass(train_corpus, tokenizers, cfg.data, replicas)
    steps_per_epoch = cfg.train.steps_per_epoch or steps_per_epoch
    valid_data = make_batches(valid_corpus, tokenizers, cfg.data, training=False, replicas=replicas)
    # Telling Keras the validation length gives validation a progress bar with a total.
    valid_data = with_known_length(valid_data, "validation", cfg.data)
    if cfg.data.bidirectional_steps:
        bidirectional_end = tf.constant(cfg.data.bidirectional_steps, tf.int64)
    if bidirectional_end is not None:
        train_data = switch_at(bidirectional_end, stream(bidirectional=True), train_data)
        log.info(
            "bidirectional training: the first steps also on reversed pairs, then %s->%s only",
            cfg.data.source, cfg.data.target,
        )  # fmt: skip
    if resumed_epochs:
        # A resumed run takes up the stream where the interrupted one left it: the same seeded
        # shuffles, replayed, so no batch is trained twice or skipped.
        skipped = resumed_epochs * steps_per_epoch
        log.info("resuming: skipping the %d batches the interrupted run trained on", skipped)
        train_data = train_data.skip(skipped)
    return RunBatches(train_data, valid_data, steps_per_epoch)


def switch_at(step: tf.Tensor, first: tf.data.Dataset, then: tf.data.Dataset) -> tf.data.Dataset:
    """Batches of `first` before batch number `step` (read as the stream runs), then of `then`."""
    choice = tf.data.Dataset.counter().map(lambda i: tf.cast(i >= step, tf.int64))
    return tf.data.Dataset.choose_from_datasets([first, then], choice)


def steps_of_one_pass(corpus: Corpus, tokenizers: TokenizerPair, data: DictConfig, replicas: int
                      ) -> int:  # fmt: skip
    """Batches in one pass over the training pairs (at least 1); an error when there are none."""
    batches = batches_per_pass(corpus, tokenizers, data, replicas)
    if batches == 0:
        raise TranslatorError(
            f"the training split gives no batch: every pair is longer than data.max_tokens="
            f"{data.max_tokens} tokens"
        )
    return max(1, round(batches))


def describe_augmentation(cfg: DictConfig, sampled: bool) -> None:
    if sampled:
        nbest = cfg.tokenizer.sample_nbest_size
        log.info(
            "subword regularization: training segmentations sampled among the %s best (alpha %s)",
            "all" if nbest < 0 else nbest, cfg.tokenizer.sample_alpha,
        )  # fmt: skip
    if cfg.data.source_dropout:
        log.info(
            "source dropout: training source pieces replaced by UNK at %s", cfg.data.source_dropout
        )


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
