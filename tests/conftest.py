"""Shared fixtures. Tests read the real corpora from ../shared/data and compose the real configs."""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

# The package sets TensorFlow's CPU allocator, which must happen before TensorFlow starts.
import translator  # noqa: E402, F401

# isort: split
import tensorflow as tf  # noqa: E402

# Two logical CPU devices, so MirroredStrategy can be exercised without a GPU. This must happen
# before TensorFlow initialises its devices, hence at import time of the conftest.
_cpus = tf.config.list_physical_devices("CPU")
if _cpus:
    try:
        tf.config.set_logical_device_configuration(
            _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
        )
    except RuntimeError:
        pass  # devices already initialised by an earlier import


import pytest  # noqa: E402

from translator.config import PROJECT_ROOT, load_config  # noqa: E402

SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
MULTI30K = SHARED_DATA / "multi30k"
ANKI = SHARED_DATA / "anki_spa_en"


def compose(*overrides: str):
    """The real train config, composed with overrides (tests shrink it further)."""
    return load_config("train", list(overrides))


@pytest.fixture(scope="session")
def multi30k_cfg():
    return compose("experiment=multi30k_de_en")


@pytest.fixture(scope="session")
def multi30k_tokenizers(multi30k_cfg):
    """De->en tokenizers learned from the full Multi30k training split (a few seconds)."""
    from translator.data import load_corpus
    from translator.tokenizer import train_tokenizers

    train = load_corpus(multi30k_cfg.data, "train")
    return train_tokenizers(train.source, train.target, multi30k_cfg.tokenizer)


@pytest.fixture(autouse=True)
def float32_policy():
    """Training tests may switch the global precision policy; every test starts in float32."""
    import keras

    keras.mixed_precision.set_global_policy("float32")
    yield
    keras.mixed_precision.set_global_policy("float32")


# Multi30k de->en without an experiment's tuned settings.
TINY_BASE = ("~experiment", "data=multi30k_de_en", "tokenizer=shared")


def tiny_run(run_dir, *overrides: str):
    """A tiny model on 64 real Multi30k de->en pairs, validated on those same pairs: the
    default train settings (configs/train/default.yaml), not a tuned experiment's."""
    return compose(
        *TINY_BASE,
        "model=tiny",
        "model.d_model=64",
        "model.dff=128",
        "data.max_pairs=64",
        "data.splits.validation=train",
        "tokenizer.shared=false",  # one 1000-piece vocabulary per language
        "tokenizer.vocab_size=1000",
        "train.warmup_steps=50",
        "train.lr_scale=0.3",
        "train.label_smoothing=0.0",
        "train.early_stopping_patience=null",
        "train.tensorboard=false",
        "train.verbose=2",
        "train.average_last=0",
        "train.max_minutes=null",
        "decode=greedy",  # the run's decode settings, which inference commands follow
        f"run_dir={run_dir}",
        *overrides,
    )


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """A tiny model trained to memorise 64 Multi30k de->en pairs (about a minute on 2 cores).

    16 epochs of 50 steps: floating-point results differ between CPUs, and on an AVX2-only one the
    loss was still 0.10 after 12 epochs (greedy reproduced too few targets), 0.005 after 16. On an
    AMX one it stays near 0.03 and greedy BLEU on the 64 pairs wavers between 87 and 97 from epoch
    9 on (epoch 1: 0.7), so tests take BLEU > 80 as memorised.
    """
    from translator.training.trainer import train

    run_dir = tmp_path_factory.mktemp("trained") / "run"
    cfg = tiny_run(run_dir, "train.epochs=16", "train.steps_per_epoch=50")
    return cfg, train(cfg)
