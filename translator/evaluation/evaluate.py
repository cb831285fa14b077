"""Translate a test set with a run and score it: `make evaluate RUN=checkpoints/<run>`."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from translator.data import load_corpus
from translator.data.corpus import read_lines
from translator.errors import CorpusError
from translator.evaluation.scoring import score
from translator.inference.translator import Translator
from translator.run_dir import write_atomic

log = logging.getLogger(__name__)


def decode_name(decode: DictConfig) -> str:
    if decode.strategy == "greedy":
        return "greedy"
    return f"beam{decode.beam_size}-a{decode.length_penalty:g}"


def test_set(cfg: DictConfig, run_cfg: DictConfig) -> tuple[str, list[str], list[str]]:
    """(name, sources, references): the given file pair, or a split of the run's dataset."""
    if cfg.source or cfg.reference:
        if not (cfg.source and cfg.reference):
            raise CorpusError("give both source=FILE and reference=FILE (or neither)")
        sources, references = read_lines(Path(cfg.source)), read_lines(Path(cfg.reference))
        if len(sources) != len(references):
            raise CorpusError(
                f"{cfg.source} has {len(sources)} lines but {cfg.reference} has {len(references)}"
            )
        return Path(cfg.source).stem, sources, references
    data = run_cfg.data
    if cfg.data_path:
        data = OmegaConf.merge(data, {"path": cfg.data_path})
    corpus = load_corpus(data, cfg.split)
    return f"{data.name}-{cfg.split}", corpus.source, corpus.target


def evaluate(cfg: DictConfig) -> dict:
    """Translate, score with sacreBLEU, and write hypotheses and a JSON report into the run dir."""
    translator = Translator.from_command(cfg)
    run, decode = translator.run, translator.decode
    weights = run.weights_kind(translator.weights_file)
    name, sources, references = test_set(cfg, translator.run_config)

    start = time.perf_counter()
    with tqdm(total=len(sources), unit="sent", desc=f"translating {name}", file=sys.stderr) as bar:
        hypotheses = [t.text for t in translator.translate_detailed(sources, progress=bar.update)]
    seconds = time.perf_counter() - start
    scores = score(hypotheses, references)

    out_dir = run.eval_dir
    out_dir.mkdir(exist_ok=True)
    stem = f"{name}.{weights}.{decode_name(decode)}"
    hyp_path = out_dir / f"{stem}.hyp"
    write_atomic(hyp_path, "\n".join(hypotheses) + "\n")
    report = {
        "run_dir": str(run),
        "dataset": name,
        "sentences": len(sources),
        "scores": {k: v["score"] for k, v in scores.items()},
        "signatures": {k: v["signature"] for k, v in scores.items()},
        "details": {k: v["details"] for k, v in scores.items()},
        "decode": OmegaConf.to_container(decode, resolve=True),
        "weights": weights,
        "seconds": round(seconds, 2),
        "sentences_per_second": round(len(sources) / seconds, 2) if seconds else None,
        "hypotheses": str(hyp_path),
    }
    report_path = out_dir / f"{stem}.json"
    write_atomic(report_path, json.dumps(report, indent=2, ensure_ascii=False))
    print_table(report, report_path)
    return report


def print_table(report: dict, report_path: Path) -> None:
    rows = [
        ("BLEU", report["scores"]["bleu"], report["signatures"]["bleu"]),
        (
            "BLEU (lowercased)",
            report["scores"]["bleu_lowercase"],
            report["signatures"]["bleu_lowercase"],
        ),
        ("chrF", report["scores"]["chrf"], report["signatures"]["chrf"]),
    ]
    print(f"{report['dataset']}: {report['sentences']} sentences, "
          f"{report['sentences_per_second']} sentences/s")  # fmt: skip
    for label, value, signature in rows:
        print(f"  {label:<18} {value:6.2f}   {signature}")
    print(f"report: {report_path}\nhypotheses: {report['hypotheses']}")
