"""The run's training stream through its data stages (BiT, concatenation from and until a step)."""

import tensorflow as tf

from translator.training.batches import staged_stream


def stage_names(bidirectional_end, concat_start, accumulate, batches=10, concat_end=None):
    """The (bidirectional, concat) stream each of the first `batches` batches came from."""

    def stream(bidirectional, concat):
        return tf.data.Dataset.from_tensors((bidirectional, concat)).repeat()

    staged = staged_stream(stream, bidirectional_end, concat_start, concat_end, accumulate)
    return [tuple(bool(x) for x in batch) for batch in staged.take(batches)]


def step(number):
    return tf.constant(number, tf.int64)


def test_reversed_pairs_end_and_joined_pairs_start_at_their_updates():
    # Updates of 2 batches: BiT for updates 0-1, joining from update 3.
    names = stage_names(tf.constant(2, tf.int64), tf.constant(3, tf.int64), accumulate=2)
    assert names == [(True, False)] * 4 + [(False, False)] * 2 + [(False, True)] * 4


def test_joined_pairs_until_an_update_then_single_pairs_where_that_stream_was_left():
    # Joining for updates 0-2, then single pairs: that stream from its first batch on.
    names = stage_names(None, None, accumulate=1, batches=6, concat_end=step(3))
    assert names == [(False, True)] * 3 + [(False, False)] * 3

    def numbered(bidirectional, concat):
        return tf.data.Dataset.range(100 if concat else 0, 1000)

    # Updates of 2 batches: single pairs for update 0, joined for 1-2, single again from 3.
    staged = staged_stream(numbered, None, step(1), accumulate=2, concat_end=step(3))
    assert [int(x) for x in staged.take(10)] == [0, 1, 100, 101, 102, 103, 2, 3, 4, 5]


def test_a_stage_variable_moved_while_the_stream_runs_is_followed():
    start = tf.Variable(1000, dtype=tf.int64)
    batches = iter(staged_stream(
        lambda bidirectional, concat: tf.data.Dataset.from_tensors(concat).repeat(),
        None, start,
    ))  # fmt: skip
    first = [bool(next(batches)) for _ in range(3)]
    start.assign(50)  # further ahead than the batches the pipeline may have prepared
    rest = [bool(next(batches)) for _ in range(3, 60)]
    assert first + rest == [False] * 50 + [True] * 10


def test_without_stages_the_one_stream_joins_as_configured():
    assert stage_names(None, None, accumulate=1, batches=3) == [(False, True)] * 3
