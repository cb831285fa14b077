"""What encoder and decoder share: the layer base (settings, dropout rates, feed-forward block)
and the stack base (embedding, layers, and the pre-LN final norm)."""

from __future__ import annotations

import keras

from translator.model.attention import MultiHeadAttention
from translator.model.embedding import PositionalEmbedding
from translator.model.feed_forward import FeedForward
from translator.model.residual import Residual


class TransformerLayer(keras.layers.Layer):
    """Settings and parts every encoder and decoder layer has. Subclasses create their attention
    blocks with `attention` and `residual`, then call `build_feed_forward`, and write `call`.

    Args:
        d_model: width D (divisible by num_heads).
        num_heads: H.
        dff: feed-forward inner width.
        dropout: rate for residual branches (and, unless set apart, the two below).
        norm_first: pre-layer-norm when True, post-layer-norm otherwise.
        attention_dropout: rate for attention weights (None: `dropout`).
        activation_dropout: rate inside the feed-forward block (None: `dropout`).
        attention_score: the attention score function (`translator.model.scores`).
    """

    def __init__(
        self,
        d_model,
        num_heads,
        dff,
        dropout=0.1,
        norm_first=False,
        attention_dropout=None,
        activation_dropout=None,
        attention_score="scaled_dot",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.d_model = d_model
        self.num_heads = num_heads
        self.dff = dff
        self.dropout = dropout
        self.norm_first = norm_first
        self.attention_dropout = attention_dropout
        self.activation_dropout = activation_dropout
        self.attention_score = attention_score

    def attention(self, name: str) -> MultiHeadAttention:
        rate = self.dropout if self.attention_dropout is None else self.attention_dropout
        return MultiHeadAttention(
            self.num_heads,
            self.d_model // self.num_heads,
            dropout=rate,
            score=self.attention_score,
            dtype=self.dtype_policy,
            name=name,
        )

    def residual(self) -> Residual:
        return Residual(self.dropout, self.norm_first, dtype=self.dtype_policy)

    def build_feed_forward(self):
        rate = self.dropout if self.activation_dropout is None else self.activation_dropout
        self.feed_forward = FeedForward(
            self.d_model, self.dff, rate, dtype=self.dtype_policy, name="feed_forward"
        )
        self.feed_forward_residual = self.residual()

    def feed_forward_block(self, x, training=None):
        h = self.feed_forward(self.feed_forward_residual.normed(x), training=training)
        return self.feed_forward_residual(x, h, training=training)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "d_model": self.d_model,
                "num_heads": self.num_heads,
                "dff": self.dff,
                "dropout": self.dropout,
                "norm_first": self.norm_first,
                "attention_dropout": self.attention_dropout,
                "activation_dropout": self.activation_dropout,
                "attention_score": self.attention_score,
            }
        )
        return config


class TransformerStack(keras.layers.Layer):
    """Embedding, embedding dropout, `num_layers` layers of `layer_class`, and a final layer norm
    when the layers are pre-LN. Subclasses set `layer_class` and write `call`.

    Args:
        vocab_size: vocabulary of the stack's input tokens.
        num_layers: number of layers.
        d_model: width D.
        num_heads: attention heads (divide D).
        dff: feed-forward inner width.
        dropout: dropout rate (embeddings and residual branches).
        norm_first: pre-layer-norm when True.
        attention_dropout: rate for attention weights (None: `dropout`).
        activation_dropout: rate inside the feed-forward blocks (None: `dropout`).
        max_positions: length of the sinusoidal position table.
        attention_score: the attention score function (`translator.model.scores`).
        embedding: a `PositionalEmbedding` to use instead of a new one (shared with another
            stack); not part of the config.
    """

    layer_class: type[keras.layers.Layer]

    def __init__(
        self,
        vocab_size,
        num_layers,
        d_model,
        num_heads,
        dff,
        dropout=0.1,
        norm_first=False,
        max_positions=1024,
        attention_dropout=None,
        activation_dropout=None,
        attention_score="scaled_dot",
        embedding=None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.vocab_size = vocab_size
        self.num_layers = num_layers
        self.d_model = d_model
        self.num_heads = num_heads
        self.dff = dff
        self.dropout = dropout
        self.norm_first = norm_first
        self.max_positions = max_positions
        self.attention_dropout = attention_dropout
        self.activation_dropout = activation_dropout
        self.attention_score = attention_score
        policy = self.dtype_policy
        self.embedding = embedding or PositionalEmbedding(
            vocab_size, d_model, max_positions, dtype=policy
        )
        self.embedding_dropout = keras.layers.Dropout(dropout, dtype=policy)
        self.layers = [
            self.layer_class(
                d_model,
                num_heads,
                dff,
                dropout,
                norm_first,
                attention_dropout=attention_dropout,
                activation_dropout=activation_dropout,
                attention_score=attention_score,
                dtype=policy,
                name=f"layer_{i}",
            )
            for i in range(num_layers)
        ]
        self.final_norm = (
            keras.layers.LayerNormalization(epsilon=1e-6, dtype=policy) if norm_first else None
        )

    def embed(self, token_ids, start=0, training=None):
        """Token ids (B, L) -> (B, L, D) embeddings with positions from `start`, then dropout."""
        return self.embedding_dropout(self.embedding(token_ids, start=start), training=training)

    def final(self, x):
        """The final layer norm of a pre-LN stack (identity for post-LN)."""
        return x if self.final_norm is None else self.final_norm(x)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "vocab_size": self.vocab_size,
                "num_layers": self.num_layers,
                "d_model": self.d_model,
                "num_heads": self.num_heads,
                "dff": self.dff,
                "dropout": self.dropout,
                "norm_first": self.norm_first,
                "max_positions": self.max_positions,
                "attention_dropout": self.attention_dropout,
                "activation_dropout": self.activation_dropout,
                "attention_score": self.attention_score,
            }
        )
        return config
