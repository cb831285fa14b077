"""Corpus-level scores with sacreBLEU, each with its signature and 95% confidence interval, and
sacreBLEU's paired significance test between two systems on the same references. BLEU and chrF
are higher for better translations; TER (edits per reference word, x100) is lower."""

from __future__ import annotations

import json

from sacrebleu.metrics import BLEU, CHRF, TER
from sacrebleu.significance import PairedTest

BOOTSTRAP_SAMPLES = 1000  # sacreBLEU's default; its resampling seed is fixed (SACREBLEU_SEED)


def metrics() -> dict:
    """BLEU (cased, 13a: sacreBLEU's default), BLEU lowercased (comparable with published
    Multi30k figures), chrF and TER (sacreBLEU's defaults: case-insensitive, tercom tokens)."""
    return {
        "bleu": BLEU(tokenize="13a"),
        "bleu_lowercase": BLEU(tokenize="13a", lowercase=True),
        "chrf": CHRF(),
        "ter": TER(),
    }


def check_lengths(hypotheses: list[str], references: list[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")


def score(hypotheses: list[str], references: list[str], bootstrap: int = BOOTSTRAP_SAMPLES
          ) -> dict:  # fmt: skip
    """Each metric's score and, with `bootstrap` resamples (0: none), the half-width of its
    bootstrap 95% confidence interval (sacreBLEU's `μ ± ci`).

    Returns:
        {"bleu": {"score", "ci", "signature", "details"}, "bleu_lowercase": {...}, "chrf": {...},
        "ter": {...}}.
    """
    check_lengths(hypotheses, references)
    results = {}
    for name, metric in metrics().items():
        result = metric.corpus_score(hypotheses, [references], n_bootstrap=max(bootstrap, 1))
        signature = str(metric.get_signature())
        fields = json.loads(result.format(signature=signature, is_json=True))
        results[name] = {
            "score": round(result.score, 2),
            "ci": fields.get("confidence_var"),
            "signature": signature,
            "details": str(result),
        }
    return results


def paired_test(system: tuple[str, list[str]], baseline: tuple[str, list[str]],
                references: list[str], bootstrap: int = BOOTSTRAP_SAMPLES) -> dict:  # fmt: skip
    """sacreBLEU's paired bootstrap resampling test of `system` against `baseline` (each a
    (name, hypotheses) pair) on cased BLEU, chrF and TER.

    Returns:
        {"bleu": {"system", "baseline", "difference", "p_value", "signature"}, "chrf": {...},
        "ter": {...}}: p_value is the chance of a difference this large if the systems were
        equally good (for TER, a negative difference is the better system).
    """
    for _, hypotheses in (system, baseline):
        check_lengths(hypotheses, references)
    chosen = {"bleu": BLEU(tokenize="13a"), "chrf": CHRF(), "ter": TER()}
    test = PairedTest([baseline, system], chosen, [references], test_type="bs",
                      n_samples=bootstrap)  # fmt: skip
    signatures, results = test()
    report = {}
    for (name, _), (metric, (base, new)) in zip(chosen.items(), _columns(results), strict=True):
        report[name] = {
            "system": round(new.score, 2),
            "baseline": round(base.score, 2),
            "difference": round(new.score - base.score, 2),
            "p_value": round(float(new.p_value), 4),
            "signature": str(signatures[metric]),
        }
    return report


def _columns(results: dict) -> list:
    """The per-metric columns of PairedTest's results, in order (its first is the names)."""
    return [(metric, column) for metric, column in results.items() if metric != "System"]
