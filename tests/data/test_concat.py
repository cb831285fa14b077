"""Concatenation augmentation (`data.concat`): joined examples against the pairs they came from."""

import numpy as np
import tensorflow as tf

from translator.data.concat import concat_pairs, example_of_pair
from translator.tokenizer import END_ID, START_ID

SPEC = (tf.TensorSpec([None], tf.int32), tf.TensorSpec([None], tf.int32))


def numbered_pairs(count: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pairs whose pieces name the pair: source i holds 1-4 copies of 10 + i, target 1-3 of
    -(10 + i) (as positive ids: 100000 + i), framed by START and END."""
    rng = np.random.default_rng(seed)
    pairs = []
    for i in range(count):
        source = [10 + i] * int(rng.integers(1, 5))
        target = [100000 + i] * int(rng.integers(1, 4))
        pairs.append((np.array([START_ID, *source, END_ID], np.int32),
                      np.array([START_ID, *target, END_ID], np.int32)))  # fmt: skip
    return pairs


def joined(pairs, rate, most=3, max_tokens=100, seed=7):
    dataset = tf.data.Dataset.from_generator(lambda: iter(pairs), output_signature=SPEC)
    return list(concat_pairs(dataset, rate, most, max_tokens, seed).as_numpy_iterator())


def runs(ids: np.ndarray, offset: int) -> list[int]:
    """The pair numbers an example's side joins, in order (its pieces between START and END
    name their pair: offset + number)."""
    body = ids[1:-1]
    return [int(v) - offset for k, v in enumerate(body) if k == 0 or body[k - 1] != v]


def members(source: np.ndarray) -> list[int]:
    return runs(source, 10)


def test_examples_join_consecutive_pairs_and_keep_every_piece_in_order():
    pairs = numbered_pairs(500)
    examples = joined(pairs, rate=0.4)
    order = []
    for source, target in examples:
        assert source[0] == target[0] == START_ID and source[-1] == target[-1] == END_ID
        assert END_ID not in source[1:-1] and START_ID not in source[1:-1]
        group = members(source)
        assert group == runs(target, 100000)
        assert group == list(range(group[0], group[0] + len(group)))  # consecutive pairs
        assert 1 <= len(group) <= 3
        order += group
    assert order == list(range(500))  # every pair exactly once, in stream order
    source_pieces = np.concatenate([s[1:-1] for s, _ in examples])
    np.testing.assert_array_equal(source_pieces, np.concatenate([s[1:-1] for s, _ in pairs]))


def test_rate_is_the_fraction_of_joined_examples_and_sizes_are_even():
    examples = joined(numbered_pairs(4000), rate=0.3, most=3)
    sizes = np.array([len(members(s)) for s, _ in examples])
    joined_fraction = np.mean(sizes > 1)
    # Windows of 64 pairs may cut their last example short: a little under the rate.
    assert 0.26 < joined_fraction < 0.33, joined_fraction
    twos, threes = np.sum(sizes == 2), np.sum(sizes == 3)
    assert abs(twos - threes) < 0.2 * (twos + threes)
    assert set(np.unique(sizes)) == {1, 2, 3}
    assert set(np.unique([len(members(s)) for s, _ in joined(numbered_pairs(500), 0.5, most=2)]))\
        == {1, 2}  # fmt: skip


def test_rate_zero_keeps_the_stream_and_seeds_repeat():
    pairs = numbered_pairs(300)
    for (source, target), (s, t) in zip(joined(pairs, rate=0.0), pairs, strict=True):
        np.testing.assert_array_equal(source, s)
        np.testing.assert_array_equal(target, t)
    first, again = joined(pairs, 0.5, seed=3), joined(pairs, 0.5, seed=3)
    other = joined(pairs, 0.5, seed=4)
    assert [members(s) for s, _ in first] == [members(s) for s, _ in again]
    assert [members(s) for s, _ in first] != [members(s) for s, _ in other]


def test_an_example_over_max_tokens_stays_as_its_single_pairs():
    pairs = numbered_pairs(600)
    examples = joined(pairs, rate=1.0, max_tokens=8)
    assert max(max(len(s), len(t)) for s, t in examples) <= 8
    singles = [members(s)[0] for s, _ in examples if len(members(s)) == 1]
    assert singles and any(len(members(s)) > 1 for s, _ in examples)
    assert sorted(sum((members(s) for s, _ in examples), [])) == list(range(600))
    # A single pair is only left alone where joining it would have been too long (or at the
    # end of a window of 64).
    assert len(singles) < len(examples)


def test_example_of_pair_literal_groups():
    groups = example_of_pair(tf.constant(10, tf.int64), 0.0, 3, tf.constant([1, 2], tf.int64))
    np.testing.assert_array_equal(groups, np.arange(10))
    groups = example_of_pair(tf.constant(9, tf.int64), 1.0, 2, tf.constant([1, 2], tf.int64))
    np.testing.assert_array_equal(groups, [0, 0, 1, 1, 2, 2, 3, 3, 4])


def test_a_saved_position_resumes_with_the_same_joined_examples(tmp_path):
    pairs = numbered_pairs(400)
    sources = tf.ragged.constant([source for source, _ in pairs])
    targets = tf.ragged.constant([target for _, target in pairs])
    shuffled = tf.data.Dataset.from_tensor_slices((sources, targets)).shuffle(50, seed=1)
    stream = concat_pairs(shuffled.repeat(), 0.5, 3, 100, seed=5)
    iterator = iter(stream)
    for _ in range(30):
        next(iterator)
    tf.train.Checkpoint(iterator=iterator).write(str(tmp_path / "position"))
    expected = [members(next(iterator)[0].numpy()) for _ in range(40)]
    again = iter(stream)
    tf.train.Checkpoint(iterator=again).read(str(tmp_path / "position")).expect_partial()
    assert [members(next(again)[0].numpy()) for _ in range(40)] == expected
