import keras
import numpy as np
import pytest

from translator.model.attention import MultiHeadAttention, scaled_dot_product_attention
from translator.model.masks import look_ahead_mask, merge_masks, padding_mask

K = np.array([[10, 0, 0], [0, 10, 0], [0, 0, 10], [0, 0, 10]], np.float32)
V = np.array([[1, 0], [10, 0], [100, 5], [1000, 6]], np.float32)
QUERIES = {
    "second key": ([[0, 10, 0]], [[0, 1, 0, 0]], [[10, 0]]),
    "tied keys": ([[0, 0, 10]], [[0, 0, 0.5, 0.5]], [[550, 5.5]]),
    "two keys": ([[10, 10, 0]], [[0.5, 0.5, 0, 0]], [[5.5, 0]]),
}


@pytest.mark.parametrize("name", QUERIES)
def test_sdpa_reference_values(name):
    q, weights, output = QUERIES[name]
    out, w = scaled_dot_product_attention(np.array(q, np.float32), K, V)
    np.testing.assert_allclose(np.asarray(w), weights, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out), output, atol=1e-5)


def test_sdpa_stacked_queries_give_all_rows():
    q = np.concatenate([np.array(v[0], np.float32) for v in QUERIES.values()])  # (3, 3)
    out, w = scaled_dot_product_attention(q, K, V)
    np.testing.assert_allclose(np.asarray(w), [v[1][0] for v in QUERIES.values()], atol=1e-5)
    np.testing.assert_allclose(np.asarray(out), [v[2][0] for v in QUERIES.values()], atol=1e-5)


X = np.array([[[1, 0, 0, 1], [0, 1, 0, 0], [0, 1, 1, 1]]], np.float32)
IDENTITY_SCORES = np.array(
    [
        [0.50648039, 0.18632372, 0.30719589],
        [0.23269654, 0.38365173, 0.38365173],
        [0.21194156, 0.21194156, 0.57611688],
    ]
)
IDENTITY_OUTPUT = np.array(
    [
        [0.50648039, 0.49351961, 0.30719589, 0.81367628],
        [0.23269654, 0.76730346, 0.38365173, 0.61634827],
        [0.21194156, 0.78805844, 0.57611688, 0.78805844],
    ]
)


def identity_layer():
    layer = MultiHeadAttention(num_heads=1, key_dim=4, use_bias=False)
    layer(X, X)
    for dense in (layer.query_dense, layer.key_dense, layer.value_dense, layer.output_dense):
        dense.kernel.assign(np.eye(4, dtype=np.float32))
    return layer


def test_identity_projections_reference_values():
    out, scores = identity_layer()(X, X, return_attention_scores=True)
    np.testing.assert_allclose(np.asarray(scores)[0, 0], IDENTITY_SCORES, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out)[0], IDENTITY_OUTPUT, atol=1e-5)


def test_random_projections_match_a_numpy_reference_and_move_the_scores():
    """With learned (here random) projections the layer computes softmax(q kᵀ/√d) v through its
    four kernels; the numbers then differ from the hand-written identity case."""
    keras.utils.set_random_seed(0)
    layer = MultiHeadAttention(num_heads=1, key_dim=4, use_bias=False)
    out, scores = layer(X, X, return_attention_scores=True)
    denses = (layer.query_dense, layer.key_dense, layer.value_dense, layer.output_dense)
    wq, wk, wv, wo = (np.asarray(dense.kernel).reshape(4, 4) for dense in denses)
    x = np.asarray(X, np.float64)[0]
    logits = (x @ wq) @ (x @ wk).T / 2.0  # √4
    weights = np.exp(logits - logits.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    np.testing.assert_allclose(np.asarray(scores)[0, 0], weights, atol=1e-5)
    np.testing.assert_allclose(np.asarray(out)[0], weights @ (x @ wv) @ wo, atol=1e-5)
    assert not np.allclose(weights, IDENTITY_SCORES, atol=1e-3)


def test_one_head_identity_equals_keras_dot_product_attention():
    ours = np.asarray(identity_layer()(X, X))
    scaled = X / np.sqrt(4.0)
    # keras.layers.Attention: softmax(q kᵀ) v, so pre-scale the query by 1/sqrt(d).
    reference = keras.layers.Attention(use_scale=False)([scaled, X, X])
    np.testing.assert_allclose(ours, np.asarray(reference), atol=1e-5)


def copy_weights_from_keras(ours, theirs, heads, key_dim):
    """Copy keras.layers.MultiHeadAttention's (D, H, K) einsum kernels into our dense layers."""
    pairs = [
        (ours.query_dense, theirs._query_dense),
        (ours.key_dense, theirs._key_dense),
        (ours.value_dense, theirs._value_dense),
    ]
    for dense, einsum in pairs:
        kernel = np.asarray(einsum.kernel)
        dense.kernel.assign(kernel.reshape(kernel.shape[0], heads * key_dim))
        if dense.use_bias:
            dense.bias.assign(np.asarray(einsum.bias).reshape(heads * key_dim))
    kernel = np.asarray(theirs._output_dense.kernel)  # (H, K, D)
    ours.output_dense.kernel.assign(kernel.reshape(heads * key_dim, kernel.shape[-1]))
    if ours.use_bias:
        ours.output_dense.bias.assign(np.asarray(theirs._output_dense.bias))


CASES = [
    (heads, bias, cross, mask_kind)
    for heads in (1, 8)
    for bias in (True, False)
    for cross in (False, True)
    for mask_kind in ("none", "padding", "causal", "both")
]


@pytest.mark.parametrize("heads,use_bias,cross,mask_kind", CASES)
def test_equals_keras_multi_head_attention(heads, use_bias, cross, mask_kind):
    keras.utils.set_random_seed(heads * 10 + use_bias)
    rng = np.random.default_rng(heads)
    batch, t, d, key_dim = 2, 5, 16, 4
    s = 7 if cross else t
    query = rng.normal(size=(batch, t, d)).astype(np.float32)
    value = rng.normal(size=(batch, s, d)).astype(np.float32) if cross else query
    key_ids = np.array([[3] * s, [3] * (s - 2) + [0, 0]])  # second sentence has 2 padded keys
    masks = {
        "none": None,
        "padding": merge_masks(key_padding=padding_mask(key_ids)),
        "causal": merge_masks(
            key_padding=np.ones((batch, s), bool), look_ahead=look_ahead_mask(t, s)
        ),
        "both": merge_masks(key_padding=padding_mask(key_ids), look_ahead=look_ahead_mask(t, s)),
    }
    mask = masks[mask_kind]
    if mask is not None:
        mask = np.broadcast_to(np.asarray(mask), (batch, t, s))

    theirs = keras.layers.MultiHeadAttention(heads, key_dim, use_bias=use_bias)
    ref_out, ref_scores = theirs(query, value, attention_mask=mask, return_attention_scores=True)
    ours = MultiHeadAttention(heads, key_dim, use_bias=use_bias)
    ours(query, value)
    copy_weights_from_keras(ours, theirs, heads, key_dim)
    out, scores = ours(query, value, attention_mask=mask, return_attention_scores=True)

    assert scores.shape == (batch, heads, t, s)
    np.testing.assert_allclose(np.asarray(scores), np.asarray(ref_scores), atol=1e-5)
    np.testing.assert_allclose(np.asarray(out), np.asarray(ref_out), atol=1e-5)


def test_get_config_round_trip():
    layer = MultiHeadAttention(4, 8, value_dim=6, use_bias=False, dropout=0.1, output_dim=10)
    config = layer.get_config()
    clone = MultiHeadAttention.from_config(config)
    assert clone.get_config() == config
    assert (clone.num_heads, clone.key_dim, clone.value_dim) == (4, 8, 6)
    assert clone(X, X).shape == (1, 3, 10)


def test_padded_keys_get_zero_weight_and_rows_sum_to_one():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 6, 8)).astype(np.float32)
    ids = np.array([[1, 2, 3, 4, 5, 6], [1, 2, 3, 0, 0, 0]])
    mask = merge_masks(key_padding=padding_mask(ids))
    _, scores = MultiHeadAttention(2, 4)(x, x, attention_mask=mask, return_attention_scores=True)
    scores = np.asarray(scores)
    assert np.all(scores[1, :, :, 3:] == 0.0)
    np.testing.assert_allclose(scores.sum(-1), 1.0, atol=1e-6)


@pytest.mark.parametrize("dtype", ["float32", "float16", "bfloat16"])
def test_fully_masked_rows_are_finite_zero(dtype):
    rng = np.random.default_rng(1)
    q = keras.ops.cast(rng.normal(size=(2, 3, 4)) * 100, dtype)
    k = keras.ops.cast(rng.normal(size=(2, 5, 4)) * 100, dtype)
    v = keras.ops.cast(rng.normal(size=(2, 5, 2)), dtype)
    ids = np.array([[1, 2, 0], [1, 0, 0]])
    key_ids = np.array([[1, 1, 1, 0, 0], [1, 1, 0, 0, 0]])
    mask = merge_masks(padding_mask(ids), padding_mask(key_ids))
    out, w = scaled_dot_product_attention(q, k, v, mask)
    out = np.asarray(keras.ops.cast(out, "float32"))
    w = np.asarray(keras.ops.cast(w, "float32"))
    assert np.all(np.isfinite(out)) and np.all(np.isfinite(w))
    assert np.all(w[1, 1:] == 0) and np.all(out[1, 1:] == 0)  # padded queries: zero
    assert np.all(w[0, :, 3:] == 0)  # padded keys: zero weight
    np.testing.assert_allclose(w[0, :2].sum(-1), 1.0, atol=1e-2)  # half-precision sums
