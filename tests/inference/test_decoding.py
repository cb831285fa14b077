"""Greedy and beam search on scripted next-token distributions with hand-derived answers.

Vocabulary: 0 PAD, 1 UNK, 2 START, 3 END, 4 a, 5 b, 6 c. The next-token distribution depends on
the previous token only:
    START -> a .5, b .4, c .1        a -> c .7, END .3
    b     -> END .9, a .1            c -> END 1.0
Greedy follows a (.5), c (.7), END (1): "a c END", probability .35.
Beam search (K=2) also finds "b END" with probability .4 * .9 = .36, which wins at alpha=0; with
alpha=1 the GNMT penalty ((5+len)/6) favours the longer one: ln .35 / (8/6) > ln .36 / (7/6).
"""

import math

import numpy as np
import pytest
import tensorflow as tf

from translator.inference.decoding import beam_search, greedy_search, length_penalty, top_k

PAD, END, A, B, C = 0, 3, 4, 5, 6
TINY = 1e-12
PROBS = np.full((7, 7), TINY)
PROBS[2, [A, B, C]] = [0.5, 0.4, 0.1]
PROBS[A, [C, END]] = [0.7, 0.3]
PROBS[B, [END, A]] = [0.9, 0.1]
PROBS[C, END] = 1.0
PROBS[[0, 1, 3]] = 1.0 / 7  # unreachable rows (PAD, UNK, END)
LOG_TABLE = tf.constant(np.log(PROBS / PROBS.sum(1, keepdims=True)), tf.float32)
MAX_LENGTH = 6


def scripted(token_ids, index, state):
    return tf.gather(LOG_TABLE, token_ids[:, 0]), state


def padded(*tokens):
    return list(tokens) + [PAD] * (MAX_LENGTH - len(tokens))


def run_beam(beam_size, alpha, n_best, batch=2):
    state = {"dummy": tf.zeros([batch, 3])}  # reordered along with the beams
    tokens, scores = beam_search(scripted, state, batch, MAX_LENGTH, beam_size, alpha, n_best)
    return tokens.numpy(), scores.numpy()


def test_greedy_follows_the_most_probable_token():
    tokens, scores = greedy_search(scripted, {"dummy": tf.zeros([2, 1])}, 2, MAX_LENGTH)
    assert tokens.numpy().tolist() == [padded(A, C, END)] * 2
    np.testing.assert_allclose(scores.numpy(), [math.log(0.35)] * 2, atol=1e-5)


def test_beam_finds_the_more_probable_short_sentence():
    tokens, scores = run_beam(beam_size=2, alpha=0.0, n_best=2)
    assert tokens.tolist() == [[padded(B, END), padded(A, C, END)]] * 2
    np.testing.assert_allclose(scores, [[math.log(0.36), math.log(0.35)]] * 2, atol=1e-5)


def test_length_penalty_changes_the_winner():
    tokens, scores = run_beam(beam_size=2, alpha=1.0, n_best=2)
    assert tokens[0].tolist() == [padded(A, C, END), padded(B, END)]
    expected = [math.log(0.35) / (8 / 6), math.log(0.36) / (7 / 6)]
    np.testing.assert_allclose(scores[0], expected, atol=1e-5)


def test_beam_size_one_equals_greedy():
    tokens, scores = run_beam(beam_size=1, alpha=0.0, n_best=1)
    greedy_tokens, greedy_scores = greedy_search(scripted, {"d": tf.zeros([2, 1])}, 2, MAX_LENGTH)
    np.testing.assert_array_equal(tokens[:, 0], greedy_tokens.numpy())
    np.testing.assert_allclose(scores[:, 0], greedy_scores.numpy(), atol=1e-6)


def test_unfinished_hypotheses_fill_in_at_max_length():
    # With a budget of one token nothing can finish except "END" itself (probability ~0).
    tokens, scores = beam_search(scripted, {"d": tf.zeros([1, 1])}, 1, 1, beam_size=2, alpha=0.0)
    assert tokens.numpy().tolist() == [[[A]]]
    np.testing.assert_allclose(scores.numpy(), [[math.log(0.5)]], atol=1e-5)


def test_a_finished_hypothesis_beats_a_truncated_one_at_the_length_limit():
    """START -> a .55, b .42; a -> a .94; b -> END .95. With room for 3 tokens, "a a a" (never
    finished, ln .486 = -0.72) must not beat "b END" (ln .399 = -0.92)."""
    probs = np.full((7, 7), TINY)
    probs[2, [A, B, C]] = [0.55, 0.42, 0.03]
    probs[A, [A, END, C]] = [0.94, 0.03, 0.03]
    probs[B, [END, A]] = [0.95, 0.05]
    probs[[0, 1, 3, C]] = 1.0 / 7
    table = tf.constant(np.log(probs / probs.sum(1, keepdims=True)), tf.float32)

    def next_logits(token_ids, index, state):
        return tf.gather(table, token_ids[:, 0]), state

    def search(n_best):
        tokens, scores = beam_search(next_logits, {"d": tf.zeros([1, 1])}, 1, 3, 2, 0.0, n_best)
        return tokens.numpy().tolist(), scores.numpy()

    tokens, scores = search(n_best=1)
    assert tokens == [[[B, END, PAD]]]
    np.testing.assert_allclose(scores, [[math.log(0.42 * 0.95)]], atol=1e-4)
    # Asked for two, the second is the other finished one, "a END" (ln .0165), not "a a a":
    # truncated hypotheses only fill places no finished one takes (see the test above).
    tokens, scores = search(n_best=2)
    assert tokens == [[[B, END, PAD], [A, END, PAD]]]
    np.testing.assert_allclose(scores, [[math.log(0.399), math.log(0.55 * 0.03)]], atol=1e-3)


def test_length_penalty_formula():
    assert float(length_penalty(3, 0.6)) == pytest.approx(((5 + 3) / 6) ** 0.6)
    assert float(length_penalty(10, 0.0)) == 1.0


def test_n_best_cannot_exceed_beam():
    with pytest.raises(ValueError, match="n_best=3 cannot exceed beam_size=2"):
        run_beam(beam_size=2, alpha=0.0, n_best=3)


# A distribution that never ends: after any token, a .6, b .4 (END all but impossible).
ENDLESS = np.full((7, 7), TINY)
ENDLESS[:, [A, B]] = [0.6, 0.4]
ENDLESS_TABLE = tf.constant(np.log(ENDLESS / ENDLESS.sum(1, keepdims=True)), tf.float32)


def endless(token_ids, index, state):
    return tf.gather(ENDLESS_TABLE, token_ids[:, 0]), state


@pytest.mark.parametrize("search", ["greedy", "beam"])
def test_each_sentence_stops_at_its_own_length_limit_as_it_would_alone(search):
    def run(limits, max_length):
        state, batch = {"dummy": tf.zeros([len(limits), 1])}, len(limits)
        if search == "greedy":
            tokens, scores = greedy_search(endless, state, batch, max_length, limits=limits)
            return tokens.numpy()[:, None], scores.numpy()[:, None]
        tokens, scores = beam_search(endless, state, batch, max_length, beam_size=2, alpha=1.0,
                                     n_best=2, limits=limits)  # fmt: skip
        return tokens.numpy(), scores.numpy()

    tokens, scores = run(tf.constant([2, 5, 3]), max_length=5)
    for b, limit in enumerate([2, 5, 3]):
        real = tokens[b, 0][tokens[b, 0] != PAD]
        assert real.tolist() == [A] * limit  # cut at its own limit, not the batch's
        alone_tokens, alone_scores = run(tf.constant([limit]), max_length=limit)
        np.testing.assert_array_equal(tokens[b, :, :limit], alone_tokens[0])
        np.testing.assert_allclose(scores[b], alone_scores[0], rtol=1e-6)
    truncated = math.log(0.6) * 2  # "a a", cut at its limit of 2
    if search == "beam":
        truncated /= length_penalty(2, 1.0).numpy()  # normalised at the length it reached
    assert scores[0, 0] == pytest.approx(truncated, rel=1e-5)


# Per-sentence distributions: kind 0 ends at once (START -> END .9, a .1; a -> END), kind 1
# follows PROBS ("a c END" greedily, "b END" by beam search at alpha 0).
QUICK = np.full((7, 7), TINY)
QUICK[2, [END, A]] = [0.9, 0.1]
QUICK[A, END] = 1.0
KIND_TABLES = tf.constant(
    np.log(np.stack([t / t.sum(1, keepdims=True) for t in (QUICK, PROBS)])), tf.float32
)


@pytest.mark.parametrize(
    "kinds, rows", [([0, 0, 1], [6, 6, 2]), ([0, 1, 1], [6, 6, 6])], ids=["shrinks", "rides"]
)
def test_beam_search_drops_finished_sentences_once_half_have_finished(kinds, rows):
    """Two of three sentences finished: the state shrinks to the third's K rows; one of three:
    it rides along. Either way each sentence's result is its result alone."""
    rows_seen = []

    def by_kind(token_ids, index, state):
        rows_seen.append(int(token_ids.shape[0]))
        table = tf.gather(KIND_TABLES, state["kind"])  # (N, 7, 7)
        return tf.gather(table, token_ids[:, 0], batch_dims=1), state

    def run(kinds):
        state = {"kind": tf.constant(kinds, tf.int32)}
        return [t.numpy() for t in beam_search(by_kind, state, len(kinds), MAX_LENGTH, 2, 0.0, 2)]

    tokens, scores = run(kinds)
    assert rows_seen == rows  # START, then "b END" and "a c END" for kind 1
    for b, kind in enumerate(kinds):
        alone_tokens, alone_scores = run([kind])
        np.testing.assert_array_equal(tokens[b], alone_tokens[0])
        np.testing.assert_allclose(scores[b], alone_scores[0], rtol=1e-6)
    assert tokens[0, 0].tolist() == padded(END)


@pytest.mark.parametrize(
    "kinds, rows", [([1, 0, 0, 1, 0], [5, 2, 2]), ([0, 1, 1], [3, 3, 3])], ids=["halves", "rides"]
)
def test_greedy_search_halves_its_state_once_half_have_finished(kinds, rows):
    """Three of five sentences end at once: the state keeps two rows, the unfinished sentences'
    (their own kinds, so their own distributions); one of three: all ride along."""
    rows_seen = []

    def by_kind(token_ids, index, state):
        rows_seen.append(int(token_ids.shape[0]))
        table = tf.gather(KIND_TABLES, state["kind"])  # (N, 7, 7)
        return tf.gather(table, token_ids[:, 0], batch_dims=1), state

    state = {"kind": tf.constant(kinds, tf.int32)}
    tokens, scores = greedy_search(by_kind, state, len(kinds), MAX_LENGTH)
    assert rows_seen == rows
    for b, kind in enumerate(kinds):
        expected = padded(END) if kind == 0 else padded(A, C, END)
        assert tokens.numpy()[b].tolist() == expected
        probability = 0.9 if kind == 0 else 0.5 * 0.7
        assert scores.numpy()[b] == pytest.approx(math.log(probability), rel=1e-5)


@pytest.mark.parametrize("width", [3_000, 32_000, 32_001])
def test_chunked_top_k_equals_tensorflow_top_k_with_ties(width):
    """Values rounded to quarters tie often: the same values and indices, lower index first."""
    values = tf.round(tf.random.stateless_normal([16, width], seed=[3, width]) * 4)
    values = tf.tensor_scatter_nd_update(values, [[0, width - 1]], [100.0])  # in the last chunk
    expected, expected_index = tf.math.top_k(values, 8)
    got, index = top_k(values, 8)
    np.testing.assert_array_equal(index.numpy(), expected_index.numpy())
    np.testing.assert_array_equal(got.numpy(), expected.numpy())
    assert index.numpy()[0, 0] == width - 1


def test_greedy_search_continues_from_a_forced_prefix_whose_score_counts():
    """Sentence 0 must start with b (.4), then b -> END (.9); sentence 1 with c (.1), then END;
    sentence 2 has no prefix (all PAD) and decodes as without one."""
    prefix = tf.constant([[B, PAD], [C, PAD], [PAD, PAD]])
    tokens, scores = greedy_search(scripted, {"d": tf.zeros([3, 1])}, 3, MAX_LENGTH, prefix=prefix)
    assert tokens.numpy().tolist() == [padded(B, END), padded(C, END), padded(A, C, END)]
    expected = [math.log(0.4 * 0.9), math.log(0.1), math.log(0.35)]
    np.testing.assert_allclose(scores.numpy(), expected, atol=1e-5)


def test_a_prefix_forces_even_an_improbable_token():
    prefix = tf.constant([[A, A]])  # a -> a has probability ~1e-12
    tokens, scores = greedy_search(scripted, {"d": tf.zeros([1, 1])}, 1, MAX_LENGTH, prefix=prefix)
    assert tokens.numpy().tolist() == [padded(A, A, C, END)]
    assert scores.numpy()[0] == pytest.approx(math.log(0.5 * 0.7) + float(LOG_TABLE[A, A]), 1e-4)


def test_beam_search_opens_up_where_the_prefix_ends():
    """Unconstrained, "b END" (.36) wins at alpha 0; with prefix a, the best two are a c END
    (.35) and a END (.15), scored with the prefix's .5 included."""
    state = {"d": tf.zeros([2, 3])}
    prefix = tf.constant([[A], [PAD]])
    tokens, scores = beam_search(scripted, state, 2, MAX_LENGTH, 2, 0.0, 2, prefix=prefix)
    assert tokens.numpy()[0].tolist() == [padded(A, C, END), padded(A, END)]
    np.testing.assert_allclose(scores.numpy()[0], [math.log(0.35), math.log(0.15)], atol=1e-5)
    assert tokens.numpy()[1].tolist() == [padded(B, END), padded(A, C, END)]  # no prefix
    np.testing.assert_allclose(scores.numpy()[1], [math.log(0.36), math.log(0.35)], atol=1e-5)


def test_beam_search_with_a_prefix_as_long_as_the_limit_returns_the_prefix():
    prefix = tf.constant([[B, A, C]])  # b a c, no room for END within 3 tokens
    tokens, _ = beam_search(scripted, {"d": tf.zeros([1, 1])}, 1, 3, 2, 0.0, 1, prefix=prefix)
    assert tokens.numpy().tolist() == [[[B, A, C]]]
