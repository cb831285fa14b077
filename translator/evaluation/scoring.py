"""Corpus-level scores with sacreBLEU, each with its signature for reproducibility."""

from __future__ import annotations

from sacrebleu.metrics import BLEU, CHRF


def score(hypotheses: list[str], references: list[str]) -> dict:
    """BLEU (cased, 13a), BLEU lowercased (comparable with published Multi30k figures) and chrF.

    Returns:
        {"bleu": {"score", "signature", "details"}, "bleu_lowercase": {...}, "chrf": {...}}.
    """
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    results = {}
    for name, metric in (
        ("bleu", BLEU(tokenize="13a")),
        ("bleu_lowercase", BLEU(tokenize="13a", lowercase=True)),
        ("chrf", CHRF()),
    ):
        result = metric.corpus_score(hypotheses, [references])
        results[name] = {
            "score": round(result.score, 2),
            "signature": str(metric.get_signature()),
            "details": str(result),
        }
    return results
