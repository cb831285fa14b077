"""Position-wise feed-forward block."""

from __future__ import annotations

import keras


@keras.saving.register_keras_serializable(package="translator")
class FeedForward(keras.layers.Layer):
    """Dense(dff, relu) -> Dropout -> Dense(d_model), applied at every position.

    Args:
        d_model: input and output width D.
        dff: inner width.
        dropout: dropout rate between the two projections.
    """

    def __init__(self, d_model: int, dff: int, dropout: float = 0.0, **kwargs):
        super().__init__(**kwargs)
        self.d_model = d_model
        self.dff = dff
        self.dropout = dropout
        self.inner = keras.layers.Dense(
            dff, activation="relu", dtype=self.dtype_policy, name="inner"
        )
        self.inner_dropout = keras.layers.Dropout(dropout, dtype=self.dtype_policy)
        self.outer = keras.layers.Dense(d_model, dtype=self.dtype_policy, name="outer")

    def build(self, input_shape):
        self.inner.build(input_shape)
        self.outer.build((*input_shape[:-1], self.dff))
        self.built = True

    def call(self, x, training=None):
        return self.outer(self.inner_dropout(self.inner(x), training=training))

    def get_config(self):
        config = super().get_config()
        config.update({"d_model": self.d_model, "dff": self.dff, "dropout": self.dropout})
        return config
