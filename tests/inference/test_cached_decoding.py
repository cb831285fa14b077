"""The cached decoder step gives the same logits as one full forward pass over the prefix."""

import keras
import numpy as np
import pytest

from translator.model.transformer import Transformer


@pytest.mark.parametrize(
    "norm_first,tie_embeddings,score",
    [(False, False, "scaled_dot"), (True, False, "scaled_dot"), (False, True, "scaled_dot"),
     (True, False, "dot"), (True, False, "additive")],
)  # fmt: skip
def test_cached_steps_equal_full_forward_pass(norm_first, tie_embeddings, score):
    keras.utils.set_random_seed(7)
    model = Transformer(
        50, 60, num_layers=2, d_model=32, num_heads=4, dff=64, dropout=0.0,
        norm_first=norm_first, tie_embeddings=tie_embeddings, attention_score=score,
    )  # fmt: skip
    rng = np.random.default_rng(0)
    source = rng.integers(4, 50, size=(3, 9)).astype(np.int32)
    source[1, 6:] = 0  # padded sources
    source[2, 3:] = 0
    target = rng.integers(4, 60, size=(3, 8)).astype(np.int32)
    target[:, 0] = 2
    model((source, target))  # build

    memory, padding, _ = model.encode(source)
    full, _, _ = model.decode(target, memory, padding)
    full = np.asarray(full)  # (B, T, V)
    cache = model.init_cache(memory)
    for index in range(8):
        logits, cache, _ = model.decode_step(target[:, index : index + 1], cache, index, padding)
        np.testing.assert_allclose(np.asarray(logits), full[:, index], atol=1e-4)
    # The comparison can fail: the next position's logits differ from this one's.
    assert np.abs(full[:, 1] - full[:, 0]).max() > 1e-2


def test_cache_grows_one_position_per_step_and_cross_keys_are_computed_once():
    model = Transformer(20, 20, num_layers=1, d_model=16, num_heads=2, dff=32, dropout=0.0)
    source = np.full((2, 5), 7, np.int32)
    memory, padding, _ = model.encode(source)
    with pytest.raises(ValueError, match="call the model once"):
        model.init_cache(memory)
    model((source, source))
    cache = model.init_cache(memory)
    assert cache[0]["self_k"].shape == (2, 2, 0, 8)  # (B, H, positions so far, K)
    for index in range(3):
        cache = model.decode_step(np.full((2, 1), 2, np.int32), cache, index, padding)[1]
        assert cache[0]["self_k"].shape == cache[0]["self_v"].shape == (2, 2, index + 1, 8)
    step_cache = model.decode_step(np.full((2, 1), 2, np.int32), cache, 3, padding)[1]
    assert step_cache[0]["cross_k"] is cache[0]["cross_k"]  # reused, not recomputed
