"""The Transformer as it trains: its reported loss is a mean over target tokens."""

from __future__ import annotations

import keras
from keras import ops

from translator.model.transformer import Transformer
from translator.tokenizer import PAD_ID


class TokenMean(keras.metrics.Mean):
    """A running mean of per-batch mean losses, each weighted by its batch's target tokens.

    Keras's loss tracker weights a batch's loss by its number of sentences, so an epoch's loss is
    not the mean over its tokens when batches hold sentences of different lengths (bucketing).
    `tokens` is set by the model before each update (`TrainingTransformer.compute_loss`).
    """

    def __init__(self, name="loss", **kwargs):
        super().__init__(name=name, **kwargs)
        self.tokens = None

    def update_state(self, values, sample_weight=None):
        return super().update_state(values, sample_weight=self.tokens)


def target_tokens(y) -> keras.KerasTensor:
    """Non-padding positions of target ids (B, T), as a float32 scalar."""
    return ops.sum(ops.cast(ops.not_equal(y, PAD_ID), "float32"))


class TrainingTransformer(Transformer):
    """A Transformer whose reported training and validation losses are per-token means.

    The loss it minimises is unchanged (each step, the mean over that batch's target tokens);
    only the epoch figures Keras reports, which choose the best checkpoint and compare configs,
    become sum over batches of tokens x loss / tokens. Its weights and `get_config()` are the
    plain Transformer's.
    """

    def compile(self, *args, **kwargs):
        super().compile(*args, **kwargs)
        # Set past Keras's attribute tracking, as compile() sets the tracker it replaces;
        # a tracked metric would be reported twice.
        object.__setattr__(self, "_loss_tracker", TokenMean(name="loss"))

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if isinstance(self._loss_tracker, TokenMean):
            self._loss_tracker.tokens = target_tokens(y)
        return super().compute_loss(x, y, y_pred, sample_weight, training=training)
