"""Paragraphs: how a run translates lines of several sentences, whole or segmented.

    make bench-paragraphs RUN=checkpoints/<run> [ARGS="split=validation"]

The split's first `sentences` sentences are joined `k` at a time (one space between them) into
lines, and their references likewise. Each table row gives sacreBLEU's BLEU (± the half-width of
its bootstrap 95% interval) and length ratio of the lines translated whole (`segment=false`: one
model input per line), sentence by sentence (the sentences translated alone, their translations
joined: what a perfect segmenter gives) and segmented (`segment=true`: the project's segmenter
cuts each line). Then the cost of segmenting: the split one sentence per line translated with
and without segmentation (fastest of `repeats` passes each), and the segmenter's own time on
those lines.
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from translator.config import CONFIG_DIR

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_translate import check_output, emit, machine  # noqa: E402

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def joined(lines: list[str], k: int) -> list[str]:
    """`lines` joined `k` at a time with one space (the last line may hold fewer)."""
    return [" ".join(lines[i : i + k]) for i in range(0, len(lines), k)]


def bleu(hypotheses: list[str], references: list[str]) -> dict:
    """sacreBLEU's BLEU, the half-width of its bootstrap 95% interval and the length ratio."""
    from sacrebleu.metrics import BLEU

    from translator.evaluation.scoring import BOOTSTRAP_SAMPLES

    metric = BLEU()
    result = metric.corpus_score(hypotheses, [references], n_bootstrap=BOOTSTRAP_SAMPLES)
    fields = json.loads(result.format(signature=str(metric.get_signature()), is_json=True))
    return {
        "bleu": round(result.score, 2),
        "ci": fields["confidence_var"],
        "length_ratio": round(result.sys_len / result.ref_len, 3),
    }


def row(translator, segmenter, sources: list[str], references: list[str], k: int,
        alone: list[str]) -> dict:  # fmt: skip
    """One k's line: whole, sentence by sentence (from `alone`, each sentence's translation)
    and segmented."""
    from translator.inference.paragraphs import translate_texts

    lines, refs = joined(sources, k), joined(references, k)
    whole = [t.text for t in translate_texts(translator, lines, None)]
    segmented = [t.text for t in translate_texts(translator, lines, segmenter)]
    return {
        "k": k,
        "lines": len(lines),
        "source_words_per_line": round(sum(len(line.split()) for line in lines) / len(lines), 1),
        "whole": bleu(whole, refs),
        "one_by_one": bleu(joined(alone, k), refs),
        "segmented": bleu(segmented, refs),
        "lines_cut_differently": sum(
            len(segmenter(line).spans) != min(k, len(sources) - k * i)
            for i, line in enumerate(lines)
        ),
    }


def fastest(work, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def timing(translator, segmenter, sources: list[str], repeats: int) -> dict:
    """Seconds to translate `sources` (one sentence per line) without and with segmentation,
    and of the segmenter alone."""
    from translator.inference.paragraphs import translate_texts

    translate_texts(translator, sources[:64], None)  # trace the searches first
    plain = fastest(lambda: translate_texts(translator, sources, None), repeats)
    cut = fastest(lambda: translate_texts(translator, sources, segmenter), repeats)
    alone = fastest(lambda: [segmenter(line) for line in sources], repeats)
    return {
        "sentences": len(sources),
        "seconds_unsegmented": round(plain, 3),
        "seconds_segmented": round(cut, 3),
        "segmenter_seconds": round(alone, 4),
        "segmenter_share_percent": round(100 * alone / plain, 2),
        "measured_overhead_percent": round(100 * (cut - plain) / plain, 2),
    }


def bench_paragraphs(cfg: DictConfig) -> dict:
    from translator.data import load_corpus
    from translator.inference.engines import load_translator
    from translator.inference.paragraphs import segmenter_for
    from translator.run_dir import locate

    run = locate(cfg.run_dir, cfg.paths.checkpoints)
    translator = load_translator(run, cfg.decode, cfg.weights)
    run_cfg = translator.run_config
    corpus = load_corpus(run_cfg.data, cfg.split)
    sources, references = corpus.source[: cfg.sentences], corpus.target[: cfg.sentences]
    segmenter = segmenter_for(translator, True)
    alone = translator.translate(sources)
    rows = [row(translator, segmenter, sources, references, k, alone) for k in cfg.joins]
    timed = corpus.source[: cfg.timing_sentences] if cfg.timing_sentences else corpus.source
    cost = timing(translator, segmenter, timed, cfg.repeats) if cfg.timing else None
    return {
        "benchmark": "paragraphs",
        "run_dir": str(run),
        "weights": str(translator.weights_file),
        "dataset": f"{run_cfg.data.name}:{cfg.split}[:{len(sources)}]",
        "decode": OmegaConf.to_container(translator.decode),
        "segmenter": f"{segmenter.backend} ({segmenter.language})",
        "machine": machine(),
        "joins": rows,
        "segmentation_cost": cost,
    }


@hydra.main(config_path=str(CONFIG_DIR), config_name="bench_paragraphs", version_base="1.3")
def main(cfg: DictConfig) -> None:
    check_output(cfg.output)
    emit(bench_paragraphs(cfg), cfg.output)


if __name__ == "__main__":
    main()
