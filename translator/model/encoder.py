"""Transformer encoder: embedding, then a stack of self-attention + feed-forward layers.

Dimension letters: B batch, S source length, D model width, H heads.
"""

from __future__ import annotations

import keras

from translator.model.masks import merge_masks, padding_mask
from translator.model.stack import TransformerLayer, TransformerStack


@keras.saving.register_keras_serializable(package="translator")
class EncoderLayer(TransformerLayer):
    """Self-attention block then feed-forward block, each with a residual and layer norm.

    Takes the `TransformerLayer` arguments.

    Call arguments:
        x: (B, S, D).
        mask: boolean (B, S, S), True = may attend.

    Returns:
        (output (B, S, D), self-attention weights (B, H, S, S)).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.self_attention = self.attention("self_attention")
        self.attention_residual = self.residual()
        self.build_feed_forward()

    def call(self, x, mask, training=None):
        # Self-attention block.
        h = self.attention_residual.normed(x)
        h, weights = self.self_attention(
            h, h, attention_mask=mask, return_attention_scores=True, training=training
        )
        x = self.attention_residual(x, h, training=training)
        return self.feed_forward_block(x, training), weights


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
