"""Transformer encoder: embedding, then a stack of self-attention + feed-forward layers.

Dimension letters: B batch, S source length, D model width, H heads.
"""

from __future__ import annotations

import keras

from translator.model.attention import MultiHeadAttention
from translator.model.feed_forward import FeedForward
from translator.model.masks import merge_masks, padding_mask
from translator.model.residual import Residual
from translator.model.stack import TransformerStack


@keras.saving.register_keras_serializable(package="translator")
class EncoderLayer(keras.layers.Layer):
    """Self-attention block then feed-forward block, each with a residual and layer norm.

    Args:
        d_model: width D (divisible by num_heads).
        num_heads: H.
        dff: feed-forward inner width.
        dropout: rate for residual branches (and, unless set apart, the two below).
        attention_dropout: rate for attention weights (None: `dropout`).
        activation_dropout: rate inside the feed-forward block (None: `dropout`).
        norm_first: pre-layer-norm when True, post-layer-norm otherwise.

    Call arguments:
        x: (B, S, D).
        mask: boolean (B, S, S), True = may attend.

    Returns:
        (output (B, S, D), self-attention weights (B, H, S, S)).
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
        attention_rate = dropout if attention_dropout is None else attention_dropout
        activation_rate = dropout if activation_dropout is None else activation_dropout
        policy = self.dtype_policy
        self.self_attention = MultiHeadAttention(
            num_heads,
            d_model // num_heads,
            dropout=attention_rate,
            dtype=policy,
            name="self_attention",
        )
        self.attention_residual = Residual(dropout, norm_first, dtype=policy)
        self.feed_forward = FeedForward(
            d_model, dff, activation_rate, dtype=policy, name="feed_forward"
        )
        self.feed_forward_residual = Residual(dropout, norm_first, dtype=policy)

    def call(self, x, mask, training=None):
        # Self-attention block.
        h = self.attention_residual.normed(x)
        h, weights = self.self_attention(
            h, h, attention_mask=mask, return_attention_scores=True, training=training
        )
        x = self.attention_residual(x, h, training=training)
        # Feed-forward block.
        h = self.feed_forward(self.feed_forward_residual.normed(x), training=training)
        x = self.feed_forward_residual(x, h, training=training)
        return x, weights

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
            }
        )
        return config


@keras.saving.register_keras_serializable(package="translator")
class Encoder(TransformerStack):
    """Embedding and `num_layers` encoder layers (plus a final layer norm when pre-LN).

    Takes the `TransformerStack` arguments.

    Call arguments:
        token_ids: int (B, S), PAD = 0.

    Returns:
        (memory (B, S, D), list of per-layer self-attention weights (B, H, S, S)).
    """

    layer_class = EncoderLayer

    def call(self, token_ids, training=None):
        source_padding = padding_mask(token_ids)  # (B, S)
        mask = merge_masks(query_padding=source_padding, key_padding=source_padding)  # (B, S, S)
        x = self.embed(token_ids, training=training)
        weights = []
        for layer in self.layers:
            x, w = layer(x, mask, training=training)
            weights.append(w)
        return self.final(x), weights
