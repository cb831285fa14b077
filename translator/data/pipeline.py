"""The tf.data pipeline: tokenize, add START/END, enforce max_tokens, bucket, batch, shift.

Yields ((source_ids (B, S), target_in (B, T)), target_out (B, T)) with target_out equal to
target_in shifted one token left: the model reads START y1 ... yn and predicts y1 ... yn END.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
from omegaconf import DictConfig

from translator.data.concat import concat_pairs
from translator.data.corpus import Corpus
from translator.tokenizer import END_ID, PAD_ID, UNK_ID, TokenizerPair, with_start_end

AUTOTUNE = tf.data.AUTOTUNE


def tokenize_corpus(corpus: Corpus, tokenizers: TokenizerPair, data: DictConfig) -> tf.data.Dataset:
    """Sentence pairs -> (source_ids, target_ids) with START/END, within `data.max_tokens`."""
    max_tokens = data.max_tokens

    def tokenize(source, target):  # a batch of sentences at a time: much faster
        source = with_start_end(tokenizers.source.tokenize(source))
        target = with_start_end(tokenizers.target.tokenize(target))
        return source.to_tensor(), source.row_lengths(), target.to_tensor(), target.row_lengths()

    def unpad(source, source_length, target, target_length):
        return source[:source_length], target[:target_length]

    def truncate(source, target):
        return _truncate(source, max_tokens), _truncate(target, max_tokens)

    def fits(source, target):
        return tf.logical_and(tf.size(source) <= max_tokens, tf.size(target) <= max_tokens)

    dataset = (
        tf.data.Dataset.from_tensor_slices((corpus.source, corpus.target))
        .batch(1024)
        .map(tokenize, num_parallel_calls=AUTOTUNE)
        .unbatch()
        .map(unpad, num_parallel_calls=AUTOTUNE)
    )
    if data.truncate:
        return dataset.map(truncate, num_parallel_calls=AUTOTUNE)
    return dataset.filter(fits)


def _truncate(ids: tf.Tensor, max_tokens: int) -> tf.Tensor:
    """Keep START and the first tokens, and end with END, within max_tokens."""
    too_long = tf.size(ids) > max_tokens
    return tf.cond(too_long, lambda: tf.concat([ids[: max_tokens - 1], [END_ID]], 0), lambda: ids)


def bucket_boundaries(max_tokens: int, width: int) -> list[int]:
    """Exclusive upper lengths of the buckets: width+1, 2*width+1, ... and max_tokens+1."""
    bounds = list(range(width + 1, max_tokens + 1, width))
    return [*bounds, max_tokens + 1]


def batch_sizes(data: DictConfig, replicas: int) -> list[int]:
    """Sentences per batch of each length bucket (one size without bucketing); with several
    replicas, multiples of their number."""

    def batch_size(size: int) -> int:
        return max(replicas, size // replicas * replicas)

    if not data.bucket:
        return [batch_size(data.batch_size)]
    bounds = bucket_boundaries(data.max_tokens, data.bucket_width)
    return [batch_size(data.batch_tokens // (b - 1)) for b in bounds]


def pair_length(source, target):
    return tf.maximum(tf.size(source), tf.size(target))


def batch_pairs(dataset: tf.data.Dataset, data: DictConfig, replicas: int) -> tf.data.Dataset:
    """Padded batches of (source, target) id pairs: by length bucket (about `data.batch_tokens`
    tokens each) or `data.batch_size` sentences; with several replicas, every batch size is a
    multiple of their number. A finite dataset ends with each bucket's partial batch."""
    sizes = batch_sizes(data, replicas)
    if data.bucket:
        bounds = bucket_boundaries(data.max_tokens, data.bucket_width)
        dataset = dataset.bucket_by_sequence_length(
            element_length_func=pair_length,
            bucket_boundaries=bounds,
            bucket_batch_sizes=[*sizes, sizes[-1]],
            padding_values=(PAD_ID, PAD_ID),
            pad_to_bucket_boundary=data.pad_to_bucket,
        )
    else:
        dataset = dataset.padded_batch(sizes[0], padding_values=(PAD_ID, PAD_ID))
    if replicas > 1:
        # Full batches are multiples of `replicas`; trim each partial one to a multiple too.
        dataset = dataset.map(lambda s, t: _even_rows(s, t, replicas)).filter(
            lambda s, t: tf.shape(s)[0] > 0
        )
    return dataset


def make_batches(
    corpus: Corpus,
    tokenizers: TokenizerPair,
    data: DictConfig,
    training: bool,
    seed: int = 0,
    replicas: int = 1,
    bidirectional: bool = False,
    endless: bool = False,
) -> tf.data.Dataset:
    """The batched dataset of one split.

    With `data.bucket`, sentences of similar length are batched together and a batch holds about
    `data.batch_tokens` tokens (so short sentences come in larger batches); otherwise batches of
    `data.batch_size` sentences are padded to their longest sentence.

    Args:
        corpus: sentences of one split.
        tokenizers: the run's tokenizers; when they sample segmentations, every pass over the
            dataset sees new ones (and so, with bucketing, a batch count that varies a little).
        data: the `data` config (max_tokens, truncate, bucket, batch_tokens, batch_size,
            source_dropout, ...).
        training: shuffle (seeded) and apply `data.source_dropout` when True.
        seed: shuffle seed.
        replicas: devices the batches are split over; with more than one, every batch size is a
            multiple of it (partial batches lose at most replicas - 1 sentences), so each
            replica gets the same shape.
        bidirectional: every pair also comes reversed, target -> source (bidirectional
            training; both languages must share one vocabulary).
        endless: repeat the pairs, reshuffled every pass, before batching: the batches never
            end, and every batch is full (a bucket's leftover sentences at the end of a pass
            join the next pass's), so no optimizer step sees a small tail batch.

    Returns:
        Dataset of ((source_ids, target_in), target_out), int32, padded with PAD_ID.
    """
    dataset = tokenize_corpus(corpus, tokenizers, data)
    if data.cache and not tokenizers.samples:
        # Sampling tokenizers segment every pass anew (subword regularization): caching their
        # ids would freeze the first sample, so the text (already in memory) is retokenized.
        dataset = dataset.cache()
    return batch_stream(dataset, data, training, seed, replicas, bidirectional, endless)


def batch_stream(pairs: tf.data.Dataset, data: DictConfig, training: bool, seed: int = 0,
                 replicas: int = 1, bidirectional: bool = False, endless: bool = False,
                 shuffle_buffer: int | None = None, concat: bool = True
                 ) -> tf.data.Dataset:  # fmt: skip
    """Pairs of ids (START/END included) -> ((source_ids, target_in), target_out) batches:
    in training shuffled in a buffer of `shuffle_buffer` (default `data.shuffle_buffer`) pairs,
    a fraction `data.concat` of the examples joining several pairs (`concat_pairs`; none when not
    `concat`), and with source dropout; each pair also reversed when `bidirectional`; repeated
    when `endless` (see `make_batches`)."""
    if bidirectional:
        pairs = pairs.flat_map(_both_directions)
    if training:
        buffer = shuffle_buffer or data.shuffle_buffer
        pairs = pairs.shuffle(buffer, seed=seed, reshuffle_each_iteration=True)
    if endless:
        pairs = pairs.repeat()
    if training and concat and data.concat > 0:
        # Draws of their own (seed + 1): source dropout's come from `seed`.
        pairs = concat_pairs(pairs, data.concat, data.concat_most, data.max_tokens, seed + 1)
    dataset = batch_pairs(pairs, data, replicas)
    rate = data.source_dropout
    if training and rate > 0:
        dataset = drop_source_tokens(dataset, rate, seed)
    dataset = dataset.map(_shift, num_parallel_calls=AUTOTUNE)
    return dataset.prefetch(AUTOTUNE)


def batches_per_pass(corpus: Corpus, tokenizers: TokenizerPair, data: DictConfig, replicas: int
                     ) -> float:  # fmt: skip
    """Batches one pass over `corpus` makes on average in an endless stream: the sum over
    length buckets of pairs / batch size (partial batches counted as the fraction they are)."""
    lengths = tokenize_corpus(corpus, tokenizers, data).map(
        pair_length, num_parallel_calls=AUTOTUNE
    )
    lengths = np.fromiter(lengths.as_numpy_iterator(), dtype=np.int64)
    return batches_in_histogram(np.bincount(lengths), data, replicas)


def batches_in_histogram(histogram: np.ndarray, data: DictConfig, replicas: int) -> float:
    """Batches one pass over pairs makes on average, from their count at each length
    (max(source, target), START and END included): the sum over length buckets of pairs /
    batch size (partial batches counted as the fraction they are)."""
    histogram = np.asarray(histogram, dtype=np.float64)
    sizes = batch_sizes(data, replicas)
    if not data.bucket:
        return float(histogram.sum() / sizes[0])
    bounds = bucket_boundaries(data.max_tokens, data.bucket_width)
    lengths = np.arange(len(histogram))
    buckets = np.searchsorted(bounds, lengths, side="right")  # bucket i holds lengths < bounds[i]
    counts = np.bincount(buckets, weights=histogram, minlength=len(sizes))[: len(sizes)]
    return float(sum(count / size for count, size in zip(counts, sizes, strict=True)))


def drop_source_tokens(dataset: tf.data.Dataset, rate: float, seed: int) -> tf.data.Dataset:
    """Replace each source subword of (source, target) batches with UNK at `rate`.

    Source-side token dropout (Sennrich & Zhang, 2019; Zhang et al., 2020): the encoder must
    translate from partly hidden input, a regularizer that costs no extra computation. START,
    END and padding are kept, so lengths and masks do not change. The draws are seeded and
    differ on every pass over the dataset.
    """
    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)

    def drop(batch_seed, pair):
        source, target = pair  # (B, S), (B, T + 1)
        draw = tf.random.stateless_uniform(
            tf.shape(source), seed=tf.stack([tf.constant(seed, tf.int64), batch_seed])
        )
        dropped = tf.logical_and(draw < rate, source > END_ID)  # real pieces only
        return tf.where(dropped, tf.constant(UNK_ID, source.dtype), source), target

    return tf.data.Dataset.zip(draws, dataset).map(drop, num_parallel_calls=AUTOTUNE)


def _both_directions(source, target) -> tf.data.Dataset:
    forward = tf.data.Dataset.from_tensors((source, target))
    return forward.concatenate(tf.data.Dataset.from_tensors((target, source)))


def _even_rows(source, target, replicas: int):
    rows = tf.shape(source)[0] // replicas * replicas
    return source[:rows], target[:rows]


def _shift(source, target):
    return (source, target[:, :-1]), target[:, 1:]


def padding_fraction(dataset: tf.data.Dataset) -> float:
    """Fraction of PAD tokens among all source and target-input positions of a dataset."""
    pads = total = 0
    for (source, target_in), _ in dataset.as_numpy_iterator():
        for ids in (source, target_in):
            pads += int(np.sum(ids == PAD_ID))
            total += ids.size
    return pads / max(total, 1)
