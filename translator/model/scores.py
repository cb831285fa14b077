"""Attention score functions: how well each query matches each key, before the softmax.

    scaled_dot  q·k / √K                   Vaswani et al. (2017); no weights
    dot         g · q·k, learned scalar g  Luong et al. (2015); keras Attention(use_scale=True)
    additive    Σ w ⊙ tanh(q + k), vector w  Bahdanau et al. (2015); keras AdditiveAttention

Dimension letters: T query length, S key length, K query/key width. Every score layer maps
queries (..., T, K) and keys (..., S, K) to logits (..., T, S); masking and the softmax happen
after it, in `translator.model.attention.masked_softmax`, whatever the score.
"""

from __future__ import annotations

import math

import keras
from keras import ops

SCORES = ("scaled_dot", "dot", "additive")


@keras.saving.register_keras_serializable(package="translator")
class ScaledDotScore(keras.layers.Layer):
    """q kᵀ / √K: the Transformer's score."""

    def call(self, q, k):
        q = q * ops.cast(1.0 / math.sqrt(ops.shape(q)[-1]), q.dtype)
        return ops.matmul(q, ops.swapaxes(k, -1, -2))  # (..., T, S)


class _LearnedScale(keras.layers.Layer):
    """A score layer with an optional learned scale (`use_scale`)."""

    def __init__(self, use_scale: bool = True, **kwargs):
        super().__init__(**kwargs)
        self.use_scale = use_scale

    def get_config(self):
        return {**super().get_config(), "use_scale": self.use_scale}


@keras.saving.register_keras_serializable(package="translator")
class DotScore(_LearnedScale):
    """g · q kᵀ with a learned scalar g initialised to 1 (without `use_scale`: q kᵀ).

    Args:
        use_scale: learn the scalar g (keras.layers.Attention's `use_scale`).
    """

    def build(self, q_shape, k_shape=None):
        if self.use_scale:
            self.scale = self.add_weight(shape=(), initializer="ones", name="scale")

    def call(self, q, k):
        logits = ops.matmul(q, ops.swapaxes(k, -1, -2))  # (..., T, S)
        return logits * ops.cast(self.scale, logits.dtype) if self.use_scale else logits


@keras.saving.register_keras_serializable(package="translator")
class AdditiveScore(_LearnedScale):
    """Σ_K w ⊙ tanh(q + k) over the width, for every query-key pair (without `use_scale`: w = 1).

    Costs a (..., T, S, K) tensor where dot-product scores cost a matmul.

    Args:
        use_scale: learn the vector w (keras.layers.AdditiveAttention's `use_scale`).
    """

    def build(self, q_shape, k_shape=None):
        if self.use_scale:
            self.scale = self.add_weight(
                shape=(q_shape[-1],), initializer="glorot_uniform", name="scale"
            )

    def call(self, q, k):
        pairs = ops.tanh(ops.expand_dims(q, -2) + ops.expand_dims(k, -3))  # (..., T, S, K)
        if self.use_scale:
            pairs = pairs * ops.cast(self.scale, pairs.dtype)
        return ops.sum(pairs, axis=-1)  # (..., T, S)


def make_score(kind: str, **kwargs) -> keras.layers.Layer:
    """The score layer `kind` names (one of `SCORES`)."""
    layers = {"scaled_dot": ScaledDotScore, "dot": DotScore, "additive": AdditiveScore}
    if kind not in layers:
        raise ValueError(f"attention score {kind!r}: expected one of {SCORES}")
    return layers[kind](**kwargs)
