"""Scores of given translations: log P(target | source) under a run's model, per pair.

A pair's score is the sum, over the target's pieces and END, of the model's log-probability of
each given the source and the pieces before it (teacher forcing: one forward pass of the
decoder). It is the quantity greedy and beam search add up, so a search's own output scores what
the search reported (before beam search's length penalty). Used to filter or rerank translations,
and by `make score`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from translator.errors import CorpusError
from translator.tokenizer import END_ID, PAD_ID, START_ID, TokenizerPair


@dataclass(frozen=True)
class PairScore:
    """A pair's summed log-probability and the number of target tokens it covers (END too)."""

    log_prob: float
    tokens: int

    @property
    def per_token(self) -> float:
        return self.log_prob / self.tokens


def check_pairs(sources: list[str], targets: list[str]) -> None:
    if len(sources) != len(targets):
        raise CorpusError(f"{len(sources)} sources but {len(targets)} targets")


def check_target_length(index: int, length: int, max_positions: int) -> None:
    """A target of `length` pieces (END included) must fit the model's positions."""
    if length > max_positions:
        raise CorpusError(f"pair {index + 1}: the target has {length} tokens with END; the "
                          f"model's positions end at {max_positions}")  # fmt: skip


class ForcedScorer:
    """Scores pairs with a TensorFlow model (one traced graph for every batch shape).

    Args:
        model: the Transformer.
        tokenizers: its tokenizers.
        max_tokens: longest source in tokens (START/END included); longer ones are truncated,
            as translation truncates them.
        batch_size: pairs per forward pass.
    """

    def __init__(self, model, tokenizers: TokenizerPair, max_tokens: int, batch_size: int = 32):
        self.model, self.tokenizers = model, tokenizers
        self.max_tokens, self.batch_size = max_tokens, batch_size
        self._graph = tf.function(
            self.token_log_probs,
            input_signature=[tf.TensorSpec([None, None], tf.int32)] * 3,
            reduce_retracing=True,
        )

    def token_log_probs(self, source_ids, target_in, target_out):
        """(B, S), (B, T), (B, T) ids -> (B, T) float32 log-probabilities of `target_out`, 0 at
        padding."""
        memory, padding, _ = self.model.encode(source_ids)
        logits, _, _ = self.model.decode(target_in, memory, padding)
        log_probs = tf.nn.log_softmax(tf.cast(logits, tf.float32))
        chosen = tf.gather(log_probs, target_out, batch_dims=2)
        return tf.where(target_out == PAD_ID, 0.0, chosen)

    def score(self, sources: list[str], targets: list[str],
              progress: Callable[[int], None] | None = None) -> list[PairScore]:  # fmt: skip
        """Each pair's score, in order (batched by target length)."""
        check_pairs(sources, targets)
        target_ids = self.tokenizers.target.tokenize(targets).to_list()
        limit = self.model.max_positions
        for i, ids in enumerate(target_ids):
            check_target_length(i, len(ids) + 1, limit)
        order = np.argsort([len(ids) for ids in target_ids], kind="stable")
        results: list[PairScore | None] = [None] * len(sources)
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            sums = self._score_batch([sources[i] for i in chunk], [target_ids[i] for i in chunk])
            for i, total in zip(chunk, sums, strict=True):
                results[i] = PairScore(float(total), len(target_ids[i]) + 1)
            if progress:
                progress(len(chunk))
        return results  # type: ignore[return-value]

    def _score_batch(self, sources: list[str], targets: list[list[int]]) -> np.ndarray:
        ids = self.tokenizers.source.tokenize(sources)[:, : self.max_tokens - 2]
        source = tf.concat([tf.fill([ids.nrows(), 1], START_ID), ids,
                            tf.fill([ids.nrows(), 1], END_ID)], axis=1)  # fmt: skip
        width = max(map(len, targets)) + 1
        target_in = np.full((len(targets), width), PAD_ID, np.int32)
        target_out = np.full((len(targets), width), PAD_ID, np.int32)
        for b, row in enumerate(targets):
            target_in[b, : len(row) + 1] = [START_ID, *row]
            target_out[b, : len(row) + 1] = [*row, END_ID]
        log_probs = self._graph(source.to_tensor(PAD_ID), target_in, target_out)
        return tf.reduce_sum(log_probs, axis=1).numpy()
