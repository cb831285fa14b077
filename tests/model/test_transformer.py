"""Transformer construction: dropout rates reach the right sublayers and configs round-trip."""

import numpy as np
import pytest

from translator.model.transformer import Transformer


def rates(model: Transformer) -> dict[str, set[float]]:
    """Every dropout rate in the model, by where it acts."""
    found = {"attention": set(), "activation": set(), "residual": set(), "embedding": set()}
    for stack in (model.encoder, model.decoder):
        found["embedding"].add(stack.embedding_dropout.rate)
        for layer in stack.layers:
            for name, sub in vars(layer).items():
                if name.endswith("attention"):
                    found["attention"].add(sub.weights_dropout.rate)
                elif name == "feed_forward":
                    found["activation"].add(sub.inner_dropout.rate)
                elif name.endswith("residual"):
                    found["residual"].add(sub.drop.rate)
    return found


def test_attention_and_activation_dropout_default_to_dropout():
    model = Transformer(50, 60, num_layers=2, d_model=16, num_heads=2, dff=32, dropout=0.3)
    assert rates(model) == {k: {0.3} for k in ("attention", "activation", "residual", "embedding")}


def test_attention_and_activation_dropout_set_apart():
    model = Transformer(50, 60, num_layers=2, d_model=16, num_heads=2, dff=32, dropout=0.3,
                        attention_dropout=0.1, activation_dropout=0.0)  # fmt: skip
    assert rates(model) == {
        "attention": {0.1},
        "activation": {0.0},
        "residual": {0.3},
        "embedding": {0.3},
    }


def test_get_config_round_trip_keeps_every_option_and_the_outputs():
    settings = dict(num_layers=2, d_model=16, num_heads=2, dff=32, dropout=0.3,
                    attention_dropout=0.1, activation_dropout=0.2, norm_first=True,
                    tie_embeddings=True, share_embeddings=False)  # fmt: skip
    model = Transformer(50, 60, **settings)
    source = np.array([[5, 6, 7, 0]])
    target = np.array([[2, 8, 9]])
    logits = model((source, target))
    clone = Transformer.from_config(model.get_config())
    clone((source, target))
    clone.set_weights(model.get_weights())
    assert clone.get_config() == model.get_config()
    assert {k: getattr(clone, k) for k in settings} == settings
    np.testing.assert_allclose(clone((source, target)), logits, atol=1e-6)
    assert logits.shape == (1, 3, 60)


def test_shared_embeddings_are_one_matrix_that_saves_and_loads(tmp_path):
    settings = dict(num_layers=1, d_model=16, num_heads=2, dff=32, tie_embeddings=True)
    source = np.array([[5, 6, 7, 0]])
    target = np.array([[2, 8, 9]])
    separate = Transformer(50, 50, **settings)
    separate((source, target))
    model = Transformer(50, 50, share_embeddings=True, **settings)
    logits = model((source, target))
    assert model.encoder.embedding is model.decoder.embedding
    assert model.count_params() == separate.count_params() - 50 * 16

    model.save_weights(str(tmp_path / "shared.weights.h5"))
    clone = Transformer.from_config(model.get_config())
    clone((source, target))
    clone.load_weights(str(tmp_path / "shared.weights.h5"))
    assert clone.share_embeddings and clone.encoder.embedding is clone.decoder.embedding
    np.testing.assert_allclose(clone((source, target)), logits, atol=1e-6)


def test_shared_embeddings_need_equal_vocabularies():
    with pytest.raises(ValueError, match="source has 50 tokens, target 60"):
        Transformer(50, 60, num_layers=1, d_model=16, num_heads=2, dff=32, share_embeddings=True)
