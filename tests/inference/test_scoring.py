"""Scores of given translations (`make score`): the model's own log-probabilities, batched in any
order, equal to what the search reported for its own output; the command's files and formats."""

import json

import numpy as np
import pytest
import tensorflow as tf

from tests.inference.test_ct2 import SOURCES, TARGETS, padded, tiny_model
from translator.config import load_config
from translator.errors import CorpusError, TranslatorError
from translator.inference.score_command import score
from translator.inference.scoring import ForcedScorer
from translator.inference.translator import Translator
from translator.tokenizer import END_ID, START_ID


def direct_scores(model, tokenizers, sources, targets):
    """Sum over y1 .. yn END of log softmax(logits) from one forward pass, computed here."""
    source = tokenizers.source.tokenize(sources).to_list()
    target = tokenizers.target.tokenize(targets).to_list()
    logits = model((padded(source, [START_ID], [END_ID]), padded(target, [START_ID])))
    log_probs = tf.nn.log_softmax(logits).numpy()
    return [
        float(log_probs[b, np.arange(len(row) + 1), [*row, END_ID]].sum())
        for b, row in enumerate(target)
    ], [len(row) + 1 for row in target]


def test_a_score_is_the_sum_of_the_models_log_probabilities(multi30k_tokenizers):
    model = tiny_model(multi30k_tokenizers)
    sources, targets = [*SOURCES, "Ein Hund."], [*TARGETS, ""]  # an empty target: END only
    expected, lengths = direct_scores(model, multi30k_tokenizers, sources, targets)
    scorer = ForcedScorer(model, multi30k_tokenizers, max_tokens=64, batch_size=2)
    done = []
    found = scorer.score(sources, targets, progress=done.append)
    assert [s.tokens for s in found] == lengths and lengths[-1] == 1
    np.testing.assert_allclose([s.log_prob for s in found], expected, atol=1e-4)
    assert found[0].per_token == pytest.approx(expected[0] / lengths[0])
    assert sum(done) == 4 and len(done) == 2  # two batches of two
    alone = scorer.score(sources[1:2], targets[1:2])[0]  # batch neighbours change nothing
    assert alone.log_prob == pytest.approx(found[1].log_prob, abs=1e-4)


def test_targets_beyond_the_models_positions_and_unpaired_lines_are_refused(multi30k_tokenizers):
    model = tiny_model(multi30k_tokenizers)  # 64 positions
    scorer = ForcedScorer(model, multi30k_tokenizers, max_tokens=64)
    with pytest.raises(CorpusError, match="pair 2: the target has .* tokens with END; the "
                                          "model's positions end at 64"):  # fmt: skip
        scorer.score(["a", "b"], ["A man.", "a " * 80])
    with pytest.raises(CorpusError, match="2 sources but 1 targets"):
        scorer.score(["a", "b"], ["A man."])


@pytest.mark.slow
def test_the_score_of_a_greedy_translation_is_the_score_greedy_search_reported(trained_run):
    """Cached step-by-step search and one full forward pass agree, wherever the output's text
    tokenizes back into the pieces the search produced."""
    from translator.data import load_corpus

    cfg, _ = trained_run
    translator = Translator.from_run_dir(cfg.run_dir)
    sources = load_corpus(cfg.data, "validation").source[:64]
    found = translator.translate_detailed(sources)
    scores = translator.score(sources, [t.text for t in found])
    compared = 0
    for result, scored in zip(found, scores, strict=True):
        pieces = translator.tokenizers.target.tokenize([result.text]).to_list()[0]
        if result.length_limited or scored.tokens != len(pieces) + 1:
            continue
        assert scored.log_prob == pytest.approx(result.score, abs=1e-3)
        compared += 1
    assert compared >= 48


@pytest.mark.slow
def test_the_score_command_writes_one_line_per_pair(trained_run, tmp_path, capsys):
    cfg, _ = trained_run
    source, target, output = tmp_path / "src.de", tmp_path / "hyp.en", tmp_path / "scores.txt"
    source.write_text("Ein Mann fährt Fahrrad.\n\nEine Frau liest.\n", encoding="utf-8")
    target.write_text("A man rides a bike.\nA dog.\n\n", encoding="utf-8")
    base = [f"run_dir={cfg.run_dir}", f"source={source}", f"target={target}"]
    summary = score(load_config("score", [*base, f"output={output}"]))
    numbers = [float(line) for line in output.read_text().splitlines()]
    assert summary["pairs"] == len(numbers) == 3 and all(n < 0 for n in numbers)

    score(load_config("score", [*base, "format=json"]))
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [row["log_prob"] for row in rows] == pytest.approx(numbers, abs=1e-5)
    assert rows[2]["tokens"] == 1  # an empty target: END only
    assert rows[0]["per_token"] == pytest.approx(rows[0]["log_prob"] / rows[0]["tokens"])
    score(load_config("score", [*base, "per_token=true"]))
    means = [float(line) for line in capsys.readouterr().out.splitlines()]
    assert means == pytest.approx([row["per_token"] for row in rows], abs=1e-5)

    with pytest.raises(TranslatorError, match="scores.txt exists; pass overwrite=true"):
        score(load_config("score", [*base, f"output={output}"]))
    with pytest.raises(TranslatorError, match="format='csv': expected one of number, json"):
        score(load_config("score", [*base, "format=csv"]))
    target.write_text("A man rides a bike.\n", encoding="utf-8")
    with pytest.raises(CorpusError, match=r"hyp.en has 1 lines but .*src.de has more"):
        score(load_config("score", [*base, f"output={tmp_path / 'new.txt'}"]))
    assert not (tmp_path / "new.txt").exists()  # nothing half written
