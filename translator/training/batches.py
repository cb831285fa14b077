"""The batches a run trains and validates on.

Training batches come from one repeated iterator for the whole run: Keras keeps it across epochs
when the data repeats and `steps_per_epoch` is set. A new iterator per epoch means dropping the
old one, and that waits for tf.data's autotuning thread to wake from its sleep (up to a minute):
50-s stalls on about half of the epochs of a Multi30k run.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import tensorflow as tf
from omegaconf import DictConfig

from translator.data import Corpus, make_batches
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
) -> RunBatches:
    """Batches of the (train, validation) `corpora` as `cfg.data` and `cfg.train` describe.

    Training batches may sample their segmentations (subword regularization); validation batches
    use the deterministic tokenizers. With `data.bidirectional_steps`, the first steps also train
    on the reversed pairs. After `resumed_epochs`, the stream continues where they ended.
    """
    train_corpus, valid_corpus = corpora
    sampling = tokenizers.sampling(cfg.tokenizer.sample_nbest_size, cfg.tokenizer.sample_alpha)
    describe_augmentation(cfg, sampling.samples)
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
    train_data = train_data.repeat()
    if cfg.data.bidirectional_steps:
        both = make_batches(
            train_corpus, sampling, cfg.data, training=True, seed=cfg.seed, replicas=replicas,
            bidirectional=True,
        )  # fmt: skip
        train_data = both.repeat().take(cfg.data.bidirectional_steps).concatenate(train_data)
        log.info(
            "bidirectional training: steps 1-%d also on reversed pairs, then %s->%s only",
            cfg.data.bidirectional_steps, cfg.data.source, cfg.data.target,
        )  # fmt: skip
    if resumed_epochs:
        # A resumed run takes up the stream where the interrupted one left it: the same seeded
        # shuffles, replayed, so no batch is trained twice or skipped.
        skipped = resumed_epochs * steps_per_epoch
        log.info("resuming: skipping the %d batches the interrupted run trained on", skipped)
        train_data = train_data.skip(skipped)
    return RunBatches(train_data, valid_data, steps_per_epoch)


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
