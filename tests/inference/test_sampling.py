"""Sampling decoding (`decode.sampling_*`) on scripted next-token distributions.

The scripted model of test_decoding.py: START -> a .5, b .4, c .1; a -> c .7, END .3; b -> END .9,
a .1; c -> END 1. Draws are counted over many rows of one batch (each row draws on its own).
"""

import math

import numpy as np
import pytest
import tensorflow as tf
from omegaconf import OmegaConf

from tests.inference.test_decoding import END, MAX_LENGTH, A, B, C, padded, scripted
from translator.config import DecodeConfig
from translator.inference.decoding import Sampler, greedy_search, nucleus

ROWS = 4000


def sample(rows=ROWS, seed=(7, 1), **settings):
    sampler = Sampler(tf.constant(seed), **settings)
    state = {"dummy": tf.zeros([rows, 1])}
    tokens, scores = greedy_search(scripted, state, rows, MAX_LENGTH, choose=sampler.choose)
    return tokens.numpy(), scores.numpy()


def first_tokens(**settings):
    tokens, _ = sample(**settings)
    return np.bincount(tokens[:, 0], minlength=7) / ROWS


def test_top_k_1_is_greedy_search():
    tokens, scores = sample(rows=3, top_k=1)
    greedy, greedy_scores = greedy_search(scripted, {"dummy": tf.zeros([3, 1])}, 3, MAX_LENGTH)
    assert tokens.tolist() == greedy.numpy().tolist() == [padded(A, C, END)] * 3
    np.testing.assert_allclose(scores, greedy_scores.numpy())


def test_unrestricted_sampling_follows_the_model_distribution():
    shares = first_tokens(top_k=0)
    np.testing.assert_allclose(shares[[A, B, C]], [0.5, 0.4, 0.1], atol=0.03)


def test_scores_are_the_model_log_probabilities_of_the_drawn_tokens():
    tokens, scores = sample(rows=200, top_k=0)
    probability = {(A, C, END): 0.35, (A, END): 0.15, (B, END): 0.36, (B, A, C, END): 0.028,
                   (B, A, END): 0.012, (C, END): 0.1}  # fmt: skip
    for row, score in zip(tokens, scores, strict=True):
        drawn = tuple(int(t) for t in row[: list(row).index(END) + 1])
        assert score == pytest.approx(math.log(probability[drawn]), abs=1e-4)


def test_the_same_seed_repeats_its_draws_and_another_seed_does_not():
    first, _ = sample(rows=300, top_k=0, seed=(5, 9))
    again, _ = sample(rows=300, top_k=0, seed=(5, 9))
    other, _ = sample(rows=300, top_k=0, seed=(6, 9))
    assert (first == again).all()
    assert (first != other).any(axis=1).mean() > 0.3


def test_top_k_draws_only_among_the_k_most_probable():
    shares = first_tokens(top_k=2)
    assert shares[C] == 0
    np.testing.assert_allclose(shares[[A, B]], [0.5 / 0.9, 0.4 / 0.9], atol=0.03)


def test_top_p_draws_only_inside_the_nucleus():
    # a .5 + b .4 >= .8: the nucleus is {a, b}; c (.1) is outside it.
    shares = first_tokens(top_k=0, top_p=0.8)
    assert shares[C] == 0
    np.testing.assert_allclose(shares[[A, B]], [0.5 / 0.9, 0.4 / 0.9], atol=0.03)
    # .5 alone reaches .3: only the most probable token is left.
    assert first_tokens(top_k=0, top_p=0.3)[A] == 1.0


def test_nucleus_on_literal_distributions():
    logits = tf.math.log(tf.constant([[0.1, 0.6, 0.3], [0.25, 0.25, 0.5]]))
    kept = np.isfinite(nucleus(logits, 0.85).numpy())
    assert kept.tolist() == [[False, True, True], [True, True, True]]  # ties at the edge kept


def test_a_temperature_near_zero_is_greedy_search():
    tokens, _ = sample(rows=500, top_k=0, temperature=1e-3)
    assert (tokens == padded(A, C, END)).all()
    hot = first_tokens(top_k=0, temperature=3.0)  # flatter: c drawn far more often than .1
    assert hot[C] > 0.2


@pytest.mark.parametrize(
    ("settings", "wording"),
    [
        ({"sampling_topk": -1}, "decode.sampling_topk=-1"),
        ({"sampling_topp": 0.0}, "decode.sampling_topp=0"),
        ({"sampling_topp": 1.5}, "decode.sampling_topp=1.5"),
        ({"sampling_temperature": 0.0}, "decode.sampling_temperature=0.0"),
        ({"strategy": "beam", "sampling_topk": 10}, "greedy when sampling"),
    ],
)
def test_bad_sampling_settings_are_refused_by_key(settings, wording):
    with pytest.raises(ValueError, match=wording.replace(".", r"\.")):
        DecodeConfig(**settings)


def test_a_translator_samples_reproducibly_with_a_seed(trained_run):
    from translator.inference.translator import Translator

    cfg, _ = trained_run
    sentences = ["Ein Mann läuft.", "Zwei Hunde spielen im Schnee.", "Eine Frau liest."] * 4
    base = Translator.from_run_dir(cfg.run_dir)
    seeded = OmegaConf.merge(base.decode, {"sampling_topk": 0, "sampling_temperature": 3.0,
                                           "sampling_seed": 11})  # fmt: skip
    first = base.with_decode(seeded).translate(sentences)
    assert base.with_decode(seeded).translate(sentences) == first
    greedy = base.translate(sentences)
    assert first != greedy  # hot sampling strays from the memorised greedy outputs
    top1 = OmegaConf.merge(seeded, {"sampling_topk": 1})
    assert base.with_decode(top1).translate(sentences) == greedy
