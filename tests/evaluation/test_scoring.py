import numpy as np
import pytest
import sacrebleu

from tests.conftest import MULTI30K
from translator.evaluation.scoring import paired_test, score

HYPOTHESES = [
    "A man in a red shirt is riding a bike.",
    "Two dogs play in the snow.",
    "a woman sells fruit at the Market .",
]
REFERENCES = [
    "A man in a red shirt rides a bicycle.",
    "Two dogs are playing in the snow.",
    "A woman is selling fruit at a market.",
]


def test_scores_equal_sacrebleus_own_values():
    ours = score(HYPOTHESES, REFERENCES)
    bleu = sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES])
    bleu_lc = sacrebleu.corpus_bleu(HYPOTHESES, [REFERENCES], lowercase=True)
    chrf = sacrebleu.corpus_chrf(HYPOTHESES, [REFERENCES])
    assert ours["bleu"]["score"] == round(bleu.score, 2)
    assert ours["bleu_lowercase"]["score"] == round(bleu_lc.score, 2)
    assert ours["chrf"]["score"] == round(chrf.score, 2)
    assert ours["bleu_lowercase"]["score"] > ours["bleu"]["score"]  # "a woman"/"Market" now match


def test_ter_counts_edits_per_reference_word():
    """One insertion in 6 reference words and one substitution in 3: 2 / 9 edits."""
    hypotheses, references = ["the cat sat on mat", "A dog runs"], ["the cat sat on the mat",
                                                                    "the dog runs"]  # fmt: skip
    ours = score(hypotheses, references)["ter"]
    assert ours["score"] == 22.22 == round(sacrebleu.corpus_ter(hypotheses, [references]).score, 2)
    assert "case:lc" in ours["signature"]  # "A" and "the" differ; "A"/"a" would not
    assert score(references, references)["ter"]["score"] == 0.0


def test_signatures_name_the_settings():
    ours = score(HYPOTHESES, REFERENCES)
    assert "case:mixed" in ours["bleu"]["signature"] and "tok:13a" in ours["bleu"]["signature"]
    assert "case:lc" in ours["bleu_lowercase"]["signature"]
    assert ours["chrf"]["signature"].startswith(
        "nrefs:1|bs:1000|seed:12345|case:mixed|eff:yes|nc:6"
    )


def test_identical_text_scores_100():
    ours = score(REFERENCES, REFERENCES)
    assert ours["bleu"]["score"] == ours["chrf"]["score"] == 100.0


@pytest.fixture(scope="module")
def captions():
    """300 real English references, and three systems: two drop a tenth of the words (other
    draws), one two fifths (seeded)."""
    lines = (MULTI30K / "validation.en").read_text(encoding="utf-8").splitlines()[:300]
    rng = np.random.default_rng(0)

    def drop(rate):
        return [" ".join(w for w in line.split() if rng.random() >= rate) for line in lines]

    return lines, drop(0.1), drop(0.4), drop(0.1)


def test_confidence_intervals_are_sacrebleus_bootstrap(captions):
    references, good, _, _ = captions
    ours = score(good, references)
    theirs = sacrebleu.metrics.BLEU().corpus_score(good, [references], n_bootstrap=1000)
    assert f"± {ours['bleu']['ci']:.2f}" in str(theirs)
    for name in ("bleu", "bleu_lowercase", "chrf", "ter"):
        assert 0.1 < ours[name]["ci"] < 5, name
    assert score(good, references, bootstrap=0)["bleu"]["ci"] is None


def test_paired_test_tells_a_real_difference_from_none(captions):
    references, good, bad, alike = captions
    result = paired_test(("good", good), ("bad", bad), references)
    for name, metric in (("bleu", sacrebleu.corpus_bleu), ("chrf", sacrebleu.corpus_chrf)):
        assert result[name]["system"] == round(metric(good, [references]).score, 2)
        assert result[name]["baseline"] == round(metric(bad, [references]).score, 2)
        assert result[name]["difference"] > 10 and result[name]["p_value"] < 0.01
    ter = sacrebleu.corpus_ter
    assert result["ter"]["system"] == round(ter(good, [references]).score, 2)
    assert result["ter"]["difference"] < -10 and result["ter"]["p_value"] < 0.01  # fewer edits
    same = paired_test(("good", good), ("alike", alike), references)
    for name in ("bleu", "chrf", "ter"):
        assert abs(same[name]["difference"]) < 2.5 and same[name]["p_value"] > 0.05
