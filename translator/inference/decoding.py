"""Greedy and beam search over a next-logits function.

Both searches are model-agnostic: they call

    next_logits(token_ids (N, 1), index, state) -> (logits (N, V), state)

where `index` is the position being decoded, N is the number of hypotheses still being decoded
(at most B for greedy, B * K for beam search) and `state` is any nest of tensors whose first
dimension is N (for the Transformer: its decoder cache and the source padding); their other
dimensions may change from step to step (the self-attention cache grows by one position). Beam
search reorders the state along that first dimension when hypotheses are reordered.

Both run as `tf.while_loop`s, so they compile into one graph (tf.function, SavedModel); beam
search drops finished sentences from its state. Either may be given a target prefix per sentence:
its tokens are forced at the first steps (their log-probabilities count in the score), and the
search continues from there. Scores are sums of token log-probabilities, divided
for beam search by the GNMT length penalty ((5 + length) / 6) ** alpha, where length counts the
generated tokens with END.

Dimension letters: B batch, K beam size, V vocabulary, L maximum output length.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from translator.tokenizer import END_ID, PAD_ID, START_ID

NextLogits = Callable[[tf.Tensor, tf.Tensor, object], tuple[tf.Tensor, object]]
NEG_INF = -1.0e9  # search bookkeeping in float32 only; never used inside attention
TOP_K_CHUNK = 64  # `top_k` splits wide rows into chunks this wide


def length_penalty(length, alpha):
    """GNMT length penalty ((5 + length) / 6) ** alpha."""
    return tf.pow((5.0 + tf.cast(length, tf.float32)) / 6.0, alpha)


def _set_column(tokens, column, values):
    """tokens (..., L) with position `column` replaced by values (...)."""
    positions = tf.range(tf.shape(tokens)[-1])
    return tf.where(positions == column, values[..., None], tokens)


def top_k(values, k: int):
    """`tf.math.top_k(values, k)` along the last axis of (N, W), the same values and indices
    (ties: the lower index first), in two cheap stages for wide rows: the k chunks with the
    largest maxima hold every one of the k largest values, so only they are searched.
    TensorFlow's own top_k takes about 1.3 ms for (32, 32000) on a 2-core CPU; this, a fifth."""
    width = values.shape[-1]
    if width is None or width < 8 * k * TOP_K_CHUNK:
        return tf.math.top_k(values, k)
    rows = tf.shape(values)[0]
    count = -(-width // TOP_K_CHUNK)
    padded = tf.pad(
        values, [[0, 0], [0, count * TOP_K_CHUNK - width]], constant_values=-float("inf")
    )
    chunks = tf.reshape(padded, [rows, count, TOP_K_CHUNK])
    _, best = tf.math.top_k(tf.reduce_max(chunks, axis=-1), k)  # (N, k) chunk numbers
    best = tf.sort(best, axis=-1)  # candidates in index order, so ties keep the lower index
    candidates = tf.reshape(tf.gather(chunks, best, batch_dims=1), [rows, k * TOP_K_CHUNK])
    top, position = tf.math.top_k(candidates, k)
    chunk = tf.gather(best, position // TOP_K_CHUNK, batch_dims=1)
    return top, chunk * TOP_K_CHUNK + position % TOP_K_CHUNK


def force_tokens(log_probs, forced):
    """`log_probs` (N, V) where each row with a forced token (`forced` (N,); PAD: none) can only
    take that token: every other one gets NEG_INF, the forced one keeps its log-probability."""
    other = tf.range(tf.shape(log_probs)[-1])[None, :] != forced[:, None]
    return tf.where(tf.logical_and(forced[:, None] != PAD_ID, other), NEG_INF, log_probs)


def prefix_columns(prefix, max_length):
    """A prefix (B, P) of target ids (PAD after each sentence's own), or None, as (B,
    max_length + 1): column i holds the token forced at step i, PAD where none is."""
    if prefix is None:
        return None
    padded = tf.pad(tf.cast(prefix, tf.int32), [[0, 0], [0, max_length + 1]],
                    constant_values=PAD_ID)  # fmt: skip
    return padded[:, : max_length + 1]


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
    choose=None,
    prefix=None,
):
    """Pick the most probable token at each step (or the one `choose(log_probs (A, V), step)`
    returns (A,), such as `Sampler.choose`) until every sentence has produced END or
    reached its length limit (`limits` (B,), each at most `max_length`; default `max_length`).
    `prefix` (B, P), PAD-padded target ids: each sentence's first tokens, forced.
    A sentence's result does not depend on the others in its batch. Once half the state's rows
    or more have finished, the state keeps only half of them, the unfinished ones first: decoding
    a finished row costs as much as a live one, and halving keeps the distinct shapes few.

    Returns:
        (tokens (B, L) int32 without START, END included, PAD after it;
         scores (B,) summed log-probabilities).
    """
    tokens = tf.fill([batch_size, max_length + 1], PAD_ID)
    tokens = _set_column(tokens, 0, tf.fill([batch_size], start_id))
    scores = tf.zeros([batch_size], tf.float32)
    finished = tf.zeros([batch_size], tf.bool)
    limits = sentence_limits(limits, batch_size, max_length)
    rows = tf.range(batch_size)  # the sentences in the state, in its order (A,)
    forced = prefix_columns(prefix, max_length)

    def not_done(i, tokens, scores, finished, rows, state):
        return tf.logical_and(i < max_length, tf.logical_not(tf.reduce_all(finished)))

    def step(i, tokens, scores, finished, rows, state):
        logits, state = next_logits(tf.gather(tokens[:, i], rows)[:, None], i, state)
        log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32))  # (A, V)
        if forced is not None:
            log_probs = force_tokens(log_probs, tf.gather(forced[:, i], rows))
        done = tf.gather(finished, rows)
        if choose is None:
            best = tf.cast(tf.argmax(log_probs, axis=-1), tf.int32)  # (A,)
        else:
            best = tf.cast(choose(log_probs, i), tf.int32)
        gained = tf.gather(log_probs, best, batch_dims=1)
        best = tf.where(done, PAD_ID, best)
        gained = tf.where(done, 0.0, gained)
        scores = tf.tensor_scatter_nd_add(scores, rows[:, None], gained)
        column = tf.tensor_scatter_nd_update(tf.fill([batch_size], PAD_ID), rows[:, None], best)
        tokens = _set_column(tokens, i + 1, column)
        done = tf.logical_or(done, best == end_id)
        done = tf.logical_or(done, i + 1 >= tf.gather(limits, rows))  # cut at its own limit
        finished = tf.tensor_scatter_nd_update(finished, rows[:, None], done)
        state, rows = _halve_when_half_finished(state, rows, done)
        return i + 1, tokens, scores, finished, rows, state

    loop = (tf.constant(0), tokens, scores, finished, rows, state)
    invariants = (*(t.shape for t in loop[:4]), tf.TensorShape([None]), _any_shape(state))
    _, tokens, scores, _, _, _ = tf.while_loop(not_done, step, loop, shape_invariants=invariants)
    return tokens[:, 1:], scores


class Sampler:
    """Draws each next token at random from the model's distribution: among the `top_k` most
    probable (0: all; 1: the most probable, greedy search), then among the most probable whose
    probabilities sum to `top_p` (nucleus sampling; 1: all), from the logits divided by
    `temperature`. Draws depend only on `seed` (a (2,) tensor), the step and the row, so
    the same batch decoded with the same seed gives the same tokens."""

    def __init__(self, seed, top_k: int = 0, top_p: float = 1.0, temperature: float = 1.0):
        self.seed = tf.cast(seed, tf.int32)
        self.top_k, self.top_p, self.temperature = int(top_k), float(top_p), float(temperature)

    def choose(self, log_probs, step):
        """The drawn token of each row of log_probs (A, V): (A,) int32."""
        if self.top_k == 1:
            return tf.cast(tf.argmax(log_probs, axis=-1), tf.int32)
        logits = log_probs / self.temperature
        if self.top_k > 1:
            kth = top_k(logits, self.top_k)[0][:, -1:]
            logits = tf.where(logits < kth, -float("inf"), logits)
        if self.top_p < 1.0:
            logits = nucleus(logits, self.top_p)
        seed = tf.random.experimental.stateless_fold_in(self.seed, step)
        drawn = tf.random.stateless_categorical(logits, 1, seed, dtype=tf.int32)
        return drawn[:, 0]


def nucleus(logits, p: float):
    """`logits` (A, V) with -inf outside each row's nucleus: the fewest most probable tokens
    whose probabilities sum to at least `p` (always the most probable one)."""
    ranked = tf.sort(logits, axis=-1, direction="DESCENDING")
    before = tf.math.cumsum(tf.nn.softmax(ranked), axis=-1, exclusive=True)
    kept = tf.where(before < p, ranked, float("inf"))
    smallest = tf.reduce_min(kept, axis=-1, keepdims=True)  # the least probable token kept
    return tf.where(logits < smallest, -float("inf"), logits)


def _halve_when_half_finished(state, rows, done):
    """Once half the rows (A,) or more are done, the state and rows of half of them, the ones
    not done first; otherwise all of them."""
    count = tf.size(rows)
    half = count // 2
    shrink = tf.logical_and(half > 0, tf.reduce_sum(tf.cast(done, tf.int32)) >= count - half)

    def keep_half():
        keep = tf.argsort(tf.cast(done, tf.int32), stable=True)[:half]
        return _gather_rows(state, keep), tf.gather(rows, keep)

    return tf.cond(shrink, keep_half, lambda: (state, rows))


def beam_search(
    next_logits: NextLogits,
    state,
    batch_size,
    max_length,
    beam_size: int,
    alpha: float | tf.Tensor = 0.6,
    n_best: int | tf.Tensor = 1,
    start_id: int = START_ID,
    end_id: int = END_ID,
    limits=None,
    reorder=None,
    prefix=None,
):
    """Beam search with a length penalty.

    `state` is given per sentence (first dimension B) and is tiled to B * K here. A sentence
    stops searching when no live hypothesis of it can still beat its worst finished one, or at
    its own length limit (`limits` (B,), each at most `max_length`; default `max_length`), so
    its result does not depend on the others in its batch. Once half the state's sentences or
    more have stopped, the state drops them (halving keeps the distinct shapes, each of which
    costs oneDNN a new kernel, few).

    `alpha` and `n_best` may be scalar tensors (one graph for every value); `beam_size` fixes
    the state's shapes and must be a Python integer.

    `prefix` (B, P), PAD-padded target ids: each sentence's first tokens, forced (its K
    hypotheses share them, so the beam opens up where its prefix ends).

    `reorder(state, rows)` gives the state of the hypotheses kept, rows (N,) of the old one; by
    default every tensor is gathered. A model whose state holds per-sentence parts (the same for
    all K hypotheses of a sentence, such as cross-attention keys) can skip those.

    Returns:
        (tokens (B, n_best, L) int32 without START, best first; scores (B, n_best)
         length-normalised log-probabilities).
    """
    k = beam_size
    if not tf.is_tensor(n_best) and n_best > k:
        raise ValueError(f"n_best={n_best} cannot exceed beam_size={k}")
    state = tf.nest.map_structure(lambda t: tf.repeat(t, k, axis=0), state)  # (B*K, ...)
    seqs = tf.fill([batch_size, k, max_length + 1], PAD_ID)
    seqs = _set_column(seqs, 0, tf.fill([batch_size, k], start_id))  # (B, K, L+1)
    # Only the first beam is live at the start, so the K beams do not repeat one hypothesis.
    alive_log_probs = tf.tile(tf.constant([[0.0] + [NEG_INF] * (k - 1)]), [batch_size, 1])
    finished_seqs = tf.zeros_like(seqs)
    finished_scores = tf.fill([batch_size, k], NEG_INF)
    finished_flags = tf.zeros([batch_size, k], tf.bool)
    limits = sentence_limits(limits, batch_size, max_length)
    longest = length_penalty(limits, alpha)  # (B,) the largest penalty each sentence can reach
    search = (seqs, alive_log_probs, finished_seqs, finished_scores, finished_flags)
    sentences = tf.range(batch_size)  # the sentences in the state, in its order (A,)
    searching = tf.ones([batch_size], tf.bool)  # which of them are still searching
    forced = prefix_columns(prefix, max_length)

    def not_done(i, search, sentences, searching, state):
        return tf.logical_and(i < max_length, tf.reduce_any(searching))

    def step(i, search, sentences, searching, state):
        mine = [tf.gather(t, sentences) for t in search]
        tokens = None if forced is None else tf.repeat(tf.gather(forced[:, i], sentences), k)
        new, rows, state = _beam_step(next_logits, i, mine, state, k, alpha, end_id, tokens)
        state = (reorder or _gather_rows)(state, rows)
        # Only searching sentences take the step's results; finished ones ride along unchanged.
        live = tf.boolean_mask(sentences, searching)
        parts = [tf.boolean_mask(part, searching) for part in new]
        search = tuple(_scatter(t, live, part) for t, part in zip(search, parts, strict=True))
        # Leaving: at its limit, or no live hypothesis can beat the worst finished one.
        _, alive, _, scores, flags = new
        best_possible = alive[:, 0] / tf.gather(longest, sentences)
        worst_finished = tf.reduce_min(tf.where(flags, scores, tf.float32.max), axis=1)
        hopeless = tf.logical_and(tf.reduce_all(flags, axis=1), best_possible <= worst_finished)
        done = tf.logical_or(hopeless, i + 1 >= tf.gather(limits, sentences))
        searching = tf.logical_and(searching, tf.logical_not(done))
        # Shrink the state once half of it or less is still searching: few distinct shapes.
        shrink = 2 * tf.reduce_sum(tf.cast(searching, tf.int32)) <= tf.size(sentences)
        state, sentences, searching = tf.cond(
            shrink,
            lambda: _keep_searching(state, sentences, searching, k),
            lambda: (state, sentences, searching),
        )
        return i + 1, search, sentences, searching, state

    invariants = (
        tf.TensorShape([]),
        tuple(t.shape for t in search),
        tf.TensorShape([None]),
        tf.TensorShape([None]),
        _any_shape(state),
    )
    loop = (tf.constant(0), search, sentences, searching, state)
    _, search, _, _, _ = tf.while_loop(not_done, step, loop, shape_invariants=invariants)
    return _n_best(*search, longest[:, None], n_best)


def _any_shape(state):
    """Shape invariants letting every dimension of the state's tensors change between steps."""
    return tf.nest.map_structure(lambda t: tf.TensorShape([None] * t.shape.rank), state)


def _beam_step(next_logits, i, search, state, k, alpha, end_id, forced=None):
    """One step for A sentences: their new (seqs, alive log-probs, finished seqs, scores, flags),
    the rows (A * K,) of the state their live hypotheses continue, and the stepped state.
    `forced` (A * K,): each hypothesis's forced token at this step (PAD: none), or None."""
    seqs, alive_log_probs, finished_seqs, finished_scores, finished_flags = search
    count = tf.shape(seqs)[0]
    last = tf.reshape(seqs[:, :, i], [count * k, 1])
    logits, state = next_logits(last, i, state)
    log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32))  # (A*K, V)
    if forced is not None:
        log_probs = force_tokens(log_probs, forced)
    vocab = tf.shape(log_probs)[-1]
    totals = alive_log_probs[:, :, None] + tf.reshape(log_probs, [count, k, vocab])
    # The 2K best continuations: enough that K of them are still alive after END ones leave.
    top_log_probs, top_index = top_k(tf.reshape(totals, [count, k * vocab]), 2 * k)
    top_beam = top_index // vocab  # (A, 2K)
    top_token = top_index % vocab
    top_seqs = tf.gather(seqs, top_beam, batch_dims=1)  # (A, 2K, L+1)
    top_seqs = _set_column(top_seqs, i + 1, top_token)
    # Continuations of dead hypotheses (NEG_INF: the K - 1 empty beams at the start, every
    # token but the forced one in a prefix) never finish.
    ended = tf.logical_and(top_token == end_id, top_log_probs > 0.5 * NEG_INF)

    # Alive: the K best continuations that did not end.
    alive_candidates = tf.where(ended, NEG_INF, top_log_probs)
    alive_log_probs, alive_pick = tf.math.top_k(alive_candidates, k)  # (A, K)
    seqs = tf.gather(top_seqs, alive_pick, batch_dims=1)
    source_beam = tf.gather(top_beam, alive_pick, batch_dims=1)  # (A, K)
    rows = tf.reshape(tf.range(count)[:, None] * k + source_beam, [-1])  # (A*K,)

    # Finished: merge the K kept so far with the continuations that ended now.
    new_scores = tf.where(ended, top_log_probs / length_penalty(i + 1, alpha), NEG_INF)
    all_seqs = tf.concat([finished_seqs, top_seqs], axis=1)  # (A, 3K, L+1)
    all_scores = tf.concat([finished_scores, new_scores], axis=1)
    all_flags = tf.concat([finished_flags, ended], axis=1)
    finished_scores, pick = tf.math.top_k(all_scores, k)
    finished_seqs = tf.gather(all_seqs, pick, batch_dims=1)
    finished_flags = tf.gather(all_flags, pick, batch_dims=1)
    return (seqs, alive_log_probs, finished_seqs, finished_scores, finished_flags), rows, state


def _keep_searching(state, sentences, searching, k):
    """The state rows, sentences and flags of the sentences still searching."""
    keep = tf.cast(tf.where(searching)[:, 0], tf.int32)
    rows = tf.reshape(keep[:, None] * k + tf.range(k)[None, :], [-1])
    return _gather_rows(state, rows), tf.gather(sentences, keep), tf.gather(searching, keep)


def _scatter(full, rows, part):
    """`full` with its rows `rows` replaced by `part`."""
    return tf.tensor_scatter_nd_update(full, rows[:, None], part)


def _gather_rows(state, rows):
    return tf.nest.map_structure(lambda t: tf.gather(t, rows), state)


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
