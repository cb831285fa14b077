"""Transformer decoder: masked self-attention, cross-attention and feed-forward layers.

Two ways to run it: `call` over a whole target prefix (training, scoring), and `step` for one new
token with a cache (decoding, on (B, D) matrices). The cache holds, per layer, the self-attention
keys/values of the positions decoded so far, (B, H, index, K), one position longer after every
step, and cross-attention keys/values computed once per sentence from the encoder output.
Growing by concatenation copies only the part written so far; docs/design.md says why it is
not a preallocated buffer.

Dimension letters: B batch, T target length, S source length, L cache length, D model width,
H heads, K head width.
"""

from __future__ import annotations

import keras
from keras import ops

from translator.model.masks import look_ahead_mask, merge_masks, padding_mask
from translator.model.stack import TransformerLayer, TransformerStack


@keras.saving.register_keras_serializable(package="translator")
class DecoderLayer(TransformerLayer):
    """Masked self-attention, cross-attention and feed-forward blocks with residuals.

    Takes the `TransformerLayer` arguments.

    Call arguments:
        x: (B, T, D).
        memory: encoder output (B, S, D).
        self_mask: boolean (B, T, T): look-ahead AND target key padding.
        cross_mask: boolean (B, 1 or T, S): source key padding.

    Returns:
        (output (B, T, D), self weights (B, H, T, T), cross weights (B, H, T, S)).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.self_attention = self.attention("self_attention")
        self.self_residual = self.residual()
        self.cross_attention = self.attention("cross_attention")
        self.cross_residual = self.residual()
        self.build_feed_forward()

    def call(self, x, memory, self_mask, cross_mask, training=None):
        # Masked self-attention block.
        h = self.self_residual.normed(x)
        h, self_weights = self.self_attention(
            h, h, attention_mask=self_mask, return_attention_scores=True, training=training
        )
        x = self.self_residual(x, h, training=training)
        # Cross-attention block.
        h = self.cross_residual.normed(x)
        h, cross_weights = self.cross_attention(
            h, memory, attention_mask=cross_mask, return_attention_scores=True, training=training
        )
        x = self.cross_residual(x, h, training=training)
        # Feed-forward block.
        x = self.feed_forward_block(x, training)
        return x, self_weights, cross_weights

    def init_cache(self, memory) -> dict:
        """Cross-attention keys/values of `memory` and empty (B, H, 0, K) self-attention ones."""
        cross_k, cross_v = self.cross_attention.project_key_value(memory)  # (B, H, S, K)
        batch = ops.shape(memory)[0]
        shape = (batch, self.num_heads, 0, self.d_model // self.num_heads)
        empty = ops.zeros(shape, dtype=cross_k.dtype)
        return {"self_k": empty, "self_v": empty, "cross_k": cross_k, "cross_v": cross_v}

    def step(self, x, cache: dict, cross_mask):
        """Decode the next position.

        Args:
            x: (B, D), the embedded token at the position after those in the cache.
            cache: this layer's cache from `init_cache` or the previous step.
            cross_mask: boolean (B, 1, S).

        Returns:
            (output (B, D), updated cache, cross weights (B, H, 1, S)).
        """
        # Self-attention block: append this position's key/value to the cache, which then holds
        # exactly positions 0..index, so no look-ahead mask is needed.
        h = self.self_residual.normed(x)
        q = self.self_attention.project_query(h)  # (B, H, 1, K)
        k, v = self.self_attention.project_key_value(h)  # (B, H, 1, K)
        self_k = ops.concatenate([cache["self_k"], k], axis=2)  # (B, H, index + 1, K)
        self_v = ops.concatenate([cache["self_v"], v], axis=2)
        h, _ = self.self_attention.attend_one(q, self_k, self_v)
        x = self.self_residual(x, h)
        # Cross-attention block: keys/values were computed once in init_cache.
        h = self.cross_residual.normed(x)
        q = self.cross_attention.project_query(h)  # (B, H, 1, K)
        h, cross_weights = self.cross_attention.attend_one(
            q, cache["cross_k"], cache["cross_v"], cross_mask
        )
        x = self.cross_residual(x, h)
        # Feed-forward block.
        x = self.feed_forward_block(x)
        new_cache = dict(cache, self_k=self_k, self_v=self_v)
        return x, new_cache, cross_weights


@keras.saving.register_keras_serializable(package="translator")
class Decoder(TransformerStack):
    """Embedding and `num_layers` decoder layers (plus a final layer norm when pre-LN).

    Takes the `TransformerStack` arguments.

    Call arguments:
        token_ids: int (B, T), PAD = 0.
        memory: encoder output (B, S, D).
        source_padding: boolean (B, S), True at real source tokens.

    Returns:
        (hidden (B, T, D), per-layer self weights (B, H, T, T), per-layer cross weights
        (B, H, T, S)).
    """

    layer_class = DecoderLayer

    def call(self, token_ids, memory, source_padding, training=None):
        length = ops.shape(token_ids)[1]
        self_mask = merge_masks(
            key_padding=padding_mask(token_ids), look_ahead=look_ahead_mask(length)
        )  # (B, T, T)
        cross_mask = merge_masks(key_padding=source_padding)  # (B, 1, S)
        x = self.embed(token_ids, training=training)
        self_weights, cross_weights = [], []
        for layer in self.layers:
            x, w_self, w_cross = layer(x, memory, self_mask, cross_mask, training=training)
            self_weights.append(w_self)
            cross_weights.append(w_cross)
        return self.final(x), self_weights, cross_weights

    def init_cache(self, memory) -> list[dict]:
        """One cache per layer; see `DecoderLayer.init_cache`."""
        return [layer.init_cache(memory) for layer in self.layers]

    def step(self, token_ids, cache: list[dict], index, source_padding):
        """Decode position `index` from its token (B, 1); returns ((B, D), cache, cross).

        The position travels through the layers as a (B, D) matrix, so that every projection
        is one plain matmul: per-step overhead, not arithmetic, bounds small models' decoding.
        """
        cross_mask = merge_masks(key_padding=source_padding)  # (B, 1, S)
        x = self.embed(token_ids, start=index)[:, 0, :]  # (B, D)
        new_cache, cross_weights = [], []
        for layer, layer_cache in zip(self.layers, cache, strict=True):
            x, layer_cache, w_cross = layer.step(x, layer_cache, cross_mask)
            new_cache.append(layer_cache)
            cross_weights.append(w_cross)
        return self.final(x), new_cache, cross_weights
