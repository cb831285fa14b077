"""Greedy and beam search over a next-logits function.

Both searches are model-agnostic: they call

    next_logits(token_ids (N, 1), index, state) -> (logits (N, V), state)

where `index` is the position being decoded, N is the number of hypotheses (B for greedy, B * K
for beam search) and `state` is any nest of tensors whose first dimension is N (for the
Transformer: its decoder cache and the source padding). Beam search reorders the state along
that first dimension when hypotheses are reordered.

Both run as `tf.while_loop`s with fixed shapes, so they compile into one graph (tf.function, XLA,
SavedModel). Scores are sums of token log-probabilities, divided for beam search by the GNMT
length penalty ((5 + length) / 6) ** alpha, where length counts the generated tokens with END.

Dimension letters: B batch, K beam size, V vocabulary, L maximum output length.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from translator.tokenizer import END_ID, PAD_ID, START_ID

NextLogits = Callable[[tf.Tensor, tf.Tensor, object], tuple[tf.Tensor, object]]
NEG_INF = -1.0e9  # search bookkeeping in float32 only; never used inside attention


def length_penalty(length, alpha: float):
    """GNMT length penalty ((5 + length) / 6) ** alpha."""
    return tf.pow((5.0 + tf.cast(length, tf.float32)) / 6.0, alpha)


def _set_column(tokens, column, values):
    """tokens (..., L) with position `column` replaced by values (...)."""
    positions = tf.range(tf.shape(tokens)[-1])
    return tf.where(positions == column, values[..., None], tokens)


def sentence_limits(limits, batch_size, max_length):
    """Each sentence's output length limit (B,): `limits`, or `max_length` for all."""
    if limits is None:
        return tf.fill([batch_size], tf.cast(max_length, tf.int32))
    return tf.minimum(tf.cast(limits, tf.int32), max_length)


def greedy_search(
    next_logits: NextLogits,
    state,
    batch_size,
    max_length,
    start_id: int = START_ID,
    end_id: int = END_ID,
    limits=None,
):
    """Pick the most probable token at each step until every sentence has produced END or
    reached its length limit (`limits` (B,), each at most `max_length`; default `max_length`).
    A sentence's result does not depend on the others in its batch.

    Returns:
        (tokens (B, L) int32 without START, END included, PAD after it;
         scores (B,) summed log-probabilities).
    """
    tokens = tf.fill([batch_size, max_length + 1], PAD_ID)
    tokens = _set_column(tokens, 0, tf.fill([batch_size], start_id))
    scores = tf.zeros([batch_size], tf.float32)
    finished = tf.zeros([batch_size], tf.bool)
    limits = sentence_limits(limits, batch_size, max_length)

    def not_done(i, tokens, scores, finished, state):
        return tf.logical_and(i < max_length, tf.logical_not(tf.reduce_all(finished)))

    def step(i, tokens, scores, finished, state):
        logits, state = next_logits(tokens[:, i : i + 1], i, state)
        log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32))  # (B, V)
        best = tf.cast(tf.argmax(log_probs, axis=-1), tf.int32)  # (B,)
        best = tf.where(finished, PAD_ID, best)
        gained = tf.reduce_max(log_probs, axis=-1)
        scores = scores + tf.where(finished, 0.0, gained)
        tokens = _set_column(tokens, i + 1, best)
        finished = tf.logical_or(finished, best == end_id)
        finished = tf.logical_or(finished, i + 1 >= limits)  # cut at its own limit
        return i + 1, tokens, scores, finished, state

    _, tokens, scores, _, _ = tf.while_loop(
        not_done, step, (tf.constant(0), tokens, scores, finished, state)
    )
    return tokens[:, 1:], scores


def beam_search(
    next_logits: NextLogits,
    state,
    batch_size,
    max_length,
    beam_size: int,
    alpha: float = 0.6,
    n_best: int = 1,
    start_id: int = START_ID,
    end_id: int = END_ID,
    limits=None,
):
    """Beam search with a length penalty.

    `state` is given per sentence (first dimension B) and is tiled to B * K here. Each sentence
    stops at its own length limit (`limits` (B,), each at most `max_length`; default
    `max_length`): from then on its hypotheses stay as they were, so a sentence's result does
    not depend on the others in its batch.

    Returns:
        (tokens (B, n_best, L) int32 without START, best first; scores (B, n_best)
         length-normalised log-probabilities).
    """
    k = beam_size
    if n_best > k:
        raise ValueError(f"n_best={n_best} cannot exceed beam_size={k}")
    state = tf.nest.map_structure(lambda t: tf.repeat(t, k, axis=0), state)  # (B*K, ...)
    seqs = tf.fill([batch_size, k, max_length + 1], PAD_ID)
    seqs = _set_column(seqs, 0, tf.fill([batch_size, k], start_id))  # (B, K, L+1)
    # Only the first beam is live at the start, so the K beams do not repeat one hypothesis.
    alive_log_probs = tf.tile(tf.constant([[0.0] + [NEG_INF] * (k - 1)]), [batch_size, 1])
    finished_seqs = tf.zeros_like(seqs)
    finished_scores = tf.fill([batch_size, k], NEG_INF)
    finished_flags = tf.zeros([batch_size, k], tf.bool)
    batch_index = tf.range(batch_size)[:, None]  # (B, 1)
    limits = sentence_limits(limits, batch_size, max_length)
    longest = length_penalty(limits, alpha)  # (B,) the largest penalty each sentence can reach

    def not_done(i, seqs, alive_log_probs, finished_seqs, finished_scores, finished_flags, state):
        # Stop once no sentence below its limit has a live hypothesis that can still beat the
        # worst finished one of its sentence.
        best_possible = alive_log_probs[:, 0] / longest
        worst_finished = tf.reduce_min(
            tf.where(finished_flags, finished_scores, tf.float32.max), axis=1
        )
        worst_finished = tf.where(tf.reduce_all(finished_flags, axis=1), worst_finished, NEG_INF)
        improvable = tf.reduce_any(tf.logical_and(best_possible > worst_finished, i < limits))
        return tf.logical_and(i < max_length, improvable)

    def step(i, seqs, alive_log_probs, finished_seqs, finished_scores, finished_flags, state):
        old = (seqs, alive_log_probs, finished_seqs, finished_scores, finished_flags)
        last = tf.reshape(seqs[:, :, i], [batch_size * k, 1])
        logits, state = next_logits(last, i, state)
        log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32))  # (B*K, V)
        vocab = tf.shape(log_probs)[-1]
        totals = alive_log_probs[:, :, None] + tf.reshape(log_probs, [batch_size, k, vocab])
        # The 2K best continuations: enough that K of them are still alive after END ones leave.
        top_log_probs, top_index = tf.math.top_k(tf.reshape(totals, [batch_size, k * vocab]), 2 * k)
        top_beam = top_index // vocab  # (B, 2K)
        top_token = top_index % vocab
        top_seqs = tf.gather(seqs, top_beam, batch_dims=1)  # (B, 2K, L+1)
        top_seqs = _set_column(top_seqs, i + 1, top_token)
        ended = top_token == end_id

        # Alive: the K best continuations that did not end.
        alive_candidates = tf.where(ended, NEG_INF, top_log_probs)
        alive_log_probs, alive_pick = tf.math.top_k(alive_candidates, k)  # (B, K)
        seqs = tf.gather(top_seqs, alive_pick, batch_dims=1)
        source_beam = tf.gather(top_beam, alive_pick, batch_dims=1)  # (B, K)
        flat = tf.reshape(batch_index * k + source_beam, [-1])  # (B*K,)
        state = tf.nest.map_structure(lambda t: tf.gather(t, flat), state)

        # Finished: merge the K kept so far with the continuations that ended now.
        new_scores = top_log_probs / length_penalty(i + 1, alpha)
        new_scores = tf.where(ended, new_scores, NEG_INF)
        all_seqs = tf.concat([finished_seqs, top_seqs], axis=1)  # (B, 3K, L+1)
        all_scores = tf.concat([finished_scores, new_scores], axis=1)
        all_flags = tf.concat([finished_flags, ended], axis=1)
        finished_scores, pick = tf.math.top_k(all_scores, k)
        finished_seqs = tf.gather(all_seqs, pick, batch_dims=1)
        finished_flags = tf.gather(all_flags, pick, batch_dims=1)
        # Sentences at their limit keep their hypotheses (their state rows run on unused).
        new = (seqs, alive_log_probs, finished_seqs, finished_scores, finished_flags)
        seqs, alive_log_probs, finished_seqs, finished_scores, finished_flags = [
            _keep_where(i >= limits, kept, value) for kept, value in zip(old, new, strict=True)
        ]
        return i + 1, seqs, alive_log_probs, finished_seqs, finished_scores, finished_flags, state

    loop = (
        tf.constant(0),
        seqs,
        alive_log_probs,
        finished_seqs,
        finished_scores,
        finished_flags,
        state,
    )
    _, seqs, alive_log_probs, finished_seqs, finished_scores, finished_flags, _ = tf.while_loop(
        not_done, step, loop
    )
    return _n_best(seqs, alive_log_probs, finished_seqs, finished_scores, finished_flags,
                   longest[:, None], n_best)  # fmt: skip


def _keep_where(stopped, kept, value):
    """`kept` for the sentences (B,) that have `stopped`, `value` for the others."""
    mask = tf.reshape(stopped, [-1] + [1] * (len(value.shape) - 1))
    return tf.where(mask, kept, value)


def _n_best(seqs, alive_log_probs, finished_seqs, finished_scores, finished_flags, penalty, n):
    """The n best hypotheses of each sentence: finished ones first, best first; unfinished ones
    (cut at the length limit, scored without END) only fill the places finished ones leave, so a
    truncated sentence never beats a finished one."""
    alive_scores = alive_log_probs / penalty  # (B, K)
    finished_key = tf.where(finished_flags, finished_scores, 3 * NEG_INF)  # empty slots last
    alive_key = alive_scores + 0.5 * NEG_INF  # below every finished hypothesis
    keys = tf.concat([finished_key, alive_key], axis=1)  # (B, 2K)
    _, pick = tf.math.top_k(keys, n)
    all_seqs = tf.concat([finished_seqs, seqs], axis=1)  # (B, 2K, L+1)
    all_scores = tf.concat([finished_scores, alive_scores], axis=1)
    tokens = tf.gather(all_seqs, pick, batch_dims=1)[:, :, 1:]  # (B, n, L) without START
    return tokens, tf.gather(all_scores, pick, batch_dims=1)
