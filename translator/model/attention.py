"""Scaled dot-product attention and multi-head attention.

Dimension letters: B batch, T query length, S key length, H heads, D model width,
K per-head key width, V per-head value width.

Masks are boolean with True = may attend (see `translator.model.masks`). A mask becomes an
additive bias only here, inside the softmax, as the dtype's own minimum: no -1e9 constant that
overflows float16. A query whose keys are all masked gets all-zero weights and a zero output.
"""

from __future__ import annotations

import keras
import numpy as np
from keras import ops

from translator.model.scores import ScaledDotScore, make_score


def masked_softmax(logits, mask=None):
    """Softmax over the last axis of attention logits, with an optional boolean mask.

    Args:
        logits: scores (..., T, S), any score function's.
        mask: optional boolean mask broadcastable to (..., T, S); True = may attend.

    Returns:
        Weights (..., T, S) in the logits' dtype. Masked keys get exactly 0; each row sums to 1
        over its unmasked keys, and a fully masked row is all zeros.
    """
    if mask is None:
        return ops.cast(ops.softmax(ops.cast(logits, "float32"), axis=-1), logits.dtype)
    mask = ops.cast(mask, "bool")
    # Masked logits take the dtype's minimum; the softmax runs in float32 so that half-precision
    # logits neither overflow nor lose the small weights.
    lowest = ops.cast(_lowest(logits.dtype), logits.dtype)
    logits = ops.where(mask, logits, lowest)
    weights = ops.softmax(ops.cast(logits, "float32"), axis=-1)
    # A fully masked row is uniform after the softmax; zero it (and every masked key) here.
    weights = weights * ops.cast(mask, "float32")
    return ops.cast(weights, logits.dtype)


def attention_weights(q, k, mask=None):
    """Scaled dot-product attention weights of queries (..., T, K) over keys (..., S, K):
    `masked_softmax` of q kᵀ / √K, (..., T, S)."""
    return masked_softmax(ScaledDotScore()(q, k), mask)


def scaled_dot_product_attention(q, k, v, mask=None):
    """softmax(q kᵀ / sqrt(K)) v with an optional boolean mask.

    Args:
        q: queries (..., T, K).
        k: keys (..., S, K).
        v: values (..., S, V).
        mask: optional boolean mask broadcastable to (..., T, S); True = may attend.

    Returns:
        (output (..., T, V), weights (..., T, S)).
    """
    weights = attention_weights(q, k, mask)
    return ops.matmul(weights, v), weights


def _lowest(dtype) -> float:
    name = keras.backend.standardize_dtype(dtype)
    if name == "bfloat16":
        return -3.3895313892515355e38  # bfloat16's most negative finite value
    return float(np.finfo(name).min)


@keras.saving.register_keras_serializable(package="translator")
class MultiHeadAttention(keras.layers.Layer):
    """Multi-head attention (Vaswani et al., 2017) with explicit boolean masks.

    Projects query, key and value into `num_heads` heads, attends in each head (the `score`
    function's logits, then `masked_softmax`), merges the heads and projects back to the query
    width.

    Args:
        num_heads: number of heads H.
        key_dim: width K of each query/key head.
        value_dim: width V of each value head (default `key_dim`).
        use_bias: whether the four projections have biases.
        dropout: dropout rate on the attention weights during training.
        output_dim: width of the output (default: the query's last dimension).
        kernel_initializer: initializer of the projection kernels.
        score: the score function, `scaled_dot` (the default), `dot` (learned scalar scale) or
            `additive` (see `translator.model.scores`); its weights, if any, are shared by the
            heads.

    Call arguments:
        query: (B, T, D).
        value: (B, S, D).
        key: (B, S, D); defaults to `value`.
        attention_mask: boolean (B, T, S) or broadcastable; True = may attend. A query with no
            key to attend to outputs the output projection's bias.
        return_attention_scores: also return the weights (B, H, T, S).
        training: enables dropout.

    Returns:
        (B, T, output_dim), and the (B, H, T, S) weights when asked.
    """

    def __init__(
        self,
        num_heads: int,
        key_dim: int,
        value_dim: int | None = None,
        use_bias: bool = True,
        dropout: float = 0.0,
        output_dim: int | None = None,
        kernel_initializer="glorot_uniform",
        score: str = "scaled_dot",
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.num_heads = num_heads
        self.key_dim = key_dim
        self.value_dim = value_dim or key_dim
        self.use_bias = use_bias
        self.dropout = dropout
        self.output_dim = output_dim
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.score = score
        self.score_layer = make_score(score, dtype=self.dtype_policy, name="score")
        self.query_dense = self._dense(num_heads * key_dim, "query")
        self.key_dense = self._dense(num_heads * key_dim, "key")
        self.value_dense = self._dense(num_heads * self.value_dim, "value")
        self.output_dense = None  # its width is the query's, known in build()
        self.weights_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, query_shape, value_shape, key_shape=None):
        key_shape = value_shape if key_shape is None else key_shape
        self.query_dense.build(query_shape)
        self.key_dense.build(key_shape)
        self.value_dense.build(value_shape)
        self.score_layer.build((*query_shape[:-1], self.key_dim))
        self.output_dense = self._dense(self.output_dim or query_shape[-1], "attention_output")
        self.output_dense.build((*query_shape[:-1], self.num_heads * self.value_dim))
        self.built = True

    def _dense(self, units: int, name: str):
        return keras.layers.Dense(
            units,
            use_bias=self.use_bias,
            kernel_initializer=self.kernel_initializer,
            dtype=self.dtype_policy,
            name=name,
        )

    # Pieces, used by `call` and by cached decoding. Cached decoding feeds one position as a
    # (B, D) matrix: its projections are plain matmuls, and a reshape alone splits the heads.
    def _split_heads(self, x, depth):
        """(B, T, H * depth) -> (B, H, T, depth);
        one position (B, H * depth) -> (B, H, 1, depth)."""
        if len(x.shape) == 2:
            return ops.reshape(x, (ops.shape(x)[0], self.num_heads, 1, depth))
        batch, length = ops.shape(x)[0], ops.shape(x)[1]
        x = ops.reshape(x, (batch, length, self.num_heads, depth))  # (B, T, H, depth)
        return ops.transpose(x, (0, 2, 1, 3))  # (B, H, T, depth)

    def project_query(self, query):
        """(B, T, D) -> (B, H, T, K); one position (B, D) -> (B, H, 1, K)."""
        return self._split_heads(self.query_dense(query), self.key_dim)

    def project_key_value(self, value, key=None):
        """(B, S, D) -> keys (B, H, S, K) and values (B, H, S, V); one position (B, D) -> S = 1."""
        key = value if key is None else key
        k = self._split_heads(self.key_dense(key), self.key_dim)
        v = self._split_heads(self.value_dense(value), self.value_dim)
        return k, v

    def attend(self, q, k, v, attention_mask=None, training=None):
        """Attend with projected heads; returns (output (B, T, out), weights (B, H, T, S))."""
        heads, weights = self._heads(q, k, v, attention_mask, training)  # (B, H, T, V)
        heads = ops.transpose(heads, (0, 2, 1, 3))  # (B, T, H, V)
        batch, length = ops.shape(heads)[0], ops.shape(heads)[1]
        merged = ops.reshape(heads, (batch, length, self.num_heads * self.value_dim))  # (B,T,H*V)
        return self.output_dense(merged), weights

    def attend_one(self, q, k, v, attention_mask=None):
        """`attend` for one query position: q (B, H, 1, K) -> (output (B, out), weights
        (B, H, 1, S)); attention_mask (B, 1, S) or broadcastable."""
        heads, weights = self._heads(q, k, v, attention_mask)  # (B, H, 1, V)
        merged = ops.reshape(heads, (ops.shape(heads)[0], self.num_heads * self.value_dim))
        return self.output_dense(merged), weights

    def _heads(self, q, k, v, attention_mask, training=None):
        """Each head's output (B, H, T, V) and weights (B, H, T, S)."""
        mask = None if attention_mask is None else ops.expand_dims(attention_mask, 1)  # (B,1,T,S)
        weights = masked_softmax(self.score_layer(q, k), mask)  # (B, H, T, S)
        dropped = self.weights_dropout(weights, training=training)
        return ops.matmul(dropped, v), weights

    def call(
        self,
        query,
        value,
        key=None,
        attention_mask=None,
        return_attention_scores=False,
        training=None,
    ):
        q = self.project_query(query)
        k, v = self.project_key_value(value, key)
        output, weights = self.attend(q, k, v, attention_mask, training=training)
        if return_attention_scores:
            return output, weights
        return output

    def compute_output_shape(self, query_shape, value_shape, key_shape=None):
        return (*query_shape[:-1], self.output_dim or query_shape[-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "num_heads": self.num_heads,
                "key_dim": self.key_dim,
                "value_dim": self.value_dim,
                "use_bias": self.use_bias,
                "dropout": self.dropout,
                "output_dim": self.output_dim,
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
                "score": self.score,
            }
        )
        return config
