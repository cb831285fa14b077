"""R-Drop: the loss of two dropout passes, and a model that still loads as a Transformer."""

import keras
import numpy as np
import pytest

from translator.model.transformer import Transformer
from translator.training.losses import MaskedCrossEntropy, symmetric_kl
from translator.training.rdrop import RDropTransformer

SOURCE = np.array([[5, 6, 7, 8, 0], [9, 10, 11, 0, 0]])
TARGET_IN = np.array([[2, 12, 13, 14], [2, 15, 16, 0]])
TARGET_OUT = np.array([[12, 13, 14, 3], [15, 16, 3, 0]])


def seeded_model(consistency: float, dropout: float = 0.3) -> RDropTransformer:
    """The same weights and the same dropout masks on every call with the same arguments."""
    keras.utils.set_random_seed(7)
    model = RDropTransformer(
        40, 40, num_layers=2, d_model=16, num_heads=2, dff=32, dropout=dropout,
        consistency=consistency,
    )  # fmt: skip
    model((SOURCE, TARGET_IN))
    model.compile(optimizer="adam", loss=MaskedCrossEntropy(0.1))
    return model


@pytest.mark.parametrize("consistency", [1.0, 2.5])
def test_r_drop_loss_is_the_mean_of_two_dropout_passes_plus_alpha_kl(consistency):
    model = seeded_model(consistency)
    first = model((SOURCE, TARGET_IN), training=True)
    loss = model.compute_loss((SOURCE, TARGET_IN), TARGET_OUT, first, training=True)

    twin = seeded_model(consistency)  # the same two passes, written out
    a = twin((SOURCE, TARGET_IN), training=True)
    b = twin((SOURCE, TARGET_IN), training=True)
    np.testing.assert_allclose(a, first, atol=1e-6)
    kl = float(symmetric_kl(TARGET_OUT, a, b))
    assert kl > 1e-3  # the passes had different dropout masks
    xent = MaskedCrossEntropy(0.1)
    expected = 0.5 * (float(xent(TARGET_OUT, a)) + float(xent(TARGET_OUT, b))) + consistency * kl
    assert float(loss) == pytest.approx(expected, rel=1e-5)


def test_r_drop_leaves_evaluation_and_dropout_free_models_alone():
    model = seeded_model(2.5)
    logits = model((SOURCE, TARGET_IN))
    plain = float(MaskedCrossEntropy(0.1)(TARGET_OUT, logits))
    assert float(
        model.compute_loss((SOURCE, TARGET_IN), TARGET_OUT, logits, training=False)
    ) == pytest.approx(plain, rel=1e-6)
    # Without dropout both passes agree: the KL term is 0 and the loss is the plain one.
    still = seeded_model(2.5, dropout=0.0)
    logits = still((SOURCE, TARGET_IN), training=True)
    plain = float(MaskedCrossEntropy(0.1)(TARGET_OUT, logits))
    loss = still.compute_loss((SOURCE, TARGET_IN), TARGET_OUT, logits, training=True)
    assert float(loss) == pytest.approx(plain, rel=1e-5)


def test_r_drop_model_saves_the_plain_transformers_config():
    model = seeded_model(2.5)
    config = model.get_config()
    assert "consistency" not in config
    plain = Transformer.from_config(config)
    plain((SOURCE, TARGET_IN))
    plain.set_weights(model.get_weights())
    np.testing.assert_allclose(plain((SOURCE, TARGET_IN)), model((SOURCE, TARGET_IN)), atol=1e-6)
