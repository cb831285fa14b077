"""Constrained beam search (dynamic beam allocation) on the scripted distributions of
test_decoding.py: START -> a .5, b .4, c .1; a -> c .7, END .3; b -> END .9, a .1; c -> END 1.
Unconstrained, beam search finds "b END" (.36) before "a c END" (.35)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from tests.inference.test_decoding import END, LOG_TABLE, A, B, C
from translator.errors import TranslatorError
from translator.inference.constraints import Progress, constrained_beam_search
from translator.inference.decoding import beam_search

START = 2
TABLE = LOG_TABLE.numpy()


def step(tokens, index, state):
    return TABLE[tokens], state


def reorder(state, rows):
    return [state[r] for r in rows]


def search(phrases, limit=6, beam=3, alpha=0.0, continuations=None):
    return constrained_beam_search(step, list(range(len(phrases))), reorder, phrases,
                                   [limit] * len(phrases), beam, alpha, START, END,
                                   continuations)  # fmt: skip


def test_the_best_hypothesis_that_contains_the_phrase_wins():
    ((tokens, score, limited),) = search([[[C]]])
    assert tokens == [A, C, END] and score == pytest.approx(math.log(0.35), abs=1e-5)
    assert not limited


def test_several_phrases_in_any_order_and_multi_token_phrases():
    """Beam 5: the banks of 0, 1 and 2 met tokens each keep the best of theirs; with beam 3
    "b a" (the only probable way to b and c) loses its bank to "a c" (.35)."""
    found = search([[[B], [C]], [[A, C]], [[C], [B]]], beam=5)
    assert found[0][0] == [B, A, C, END]  # b then c: b a c END, .4 * .1 * .7
    assert found[0][1] == pytest.approx(math.log(0.4 * 0.1 * 0.7), abs=1e-4)
    assert found[1][0] == [A, C, END]
    assert found[2][0] == [B, A, C, END]  # the order they are given in does not matter


def test_a_repeated_token_phrase_is_forced_even_when_improbable():
    ((tokens, score, _),) = search([[[A, A]]])
    assert tokens[:2] == [A, A] and tokens[-1] == END
    assert score < math.log(1e-6)


def test_no_constraints_equals_plain_beam_search():
    found = search([[], []], beam=2)
    tokens, scores = beam_search(lambda t, i, s: (tf.gather(LOG_TABLE, t[:, 0]), s),
                                 {"d": tf.zeros([2, 1])}, 2, 6, 2, 0.0, 1)  # fmt: skip
    for (own, score, _), theirs, their_score in zip(found, tokens.numpy()[:, 0],
                                                    scores.numpy()[:, 0], strict=True):  # fmt: skip
        assert own == [int(t) for t in theirs if t != 0]
        assert score == pytest.approx(float(their_score), abs=1e-5)


def test_constraints_that_cannot_fit_the_limit_are_refused_and_a_tight_one_falls_back():
    with pytest.raises(
        TranslatorError,
        match="sentence 1: its constraints need 4 tokens with END; its output length limit is 3",
    ):
        search([[[A, C, B]]], limit=3)
    # Room for the phrase and END, but with a beam of one, END (.3 after a) never makes the
    # beam before the limit: the best live hypothesis, with the phrase met, is returned,
    # marked length-limited.
    ((tokens, _, limited),) = search([[[A]]], limit=2, beam=1)
    assert tokens == [A, C] and limited


def test_a_completed_phrase_is_not_extended_into_a_longer_word():
    """With c a piece that continues a word, "a" may not become "a c": a -> END (.3) wins."""
    continuations = np.zeros(len(TABLE), bool)
    continuations[C] = True
    ((tokens, score, _),) = search([[[A]]], continuations=continuations)
    assert tokens == [A, END] and score == pytest.approx(math.log(0.5 * 0.3), abs=1e-5)
    assert search([[[A]]])[0][0] == [A, C, END]  # without the rule


def test_progress_resets_a_phrase_left_halfway():
    phrases = [[A, C], [B]]
    inside = Progress().after(A, phrases)
    assert inside.inside == (0, 1) and inside.met_tokens(phrases) == 1
    assert inside.after(B, phrases).met == frozenset({1})  # a left halfway, b met
    assert inside.after(B, phrases).met_tokens(phrases) == 1
    done = inside.after(C, phrases).after(B, phrases)
    assert done.complete(phrases) and done.next_tokens(phrases) == set()
    assert np.isfinite(TABLE[START, A])


def test_translator_outputs_contain_their_constraints(multi30k_tokenizers):
    from tests.conftest import compose
    from tests.inference.test_ct2 import SOURCES, tiny_model
    from translator.inference.translator import Translator

    decode = compose("decode=beam", "decode.beam_size=4", "decode.max_length_b=20").decode
    translator = Translator(tiny_model(multi30k_tokenizers), multi30k_tokenizers, decode, 64)
    constraints = [["bicycle", "Fahrrad"], [], ["a red book", "woman"]]  # "Fahrrad": in the source
    found = translator.translate_detailed(SOURCES, constraints=constraints)
    assert "bicycle" in found[0].text and "Fahrrad" in found[0].text
    assert "a red book" in found[2].text and "woman" in found[2].text
    plain = translator.translate_detailed(SOURCES)
    assert found[1].text == plain[1].text and found[1].score == pytest.approx(plain[1].score)
    with pytest.raises(TranslatorError, match="sentence 1: give constraints or a prefix"):
        translator.translate_detailed(SOURCES[:1], constraints=[["a"]], prefixes=["A"])
