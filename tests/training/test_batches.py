"""The run's training stream through its data stages (BiT, then concatenation from a step)."""

import tensorflow as tf

from translator.training.batches import staged_stream


def stage_names(bidirectional_end, concat_start, accumulate, batches=10):
    """The (bidirectional, concat) stream each of the first `batches` batches came from."""

    def stream(bidirectional, concat):
        return tf.data.Dataset.from_tensors((bidirectional, concat)).repeat()

    staged = staged_stream(stream, bidirectional_end, concat_start, accumulate)
    return [tuple(bool(x) for x in batch) for batch in staged.take(batches)]


def test_reversed_pairs_end_and_joined_pairs_start_at_their_updates():
    # Updates of 2 batches: BiT for updates 0-1, joining from update 3.
    names = stage_names(tf.constant(2, tf.int64), tf.constant(3, tf.int64), accumulate=2)
    assert names == [(True, False)] * 4 + [(False, False)] * 2 + [(False, True)] * 4


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
