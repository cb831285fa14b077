import sacrebleu

from translator.evaluation.scoring import score

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


def test_signatures_name_the_settings():
    ours = score(HYPOTHESES, REFERENCES)
    assert "case:mixed" in ours["bleu"]["signature"] and "tok:13a" in ours["bleu"]["signature"]
    assert "case:lc" in ours["bleu_lowercase"]["signature"]
    assert ours["chrf"]["signature"].startswith("nrefs:1|case:mixed|eff:yes|nc:6|nw:0")


def test_identical_text_scores_100():
    ours = score(REFERENCES, REFERENCES)
    assert ours["bleu"]["score"] == ours["chrf"]["score"] == 100.0
