"""The batches a run trains and validates on.

Training batches come from one endless iterator for the whole run: Keras keeps it across epochs
when the data repeats and `steps_per_epoch` is set. A new iterator per epoch means dropping the
old one, and that waits for tf.data's autotuning thread to wake from its sleep (up to a minute):
50-s stalls on about half of the epochs of a Multi30k run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import tensorflow as tf
from omegaconf import DictConfig

from translator.data import Corpus, make_batches
from translator.data.pipeline import batch_stream, batches_in_histogram
from translator.data.prepare import TrainingData
from translator.data.shards import pair_stream
from translator.errors import TranslatorError
from translator.tokenizer import TokenizerPair

log = logging.getLogger(__name__)

# Added to the run's seed for the stream of joined pairs when it is a stage of the run
# (`data.concat_from`, `data.concat_until`): it does not replay the plain stream's pairs.
CONCAT_SEED_OFFSET = 1000


@dataclass
class RunBatches:
    """The endless training stream, validation batches of known length, and an epoch's length.

    Attributes:
        stream: builds the training batches, from the start of the run.
        validation: the validation batches.
        steps_per_epoch: optimizer updates per epoch.
        accumulate: batches whose gradients make one update (`train.accumulate_steps`).
        sources: the folders of the prepared data the stream reads.
    """

    stream: Callable[[], tf.data.Dataset]
    validation: tf.data.Dataset
    steps_per_epoch: int
    accumulate: int = 1
    sources: tuple[str, ...] = ()

    @property
    def batches_per_epoch(self) -> int:
        """What Keras counts as an epoch's steps: batches, `accumulate` per update."""
        return self.steps_per_epoch * self.accumulate

    def train_from(self, step: int) -> tf.data.Dataset:
        """The stream after the batches of `step` updates: where a resumed run takes it up.

        A new pipeline each time: a shuffle reshuffles for every iterator of one pipeline, but
        a new one replays the run's seeded shuffles, so no batch is trained twice or skipped."""
        if step:
            log.info("resuming: skipping the %d batches of the first %d updates",
                     step * self.accumulate, step)  # fmt: skip
        return self.stream().skip(step * self.accumulate)


def run_batches(
    cfg: DictConfig,
    training: TrainingData,
    valid_corpus: Corpus,
    replicas: int = 1,
    bidirectional_end: tf.Variable | None = None,
    worker: tuple[int, int] = (0, 1),
    concat_start: tf.Variable | None = None,
    concat_end: tf.Variable | None = None,
) -> RunBatches:
    """Batches of the prepared training data and the validation corpus, as `cfg.data` and
    `cfg.train` describe.

    Training batches are one endless stream of full batches streamed from the shards
    (`training_pairs`); an epoch is one pass on average, counted from the preparations' length
    histograms (or `train.steps_per_epoch` updates). They may sample their segmentations
    (subword regularization); validation batches, in memory, use the deterministic tokenizers.
    With bidirectional training, updates before `data.bidirectional_steps` (or the step
    `bidirectional_end` holds, which the run's plan sets) also train on the reversed pairs.
    With `data.concat_from` or `data.concat_until`, pairs are joined (`data.concat`) from the
    step `concat_start` holds and until the step `concat_end` holds, in a stream of its own
    shuffle order (it does not replay the pairs of the plain stream).
    `worker` = (index, count) of this worker among several, each reading its own shards.
    """
    tokenizers = training.tokenizers
    sampling = tokenizers.sampling(cfg.tokenizer.sample_nbest_size, cfg.tokenizer.sample_alpha)
    describe_augmentation(cfg, sampling.samples)

    # A buffer larger than the pairs a worker reads in a pass would mix passes: no larger.
    buffer = min(cfg.data.shuffle_buffer, sum(p.pairs for p in training.prepared) // worker[1])

    concat_staged = concat_start is not None or concat_end is not None

    def stream(bidirectional: bool, concat: bool) -> tf.data.Dataset:
        seed = cfg.seed + (CONCAT_SEED_OFFSET if concat and concat_staged else 0)
        pairs = training_pairs(training, seed, worker, sampling if sampling.samples else None)
        return batch_stream(pairs, cfg.data, training=True, seed=seed, replicas=replicas,
                            bidirectional=bidirectional, shuffle_buffer=max(1, buffer),
                            concat=concat)  # fmt: skip

    accumulate = int(cfg.train.accumulate_steps)
    one_pass = steps_of_one_pass(training, cfg.data, replicas)
    steps_per_epoch = cfg.train.steps_per_epoch or max(1, round(one_pass / accumulate))
    valid_data = make_batches(valid_corpus, tokenizers, cfg.data, training=False,
                              replicas=replicas)  # fmt: skip
    # Telling Keras the validation length gives validation a progress bar with a total.
    valid_data = split_by_batch(with_known_length(valid_data, "validation", cfg.data))
    if cfg.data.bidirectional_steps:
        bidirectional_end = tf.constant(cfg.data.bidirectional_steps, tf.int64)

    def train_stream() -> tf.data.Dataset:
        return own_shards(
            staged_stream(stream, bidirectional_end, concat_start, concat_end, accumulate)
        )

    if bidirectional_end is not None:
        log.info(
            "bidirectional training: the first steps also on reversed pairs, then %s->%s only",
            cfg.data.source, cfg.data.target,
        )  # fmt: skip
    if accumulate > 1:
        log.info("gradient accumulation: one update per %d batches (%d updates per epoch)",
                 accumulate, steps_per_epoch)  # fmt: skip
    sources = tuple(prepared.folder for prepared in training.prepared)
    return RunBatches(train_stream, valid_data, steps_per_epoch, accumulate, sources)


def training_pairs(training: TrainingData, seed: int, worker: tuple[int, int] = (0, 1),
                   sampling: TokenizerPair | None = None) -> tf.data.Dataset:  # fmt: skip
    """The endless stream of training pairs: each preparation's shards (this worker's share),
    several corpora sampled by their weights (seeded)."""
    index, count = worker
    streams = [pair_stream(prepared, seed + number, worker=index, workers=count,
                           tokenizers=sampling)
               for number, prepared in enumerate(training.prepared)]  # fmt: skip
    if len(streams) == 1:
        return streams[0]
    total = sum(training.weights)
    weights = [weight / total for weight in training.weights]
    return tf.data.Dataset.sample_from_datasets(streams, weights=weights, seed=seed)


def own_shards(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Each of several workers reads its own shards (`training_pairs`): tf.distribute must not
    split the stream again."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    return dataset.with_options(options)


def split_by_batch(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Several workers (MultiWorkerMirroredStrategy) each build the whole validation set and
    keep their share of every batch (it is in memory: there are no files to split)."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def staged_stream(stream, bidirectional_end=None, concat_start=None, concat_end=None,
                  accumulate: int = 1) -> tf.data.Dataset:  # fmt: skip
    """The training batches through the run's data stages: `stream(bidirectional, concat)`
    with reversed pairs before update number `bidirectional_end` and joined pairs from update
    number `concat_start` until update number `concat_end` (step variables or tensors read as
    the stream runs; None: no such stage end); an update takes `accumulate` batches. Each
    stream is taken up where it was left: none replays its batches."""
    directions = (True, False) if bidirectional_end is not None else (False,)
    staged = concat_start is not None or concat_end is not None
    joins = (False, True) if staged else (True,)
    streams = [stream(bidirectional, concat) for bidirectional in directions for concat in joins]
    if len(streams) == 1:
        return streams[0]

    def stage(batch):
        update, index = batch // accumulate, tf.constant(0, tf.int64)
        if bidirectional_end is not None:
            index += tf.cast(update >= bidirectional_end, tf.int64) * len(joins)
        if staged:
            joined = tf.constant(True)
            if concat_start is not None:
                joined = tf.logical_and(joined, update >= concat_start)
            if concat_end is not None:
                joined = tf.logical_and(joined, update < concat_end)
            index += tf.cast(joined, tf.int64)
        return index

    choice = tf.data.Dataset.counter().map(stage)
    return tf.data.Dataset.choose_from_datasets(streams, choice)


def steps_of_one_pass(training: TrainingData, data: DictConfig, replicas: int) -> int:
    """Batches in one pass over the prepared training pairs (at least 1), from their length
    histograms: nothing is read."""
    histogram = sum(prepared.histogram for prepared in training.prepared)
    batches = batches_in_histogram(histogram, data, replicas)
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
    if cfg.data.concat:
        stage = [f"from {cfg.data.concat_from:.0%}"] if cfg.data.concat_from else []
        stage += [f"until {cfg.data.concat_until:.0%}"] if cfg.data.concat_until < 1 else []
        stage = f", {' '.join(stage)} of the run" if stage else ""
        log.info("concatenation: %.0f%% of the training examples join 2 to %d random pairs%s",
                 100 * cfg.data.concat, cfg.data.concat_most, stage)  # fmt: skip
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
