"""Score functions against Keras's own attention layers, given the same weights and masks."""

import keras
import numpy as np
import pytest
from keras import ops

from translator.model.attention import MultiHeadAttention, masked_softmax
from translator.model.masks import look_ahead_mask, merge_masks, padding_mask
from translator.model.scores import AdditiveScore, DotScore, ScaledDotScore, make_score

RNG = np.random.default_rng(3)
Q = RNG.normal(size=(2, 4, 8)).astype(np.float32)  # (B, T, K)
V = RNG.normal(size=(2, 4, 8)).astype(np.float32)  # (B, S, K): keys = values, as Keras defaults
VALUE_IDS = np.array([[5, 6, 7, 0], [5, 6, 0, 0]])  # the second sequence has 2 real keys


def ours(score, q, v, mask):
    return ops.matmul(masked_softmax(score(q, v), mask), v)


def masks(causal: bool):
    """(B, T, S) for our layer, and Keras's [query_mask, value_mask] plus its causal flag."""
    look_ahead = look_ahead_mask(4) if causal else None
    ours_mask = merge_masks(key_padding=padding_mask(VALUE_IDS), look_ahead=look_ahead)
    value_mask = VALUE_IDS != 0
    return ours_mask, [np.ones((2, 4), bool), value_mask]


@pytest.mark.parametrize("causal", [False, True])
@pytest.mark.parametrize("use_scale", [True, False])
def test_additive_score_equals_keras_additive_attention(causal, use_scale):
    keras.utils.set_random_seed(0)
    score = AdditiveScore(use_scale=use_scale)
    score.build(Q.shape)
    reference = keras.layers.AdditiveAttention(use_scale=use_scale)
    reference.build([Q.shape, V.shape])
    if use_scale:
        reference.scale.assign(np.asarray(score.scale))
    mask, keras_mask = masks(causal)
    expected = reference([Q, V], mask=keras_mask, use_causal_mask=causal)
    np.testing.assert_allclose(ours(score, Q, V, mask), expected, atol=1e-5)


@pytest.mark.parametrize("causal", [False, True])
def test_learned_scale_dot_score_equals_keras_attention_use_scale(causal):
    score = DotScore(use_scale=True)
    score.build(Q.shape)
    score.scale.assign(0.37)  # a learned value, not the initial 1
    reference = keras.layers.Attention(use_scale=True)
    reference.build([Q.shape, V.shape])
    reference.scale.assign(0.37)
    mask, keras_mask = masks(causal)
    expected = reference([Q, V], mask=keras_mask, use_causal_mask=causal)
    np.testing.assert_allclose(ours(score, Q, V, mask), expected, atol=1e-5)


def test_scaled_dot_score_is_the_dot_product_over_root_width():
    expected = np.einsum("btk,bsk->bts", Q, V) / np.sqrt(8.0)
    np.testing.assert_allclose(ScaledDotScore()(Q, V), expected, rtol=1e-5, atol=1e-6)
    unscaled = DotScore(use_scale=False)
    np.testing.assert_allclose(unscaled(Q, V), expected * np.sqrt(8.0), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["scaled_dot", "dot", "additive"])
def test_every_score_keeps_the_mask_convention_in_bfloat16(kind):
    """Masked keys get weight 0, a fully masked row all zeros, and bfloat16 stays finite."""
    layer = MultiHeadAttention(2, 4, score=kind, dtype="mixed_bfloat16")
    x = RNG.normal(size=(2, 4, 8)).astype(np.float32)
    mask = np.ones((2, 4, 4), bool)
    mask[0, :, 2:] = False  # the last two keys of the first sequence
    mask[1, 3, :] = False  # a query that may attend to nothing
    out, weights = layer(x, x, attention_mask=mask, return_attention_scores=True)
    weights = np.asarray(ops.cast(weights, "float32"))
    assert np.isfinite(np.asarray(ops.cast(out, "float32"))).all()
    assert (weights[0, :, :, 2:] == 0).all() and (weights[1, :, 3] == 0).all()
    np.testing.assert_allclose(weights[0].sum(-1), 1.0, atol=1e-2)


def test_score_weights_round_trip_through_the_layer_config():
    layer = MultiHeadAttention(2, 4, score="additive")
    layer(Q, Q)
    assert [w.name for w in layer.score_layer.weights] == ["scale"]
    clone = MultiHeadAttention.from_config(layer.get_config())
    clone(Q, Q)
    clone.set_weights(layer.get_weights())
    np.testing.assert_allclose(clone(Q, Q), layer(Q, Q), atol=1e-6)


def test_an_unknown_score_is_refused():
    with pytest.raises(ValueError, match="attention score 'cosine': expected one of"):
        make_score("cosine")
