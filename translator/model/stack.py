"""What the encoder and decoder stacks share: embedding, layers, and the pre-LN final norm."""

from __future__ import annotations

import keras

from translator.model.embedding import PositionalEmbedding


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
        policy = self.dtype_policy
        self.embedding = PositionalEmbedding(vocab_size, d_model, max_positions, dtype=policy)
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
            }
        )
        return config
