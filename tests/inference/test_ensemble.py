"""Ensembles: the members' log-probabilities averaged at each step; a run with itself decodes
and scores as the run; runs with other vocabularies are refused; evaluate takes a list of runs."""

import numpy as np
import pytest
import tensorflow as tf

from tests.conftest import compose
from tests.inference.test_ct2 import SOURCES, TARGETS, padded, tiny_model
from translator.errors import TranslatorError
from translator.inference.ensemble import Ensemble, check_shared_vocabulary
from translator.inference.scoring import ForcedScorer
from translator.inference.translator import Translator
from translator.tokenizer import END_ID, START_ID, TokenizerPair


def test_a_step_averages_the_members_log_probabilities(multi30k_tokenizers):
    first, second = tiny_model(multi30k_tokenizers), tiny_model(multi30k_tokenizers)
    for variable in second.weights:  # another model: its weights perturbed
        variable.assign(variable + np.random.default_rng(1).normal(0, 0.05, variable.shape))
    ensemble = Ensemble([first, second])
    source = padded(multi30k_tokenizers.source.tokenize(SOURCES).to_list(), [START_ID], [END_ID])
    target_in = padded(multi30k_tokenizers.target.tokenize(TARGETS).to_list(), [START_ID])
    expected = np.mean([tf.nn.log_softmax(m((source, target_in))).numpy()
                        for m in (first, second)], axis=0)  # fmt: skip
    memories, padding, _ = ensemble.encode(source)
    whole, _, _ = ensemble.decode(target_in, memories, padding)
    np.testing.assert_allclose(whole.numpy(), expected, atol=1e-5)
    caches = ensemble.init_cache(memories)
    for index in range(3):  # cached steps equal the whole-prefix pass
        step, caches, _ = ensemble.decode_step(target_in[:, index : index + 1], caches,
                                               tf.constant(index), padding)  # fmt: skip
        np.testing.assert_allclose(step.numpy(), expected[:, index], atol=1e-5)


@pytest.mark.parametrize("search", ["decode=greedy", "decode=beam"])
def test_an_ensemble_of_a_model_with_itself_is_the_model(multi30k_tokenizers, search):
    model = tiny_model(multi30k_tokenizers)
    decode = compose(search, "decode.max_length_b=8").decode
    alone = Translator(model, multi30k_tokenizers, decode, 64)
    twice = Translator(Ensemble([model, model]), multi30k_tokenizers, decode, 64)
    for a, b in zip(alone.translate_detailed(SOURCES), twice.translate_detailed(SOURCES),
                    strict=True):  # fmt: skip
        assert a.text == b.text and a.score == pytest.approx(b.score, abs=1e-4)
    scores = [ForcedScorer(m, multi30k_tokenizers, 64).score(SOURCES, TARGETS)
              for m in (model, Ensemble([model, model]))]  # fmt: skip
    np.testing.assert_allclose([s.log_prob for s in scores[0]], [s.log_prob for s in scores[1]],
                               atol=1e-4)  # fmt: skip


def test_runs_with_other_vocabularies_are_refused(multi30k_tokenizers, multi30k_cfg):
    from translator.data import load_corpus
    from translator.tokenizer import train_tokenizers

    pair = multi30k_tokenizers
    corpus = load_corpus(multi30k_cfg.data, "validation")
    settings = compose("~experiment", "data=multi30k_de_en", "tokenizer.vocab_size=500").tokenizer
    other = train_tokenizers(corpus.source, corpus.target, settings)
    swapped = TokenizerPair(other.source, pair.target)
    with pytest.raises(
        TranslatorError,
        match="run_dir: b has another source vocabulary than a: "
        "an ensemble needs runs that share a tokenizer",
    ):
        check_shared_vocabulary(["a", "b"], [pair, swapped])
    check_shared_vocabulary(["a", "b"], [pair, pair])


@pytest.mark.slow
def test_evaluate_and_score_take_a_list_of_runs(trained_run, tmp_path):
    import shutil

    from translator.config import load_config
    from translator.evaluation.evaluate import evaluate
    from translator.inference.score_command import score

    run = tmp_path / "run"
    shutil.copytree(trained_run[0].run_dir, run)
    single = evaluate(load_config("evaluate", [f"run_dir={run}", "split=train", "bootstrap=0"]))
    both = evaluate(load_config("evaluate", [f"run_dir=[{run},{run}]", "split=train",
                                             "bootstrap=0"]))  # fmt: skip
    assert both["scores"] == single["scores"] and both["ensemble"] == [str(run), str(run)]
    assert both["hypotheses"].endswith(".ensemble2.hyp")
    with pytest.raises(TranslatorError, match="an ensemble .* needs engine=tensorflow"):
        evaluate(load_config("evaluate", [f"run_dir=[{run},{run}]", "engine=ctranslate2"]))
    source, target = tmp_path / "s.de", tmp_path / "t.en"
    source.write_text("Ein Mann fährt Fahrrad.\n", encoding="utf-8")
    target.write_text("A man rides a bike.\n", encoding="utf-8")
    results = [
        score(
            load_config("score", [f"run_dir={runs}", f"source={source}", f"target={target}"])
        )  # fmt: skip
        for runs in (run, f"[{run},{run}]")
    ]
    assert results[0]["per_token"] == pytest.approx(results[1]["per_token"], abs=1e-4)
