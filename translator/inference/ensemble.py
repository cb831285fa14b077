"""Ensembles: several runs that share a vocabulary decode as one model.

`Ensemble` offers the methods the searches and the scorer call on a `Transformer` (encode,
init_cache, decode_step, decode), each run's model in turn: at every step the members'
log-probabilities of the next token are averaged (a log-linear interpolation with equal weights,
as Marian and OpenNMT ensemble), and the searches renormalise them. An ensemble of a run with
itself therefore decodes and scores exactly as the run. Runs with different tokenizers cannot be
combined: their token ids mean different pieces.
"""

from __future__ import annotations

import tensorflow as tf

from translator.errors import TranslatorError
from translator.model.transformer import Transformer
from translator.tokenizer import TokenizerPair


class Ensemble:
    """Several Transformers over one vocabulary, decoding together."""

    def __init__(self, models: list[Transformer]):
        self.models = list(models)
        self.max_positions = min(m.max_positions for m in self.models)
        self.num_layers = self.models[0].num_layers
        self.built = True

    def encode(self, source):
        """Each member's memory (a tuple), the source padding (the same for all), no weights."""
        encoded = [model.encode(source) for model in self.models]
        return tuple(memory for memory, _, _ in encoded), encoded[0][1], None

    def init_cache(self, memories) -> tuple:
        return tuple(m.init_cache(memory) for m, memory in zip(self.models, memories, strict=True))

    def decode_step(self, token_ids, caches, index, source_padding):
        """The members' mean log-probabilities of the next token, their caches, no weights."""
        steps = [m.decode_step(token_ids, cache, index, source_padding)
                 for m, cache in zip(self.models, caches, strict=True)]  # fmt: skip
        return (
            mean_log_probs([logits for logits, _, _ in steps]),
            tuple(c for _, c, _ in steps),
            None,
        )

    def decode(self, target_in, memories, source_padding, training=None):
        """Whole-prefix decoding: the members' mean log-probabilities (B, T, V)."""
        logits = [m.decode(target_in, memory, source_padding)[0]
                  for m, memory in zip(self.models, memories, strict=True)]  # fmt: skip
        return mean_log_probs(logits), None, None


def mean_log_probs(logits: list) -> tf.Tensor:
    """The mean of log softmax(logits) over the members, in float32."""
    log_probs = [tf.nn.log_softmax(tf.cast(one, tf.float32)) for one in logits]
    return tf.add_n(log_probs) / len(log_probs)


def check_shared_vocabulary(names: list[str], tokenizers: list[TokenizerPair]) -> None:
    """Refuse members whose source or target vocabulary differs from the first's."""
    first = tokenizers[0]
    for name, other in zip(names[1:], tokenizers[1:], strict=True):
        for side in ("source", "target"):
            if getattr(other, side).model_proto != getattr(first, side).model_proto:
                raise TranslatorError(
                    f"run_dir: {name} has another {side} vocabulary than {names[0]}: an "
                    "ensemble needs runs that share a tokenizer"
                )
