"""Token embedding scaled by sqrt(d_model) plus fixed sinusoidal positions.

Dimension letters: B batch, L sequence length, D model width, V vocabulary size.
"""

from __future__ import annotations

import math

import keras
import numpy as np
from keras import ops


def sinusoidal_positions(length: int, depth: int) -> np.ndarray:
    """The (length, depth) table of Vaswani et al.: sin on even channels, cos on odd ones."""
    positions = np.arange(length)[:, None]  # (L, 1)
    rates = 1.0 / np.power(10000.0, (2 * (np.arange(depth) // 2)) / depth)  # (D,)
    angles = positions * rates[None, :]  # (L, D)
    table = np.zeros((length, depth), np.float32)
    table[:, 0::2] = np.sin(angles[:, 0::2])
    table[:, 1::2] = np.cos(angles[:, 1::2])
    return table


@keras.saving.register_keras_serializable(package="translator")
class PositionalEmbedding(keras.layers.Layer):
    """Token embedding * sqrt(D) + sinusoidal position encoding.

    Args:
        vocab_size: V.
        d_model: D.
        max_positions: length of the position table.

    Call arguments:
        token_ids: int (B, L).
        start: position of the first token (cached decoding feeds one token at position `start`).

    Returns:
        (B, L, D).
    """

    def __init__(self, vocab_size: int, d_model: int, max_positions: int = 1024, **kwargs):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.d_model = d_model
        self.max_positions = max_positions
        self.token_embedding = keras.layers.Embedding(
            vocab_size, d_model, dtype=self.dtype_policy, name="token_embedding"
        )
        self.positions = sinusoidal_positions(max_positions, d_model)

    def build(self, input_shape):
        self.token_embedding.build(input_shape)
        self.built = True

    def call(self, token_ids, start=0):
        length = ops.shape(token_ids)[1]
        x = self.token_embedding(token_ids)  # (B, L, D)
        x = x * ops.cast(math.sqrt(self.d_model), x.dtype)
        positions = ops.slice(
            ops.convert_to_tensor(self.positions), (start, 0), (length, self.d_model)
        )
        return x + ops.cast(positions, x.dtype)[None]  # (B, L, D)

    def logits(self, x):
        """Tied output projection: (B, L, D) -> (B, L, V) with the embedding matrix."""
        return ops.matmul(x, ops.transpose(ops.cast(self.token_embedding.embeddings, x.dtype)))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocab_size": self.vocab_size,
                "d_model": self.d_model,
                "max_positions": self.max_positions,
            }
        )
        return config
