"""Padding-masked cross-entropy with label smoothing."""

from __future__ import annotations

import keras
from keras import ops

from translator.tokenizer import PAD_ID


@keras.saving.register_keras_serializable(package="translator")
class MaskedCrossEntropy(keras.losses.Loss):
    """Mean label-smoothed cross-entropy over non-padding target tokens.

    The smoothed target puts 1 - ε on the reference token and spreads ε uniformly over the whole
    vocabulary: q = (1 - ε) onehot(y) + ε / V. Positions where y == PAD count for nothing, and the
    mean is over real tokens, not over the padded batch.

    Args:
        label_smoothing: ε.
        pad_id: id of the padding token.

    Call arguments:
        y_true: int (B, T).
        y_pred: logits (B, T, V).

    Returns:
        Scalar loss.
    """

    def __init__(
        self, label_smoothing: float = 0.0, pad_id: int = PAD_ID, name="masked_xent", **kwargs
    ):
        super().__init__(name=name, **kwargs)
        self.label_smoothing = label_smoothing
        self.pad_id = pad_id

    def call(self, y_true, y_pred):
        y_true = ops.cast(y_true, "int32")
        log_probs = ops.log_softmax(ops.cast(y_pred, "float32"), axis=-1)  # (B, T, V)
        nll = -ops.take_along_axis(log_probs, y_true[..., None], axis=-1)[..., 0]  # (B, T)
        uniform = -ops.mean(log_probs, axis=-1)  # (B, T): cross-entropy against 1/V
        eps = self.label_smoothing
        per_token = (1.0 - eps) * nll + eps * uniform
        real = ops.cast(ops.not_equal(y_true, self.pad_id), "float32")
        return ops.sum(per_token * real) / ops.maximum(ops.sum(real), 1.0)

    def get_config(self):
        config = super().get_config()
        config.update({"label_smoothing": self.label_smoothing, "pad_id": self.pad_id})
        return config
