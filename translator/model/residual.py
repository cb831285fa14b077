"""Residual connection with layer normalisation, before (pre-LN) or after (post-LN) the sublayer."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="translator")
class Residual(keras.layers.Layer):
    """Wraps a sublayer's output: post-LN `norm(x + drop(f(x)))` or pre-LN `x + drop(f(norm(x)))`.

    Use `residual.normed(x)` for the sublayer's input and `residual(x, y)` to combine.

    Args:
        dropout: rate applied to the sublayer output.
        norm_first: pre-layer-norm when True.
        epsilon: layer-norm epsilon.
    """

    def __init__(
        self, dropout: float = 0.0, norm_first: bool = False, epsilon: float = 1e-6, **kwargs
    ):
        super().__init__(**kwargs)
        self.dropout = dropout
        self.norm_first = norm_first
        self.epsilon = epsilon
        self.norm = keras.layers.LayerNormalization(epsilon=epsilon, dtype=self.dtype_policy)
        self.drop = keras.layers.Dropout(dropout, dtype=self.dtype_policy)

    def build(self, input_shape):
        if not self.norm.built:  # pre-LN: `normed()` already ran the norm, building it
            self.norm.build(input_shape)
        self.built = True

    def normed(self, x):
        """The sublayer's input: normalised for pre-LN, unchanged for post-LN."""
        return self.norm(x) if self.norm_first else x

    def call(self, x, sublayer_output, training=None):
        y = x + self.drop(sublayer_output, training=training)
        return y if self.norm_first else self.norm(y)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"dropout": self.dropout, "norm_first": self.norm_first, "epsilon": self.epsilon}
        )
        return config
