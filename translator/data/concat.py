"""Concatenation augmentation: training examples that join 2 or more random pairs.

A model trained only on short sentences drops or garbles content as soon as an input holds
several of them (docs/translation.md, "Paragraphs and documents"). Joining random training pairs,
source with source and target with target, shows it long inputs whose translation is the joined
translations (Nguyen et al., 2021, "Data augmentation by concatenation for low-resource NMT";
Kondo et al., 2021). The pairs of the stream are taken in windows of `WINDOW`; each window is cut
into examples of 1 pair (probability 1 - `rate`) or of 2 to `most` pairs (`rate`, sizes equally
likely), drawn from seeded stateless random numbers, so a run's stream is reproducible and its
position can be saved. An example whose joined source or target would exceed `max_tokens` stays
as its single pairs.
"""

from __future__ import annotations

import tensorflow as tf

from translator.tokenizer import with_start_end

AUTOTUNE = tf.data.AUTOTUNE
WINDOW = 64  # consecutive (shuffled) pairs cut into examples together


def concat_pairs(pairs: tf.data.Dataset, rate: float, most: int, max_tokens: int, seed: int
                 ) -> tf.data.Dataset:  # fmt: skip
    """(source_ids, target_ids) pairs, START/END included -> the same with a fraction `rate` of
    the examples joining 2 to `most` consecutive pairs (one START and one END each side)."""
    draws = tf.data.Dataset.random(seed=seed, rerandomize_each_iteration=True)
    windows = pairs.ragged_batch(WINDOW)

    def cut(draw, window):
        source, target = window
        draw_seed = tf.stack([tf.constant(seed, tf.int64), draw])
        groups = example_of_pair(source.nrows(), rate, most, draw_seed)
        groups = split_too_long(groups, bodies(source), bodies(target), max_tokens)
        source, target = join(source, groups), join(target, groups)
        return source.to_tensor(), source.row_lengths(), target.to_tensor(), target.row_lengths()

    def unpad(source, source_length, target, target_length):
        return source[:source_length], target[:target_length]

    joined = tf.data.Dataset.zip(draws, windows).map(cut, num_parallel_calls=AUTOTUNE)
    return joined.unbatch().map(unpad, num_parallel_calls=AUTOTUNE)


def example_of_pair(pairs: tf.Tensor, rate: float, most: int, seed: tf.Tensor) -> tf.Tensor:
    """For each of `pairs` consecutive pairs, the index of the example it belongs to (int64,
    non-decreasing from 0): examples of 1 pair, or with probability `rate` of 2..`most`."""
    joined = tf.random.stateless_uniform([pairs], seed) < rate
    extra = tf.random.stateless_uniform(
        [pairs], seed + 1, minval=2, maxval=most + 1, dtype=tf.int64
    )
    sizes = tf.where(joined, extra, tf.ones_like(extra))
    ends = tf.cumsum(sizes)  # example j covers pairs ends[j-1] .. ends[j] - 1
    return tf.searchsorted(ends, tf.range(pairs, dtype=tf.int64), side="right", out_type=tf.int64)


def bodies(ids: tf.RaggedTensor) -> tf.RaggedTensor:
    """Each row's pieces without START and END."""
    return ids[:, 1:-1]


def split_too_long(groups: tf.Tensor, source: tf.RaggedTensor, target: tf.RaggedTensor,
                   max_tokens: int) -> tf.Tensor:  # fmt: skip
    """`groups` renumbered so that the pairs of an example longer than `max_tokens` (START and
    END included) on either side become examples of their own."""
    count = tf.reduce_max(groups) + 1
    too_long = tf.zeros([count], tf.bool)
    for side in (source, target):
        length = tf.math.unsorted_segment_sum(side.row_lengths(), groups, count) + 2
        too_long = tf.logical_or(too_long, length > max_tokens)
    first = tf.concat([[True], groups[1:] != groups[:-1]], axis=0)
    starts = tf.logical_or(first, tf.gather(too_long, groups))
    return tf.cumsum(tf.cast(starts, tf.int64)) - 1


def join(ids: tf.RaggedTensor, groups: tf.Tensor) -> tf.RaggedTensor:
    """Rows of `ids` (START/END included) joined by `groups`: one START, the rows' pieces in
    order, one END per example."""
    pieces = bodies(ids)
    rows = tf.gather(groups, pieces.value_rowids())
    joined = tf.RaggedTensor.from_value_rowids(pieces.values, rows, nrows=groups[-1] + 1)
    return with_start_end(joined)
