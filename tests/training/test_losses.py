import math

import keras
import numpy as np
import pytest
import tensorflow as tf

from translator.training.losses import (
    MaskedCrossEntropy,
    fused_smoothed_cross_entropy,
    smoothed_cross_entropy,
    symmetric_kl,
)
from translator.training.metrics import MaskedAccuracy

# A 2x3 batch over a vocabulary of 3; the last position of the second row is padding (id 0).
Y_TRUE = np.array([[1, 2, 1], [2, 1, 0]])
LOGITS = np.array(
    [
        [[0.0, 2.0, 0.0], [1.0, 0.0, 3.0], [0.5, 0.5, 0.5]],
        [[0.0, 0.0, 0.0], [2.0, 1.0, 0.0], [9.0, -9.0, 9.0]],
    ],
    np.float32,
)


def hand_computed(eps):
    total, count = 0.0, 0
    for b in range(2):
        for t in range(3):
            if Y_TRUE[b, t] == 0:
                continue
            z = LOGITS[b, t].astype(np.float64)
            log_p = z - math.log(np.exp(z).sum())
            q = np.full(3, eps / 3)
            q[Y_TRUE[b, t]] += 1 - eps
            total += -(q * log_p).sum()
            count += 1
    return total / count


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_label_smoothed_loss_matches_hand_computation(eps):
    loss = float(MaskedCrossEntropy(label_smoothing=eps)(Y_TRUE, LOGITS))
    assert loss == pytest.approx(hand_computed(eps), abs=1e-6)


def test_loss_by_hand_literal_value():
    # eps=0: mean of the five real tokens' -log p, computed independently.
    nll = [
        -math.log(math.exp(2) / (2 + math.exp(2))),
        -math.log(math.exp(3) / (math.exp(1) + 1 + math.exp(3))),
        math.log(3),
        math.log(3),
        -math.log(math.exp(1) / (math.exp(2) + math.exp(1) + 1)),
    ]
    assert float(MaskedCrossEntropy()(Y_TRUE, LOGITS)) == pytest.approx(sum(nll) / 5, abs=1e-6)


def test_loss_ignores_padding_logits():
    changed = LOGITS.copy()
    changed[1, 2] = [-50.0, 50.0, 7.0]  # the padded position
    loss = MaskedCrossEntropy(label_smoothing=0.1)
    assert float(loss(Y_TRUE, changed)) == pytest.approx(float(loss(Y_TRUE, LOGITS)), abs=1e-7)


def test_masked_accuracy_counts_real_tokens_only():
    metric = MaskedAccuracy()
    metric.update_state(Y_TRUE, LOGITS)  # argmax: [1,2,0],[0,0,0] -> right at (0,0),(0,1)
    assert float(metric.result()) == pytest.approx(2 / 5)


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_fused_loss_and_gradient_match_the_keras_ops_reference(eps):
    rng = np.random.default_rng(0)
    y_true = tf.constant(rng.integers(0, 50, size=(3, 7)), tf.int32)
    logits = tf.Variable(rng.normal(scale=3.0, size=(3, 7, 50)).astype(np.float32))
    upstream = tf.constant(rng.normal(size=(3, 7)).astype(np.float32))
    results = []
    for fn in (smoothed_cross_entropy, fused_smoothed_cross_entropy):
        with tf.GradientTape() as tape:
            per_token = fn(y_true, logits, eps)
            weighted = tf.reduce_sum(per_token * upstream)
        results.append((per_token.numpy(), tape.gradient(weighted, logits).numpy()))
    (ref_values, ref_grad), (values, grad) = results
    np.testing.assert_allclose(values, ref_values, atol=1e-5)
    np.testing.assert_allclose(grad, ref_grad, atol=1e-6)
    # The gradient of one position's loss sums to zero over the vocabulary (softmax minus a target
    # distribution), and the reference token's entry is p_y - (1 - ε) - ε / V.
    assert np.abs(grad.sum(-1)).max() < 1e-5
    p = tf.nn.softmax(logits).numpy()
    b, t = 1, 4
    y = int(y_true[b, t])
    expected = upstream[b, t] * (p[b, t, y] - (1 - eps) - eps / 50)
    assert grad[b, t, y] == pytest.approx(float(expected), abs=1e-6)


def test_loss_gradient_through_a_model_matches_the_reference():
    # The compiled loss (fused path) gives the same gradient on a Dense layer's kernel as the
    # `keras.ops` formula with the padding mask applied by hand.
    layer = keras.layers.Dense(3, kernel_initializer=keras.initializers.RandomNormal(seed=1))
    x = tf.constant(np.random.default_rng(2).normal(size=(2, 3, 4)).astype(np.float32))
    layer(x)
    loss = MaskedCrossEntropy(label_smoothing=0.1)
    y_true, not_padding = tf.constant(Y_TRUE, tf.int32), tf.constant(Y_TRUE != 0, tf.float32)

    def reference(logits):
        per_token = smoothed_cross_entropy(y_true, logits, 0.1)
        return tf.reduce_sum(per_token * not_padding) / tf.reduce_sum(not_padding)

    grads = []
    for fn in (lambda z: loss(Y_TRUE, z), reference):
        with tf.GradientTape() as tape:
            value = fn(layer(x))
        grads.append(tape.gradient(value, layer.kernel).numpy())
    np.testing.assert_allclose(grads[0], grads[1], atol=1e-6)


def test_symmetric_kl_by_hand_literal_value():
    # p = (0.5, 0.5) and q = (0.9, 0.1) at the one real position; the padded position differs
    # wildly and must count for nothing.
    # KL(p || q) = 0.5 ln(0.5/0.9) + 0.5 ln(0.5/0.1) = 0.510826
    # KL(q || p) = 0.9 ln(0.9/0.5) + 0.1 ln(0.1/0.5) = 0.368064
    a = np.log(np.array([[[0.5, 0.5], [0.99, 0.01]]], np.float32))
    b = np.log(np.array([[[0.9, 0.1], [0.01, 0.99]]], np.float32))
    y_true = np.array([[1, 0]])
    assert float(symmetric_kl(y_true, a, b)) == pytest.approx(0.439445, abs=1e-5)
    assert float(symmetric_kl(y_true, b, a)) == pytest.approx(0.439445, abs=1e-5)


def test_symmetric_kl_is_zero_for_equal_distributions_and_ignores_shifts():
    # Logits that differ by a constant per position give the same distribution.
    assert float(symmetric_kl(Y_TRUE, LOGITS, LOGITS + 5.0)) == pytest.approx(0.0, abs=1e-6)
    assert float(symmetric_kl(Y_TRUE, LOGITS, LOGITS[:, ::-1])) > 0.1
