"""The loss a run reports is the mean over target tokens, not over sentences."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from translator.training.losses import MaskedCrossEntropy
from translator.training.model import TrainingTransformer

# Two batches: one sentence of 5 target tokens, then three sentences of 1 and 2 tokens.
BATCHES = [
    (np.array([[5, 6, 7, 3]]), np.array([[2, 8, 9, 10, 11]]), np.array([[8, 9, 10, 11, 3]])),
    (
        np.array([[5, 3, 0], [6, 7, 3], [8, 3, 0]]),
        np.array([[2, 9], [2, 10], [2, 11]]),
        np.array([[9, 3], [3, 0], [11, 3]]),
    ),
]


def dataset():
    return tf.data.Dataset.from_generator(
        lambda: (((s, t), y) for s, t, y in BATCHES),
        output_signature=(
            (tf.TensorSpec([None, None], tf.int32), tf.TensorSpec([None, None], tf.int32)),
            tf.TensorSpec([None, None], tf.int32),
        ),
    )


def model_and_losses():
    """A model that does not change as it trains (learning rate 0), its per-token loss and the
    per-sentence loss Keras's own tracker would report."""
    keras.utils.set_random_seed(3)
    model = TrainingTransformer(20, 20, num_layers=1, d_model=16, num_heads=2, dff=32, dropout=0.0)
    model.compile(optimizer=keras.optimizers.SGD(0.0), loss=MaskedCrossEntropy(0.1))
    xent = MaskedCrossEntropy(0.1)
    losses = [float(xent(y, model((s, t)))) for s, t, y in BATCHES]
    tokens = [np.count_nonzero(y) for _, _, y in BATCHES]  # 5 and 5: equal weights
    per_token = np.dot(losses, tokens) / sum(tokens)
    per_sentence = (losses[0] * 1 + losses[1] * 3) / 4
    assert abs(per_token - per_sentence) > 1e-3
    return model, per_token


def test_validation_loss_is_the_mean_over_target_tokens():
    model, per_token = model_and_losses()
    assert model.evaluate(dataset(), verbose=0) == pytest.approx(per_token, rel=1e-5)
    assert [m.name for m in model.metrics] == ["loss"]  # reported once


def test_training_loss_is_the_mean_over_target_tokens():
    model, per_token = model_and_losses()
    history = model.fit(dataset(), epochs=1, verbose=0)
    assert history.history["loss"][0] == pytest.approx(per_token, rel=1e-5)
