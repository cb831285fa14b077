"""Search graphs: one per strategy and beam size, whatever the length penalty and n-best size;
and hypotheses cut at their length limit are flagged, by both engines."""

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import compose
from tests.inference.test_ct2 import CT2_FLOAT32, run_copy  # noqa: F401  (the copied run)
from translator.data import load_corpus
from translator.inference.ct2_translator import CTranslate2Translator
from translator.inference.translator import Translator

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def sentences(trained_run):
    return load_corpus(trained_run[0].data, "train").source[:6]


def test_penalty_and_n_best_never_retrace_and_match_the_uncompiled_search(
    trained_run, sentences, monkeypatch
):
    traced = []
    search = Translator.search

    def counting(self, *args, **kwargs):
        traced.append(self.decode.beam_size if self.decode.strategy == "beam" else 1)
        return search(self, *args, **kwargs)

    monkeypatch.setattr(Translator, "search", counting)
    base = Translator.from_run_dir(trained_run[0].run_dir, compose("decode=beam").decode)
    settings = [(4, 0.6, 1), (4, 1.0, 1), (4, 0.0, 3), (4, 2.0, 4), (2, 1.0, 2), (4, 0.3, 2)]
    source_ids = base.source_ids(tf.constant(sentences))
    for beam, alpha, n_best in settings:
        decode = base.decode.copy()
        decode.beam_size, decode.length_penalty, decode.n_best = beam, alpha, n_best
        translator = base.with_decode(decode)
        compiled = translator._search(source_ids)
        calls = len(traced)
        eager = translator.search(source_ids)  # Python values, no graph
        assert len(traced) == calls + 1  # (the eager call itself, not a trace)
        del traced[-1]
        for got, want in zip(compiled, eager, strict=True):
            assert got.shape[1] == n_best
            np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=1e-5, atol=1e-5)
    assert sorted(traced) == [2, 4]  # one trace per beam size


def test_a_hypothesis_cut_at_its_length_limit_is_flagged_by_both_engines(run_copy, sentences):  # noqa: F811
    for strategy in ("greedy", "beam"):
        decode = compose(f"decode={strategy}").decode
        cut = compose(f"decode={strategy}", "decode.max_length_a=0", "decode.max_length_b=2").decode
        for engine in (Translator.from_run_dir, ct2):
            free = engine(run_copy, decode).translate_detailed(sentences)
            short = engine(run_copy, cut).translate_detailed(sentences)
            assert not any(t.length_limited for t in free), (strategy, engine)
            assert all(t.length_limited for t in short), (strategy, engine)
            assert all(len(t.text.split()) <= 2 for t in short)


def ct2(run, decode):
    return CTranslate2Translator.from_run_dir(run, decode, engine=CT2_FLOAT32)
