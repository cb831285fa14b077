"""Terminology constraints: do they appear, what do they do to BLEU, what do they cost.

    make bench-constraints RUN=checkpoints/<run> [ARGS="split=validation sentences=200"]

For the split's first `pool` sentences in order, the unconstrained translation (the run's beam
search, or `decode.beam_size`) is compared with the reference, and the first sentences whose
reference has a word the translation lacks (a word of at least `min_chars` letters, the longest
such word) get that word as their one constraint, up to `sentences` of them. Those sentences are
translated again with it. Reported: the share of constrained translations that contain their
word, BLEU of both translations of those sentences against their references (sacreBLEU, with
the paired bootstrap test), and sentences per second of both searches (fastest of `repeats`
passes).
"""

from __future__ import annotations

import os
import re
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from translator.config import CONFIG_DIR

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_translate import check_output, emit, machine  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text)


def missing_word(translation: str, reference: str, min_chars: int) -> str | None:
    """The longest word of the reference (at least `min_chars` letters) the translation lacks."""
    have = set(words(translation))
    lacking = [w for w in words(reference) if len(w) >= min_chars and w not in have]
    return max(lacking, key=len) if lacking else None


def fastest(work, repeats: int) -> tuple[float, list]:
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = work()
        best = min(best, time.perf_counter() - start)
    return best, result


def bench_constraints(cfg: DictConfig) -> dict:
    from translator.data import load_corpus
    from translator.evaluation.scoring import paired_test, score
    from translator.inference.engines import load_translator
    from translator.run_dir import locate

    run = locate(cfg.run_dir, cfg.paths.checkpoints)
    translator = load_translator(run, cfg.decode, cfg.weights)
    corpus = load_corpus(translator.run_config.data, cfg.split)
    pool = cfg.pool or len(corpus.source)
    pool_sources, pool_references = corpus.source[:pool], corpus.target[:pool]
    plain_all = translator.translate(pool_sources)
    triples = zip(pool_sources, pool_references, plain_all, strict=True)
    chosen = [(s, r, p, missing_word(p, r, cfg.min_chars)) for s, r, p in triples]
    chosen = [c for c in chosen if c[3]][: cfg.sentences]
    sources, references = [c[0] for c in chosen], [c[1] for c in chosen]
    constraints = [[c[3]] for c in chosen]
    translator.translate_detailed(sources[:8], constraints=constraints[:8])  # trace first
    plain_s, plain = fastest(lambda: translator.translate(sources), cfg.repeats)
    constrained_s, found = fastest(
        lambda: translator.translate_detailed(sources, constraints=constraints), cfg.repeats
    )
    constrained = [t.text for t in found]
    present = sum(c[3] in words(t) for c, t in zip(chosen, constrained, strict=True))
    both = (("unconstrained", plain), ("constrained", constrained))
    scores = {name: score(hyp, references, cfg.bootstrap)["bleu"] for name, hyp in both}
    test = paired_test(("constrained", constrained), ("unconstrained", plain), references,
                       cfg.bootstrap)["bleu"]  # fmt: skip
    return {
        "benchmark": "constraints",
        "run_dir": str(run),
        "weights": str(translator.weights_file),
        "dataset": f"{translator.run_config.data.name}:{cfg.split}",
        "decode": OmegaConf.to_container(translator.decode),
        "machine": machine(),
        "sentences": len(sources),
        "constraints_present": present,
        "constraints_present_percent": round(100 * present / max(len(sources), 1), 1),
        "length_limited": sum(t.length_limited for t in found),
        "bleu_unconstrained": {k: scores["unconstrained"][k] for k in ("score", "ci")},
        "bleu_constrained": {k: scores["constrained"][k] for k in ("score", "ci")},
        "paired_test": {k: test[k] for k in ("difference", "p_value")},
        "sentences_per_second_unconstrained": round(len(sources) / plain_s, 2),
        "sentences_per_second_constrained": round(len(sources) / constrained_s, 2),
        "speed_ratio": round(plain_s / constrained_s, 3),
        "examples": [
            {"source": s, "constraint": c[0], "unconstrained": p, "constrained": t}
            for s, c, p, t in list(zip(sources, constraints, plain, constrained, strict=True))[:5]
        ],  # fmt: skip
    }


@hydra.main(config_path=str(CONFIG_DIR), config_name="bench_constraints", version_base="1.3")
def main(cfg: DictConfig) -> None:
    check_output(cfg.output)
    emit(bench_constraints(cfg), cfg.output)


if __name__ == "__main__":
    main()
