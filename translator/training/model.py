"""The Transformer as it trains: its reported loss is a mean over target tokens."""

from __future__ import annotations

import keras
import tensorflow as tf
from keras import ops, tree

from translator.model.transformer import Transformer
from translator.tokenizer import PAD_ID
from translator.training.workers import is_multi_worker


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

    def train_step(self, data):
        return self._reducible(super().train_step(data))

    def test_step(self, data):
        return self._reducible(super().test_step(data))

    def _reducible(self, logs: dict) -> dict:
        # Keras averages a step's logs over several workers along axis 0, which a scalar does
        # not have (tensorflow/tensorflow#72388): give them one.
        if not is_multi_worker(self._distribute_strategy):
            return logs
        return {name: ops.reshape(value, (1,)) for name, value in logs.items()}

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # Under a strategy Keras builds the metrics and optimizer on one batch, which it makes
        # by averaging every replica's share: shares of different shapes on several workers
        # (token batches) cannot be reduced, and a mean of token ids is no batch anyway. The
        # first replica's share has the shapes and dtypes the build needs.
        if iterator is not None and self._distribute_strategy is not None:
            for _, _, batches in iterator:
                data_batch = tree.map_structure(self._first_share, next(batches))
                break
        return super()._maybe_symbolic_build(data_batch=data_batch)

    def _first_share(self, value):
        if isinstance(value, tf.distribute.DistributedValues):
            return self.distribute_strategy.experimental_local_results(value)[0]
        return value

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        if isinstance(self._loss_tracker, TokenMean):
            self._loss_tracker.tokens = target_tokens(y)
        return super().compute_loss(x, y, y_pred, sample_weight, training=training)
