"""Translate a test set with a run and score it: `make evaluate RUN=checkpoints/<run>`."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from translator.atomic import write_atomic
from translator.data import load_corpus
from translator.data.corpus import read_lines
from translator.errors import CorpusError
from translator.evaluation.scoring import paired_test, score
from translator.inference.commands import warn_length_limited
from translator.inference.engines import engine_name, from_command
from translator.inference.paragraphs import segmenter_for, translate_texts
from translator.inference.translator import Translation, Translator
from translator.run_dir import RunDir
from translator.segmentation import Segmenter

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
        require_sentences(sources, cfg.source)
        require_sentences(references, cfg.reference)
        if len(sources) != len(references):
            raise CorpusError(
                f"{cfg.source} has {len(sources)} lines but {cfg.reference} has {len(references)}"
            )
        return Path(cfg.source).stem, sources, references
    data = run_cfg.data
    if cfg.data_path:
        data = OmegaConf.merge(data, {"path": cfg.data_path})
    corpus = load_corpus(data, cfg.split)
    require_sentences(corpus.source, corpus.name)
    return f"{data.name}-{cfg.split}", corpus.source, corpus.target


def require_sentences(lines: list[str], name: str) -> None:
    """Refuse an evaluation set with nothing to score: no lines, or only empty ones (sacreBLEU
    fails on the first and a score of the second means nothing). `name` is the file or split."""
    if not any(lines):
        raise CorpusError(f"{name}: nothing to evaluate (no lines, or only empty ones)")


def evaluate(cfg: DictConfig) -> dict:
    """Translate, score with sacreBLEU (with bootstrap confidence intervals, and with
    `compare=...` a paired test against another run), and write hypotheses and a JSON report
    into the run directory.

    It takes no lock on the run: it only reads the run, and writes two files named after the
    test set, weights, decode settings and engine, each replaced whole through a temporary file
    of its own (`write_atomic`). Two evaluations with equal settings therefore write the same
    two files with the same content, the last one's in place; a lock would only make an
    evaluation wait for, or fail beside, a training run or another evaluation it cannot harm."""
    translator = from_command(cfg)
    run, decode = translator.run, translator.decode
    weights = run.weights_kind(translator.weights_file)
    name, sources, references = test_set(cfg, translator.run_config)
    baseline = compared_hypotheses(cfg, name, len(sources)) if cfg.compare else None

    start = time.perf_counter()
    segmenter = segmenter_for(translator, bool(cfg.get("segment")))
    translations = translate_all(translator, sources, f"translating {name}", segmenter)
    seconds = time.perf_counter() - start
    hypotheses = [t.text for t in translations]
    length_limited = warn_length_limited(translations)
    scores = score(hypotheses, references, cfg.bootstrap)

    out_dir = run.eval_dir
    out_dir.mkdir(exist_ok=True)
    engine = engine_name(cfg.get("engine"))
    stem = f"{name}.{weights}.{decode_name(decode)}"
    stem += "" if engine == "tensorflow" else f".{engine}"
    stem += ".segmented" if segmenter else ""
    members = [str(member) for member in getattr(translator, "members", [])]
    stem += f".ensemble{len(members)}" if members else ""
    hyp_path, report_path = out_dir / f"{stem}.hyp", out_dir / f"{stem}.json"
    if report_path.exists():
        log.warning("replacing the earlier report %s (and its hypotheses)", report_path)
    write_atomic(hyp_path, "\n".join(hypotheses) + "\n")
    report = {
        "run_dir": str(run),
        **({"ensemble": members} if members else {}),
        "dataset": name,
        "sentences": len(sources),
        "length_limited": length_limited,  # hypotheses cut at the output length limit
        "scores": {k: v["score"] for k, v in scores.items()},
        "confidence_95": {k: v["ci"] for k, v in scores.items()},
        "signatures": {k: v["signature"] for k, v in scores.items()},
        "details": {k: v["details"] for k, v in scores.items()},
        "decode": OmegaConf.to_container(decode, resolve=True),
        "weights": weights,
        "engine": engine,
        "segment": segmenter is not None,
        "seconds": round(seconds, 2),
        "sentences_per_second": round(len(sources) / seconds, 2) if seconds else None,
        "hypotheses": str(hyp_path),
    }
    if baseline is not None:
        system = (f"{run.path.name} ({stem})", hypotheses)
        report["compared_with"] = {
            "baseline": baseline[0],
            **paired_test(system, baseline, references, max(cfg.bootstrap, 1)),
        }
    write_atomic(report_path, json.dumps(report, indent=2, ensure_ascii=False))
    print_table(report, report_path)
    return report


def translate_all(translator: Translator, sources: list[str], description: str,
                  segmenter: Segmenter | None = None) -> list[Translation]:  # fmt: skip
    """Translations of `sources` (lines cut into sentences and rejoined with a segmenter)."""
    with tqdm(total=len(sources), unit="line", desc=description, file=sys.stderr) as bar:
        return translate_texts(translator, sources, segmenter, progress=bar.update)


def compared_hypotheses(cfg: DictConfig, name: str, count: int) -> tuple[str, list[str]]:
    """(name, hypotheses) of what `compare` names: a file of hypotheses, one per line, or a run
    directory: its latest report on the same test set, else its translations made now (with
    its own decode settings and weights)."""
    path = Path(cfg.compare)
    if path.is_file():
        label, hypotheses = str(path), read_lines(path)
    elif path.is_dir():
        label, hypotheses = run_hypotheses(RunDir(path), cfg, name)
    else:
        raise CorpusError(f"compare={cfg.compare}: no such run directory or hypotheses file")
    if len(hypotheses) != count:
        raise CorpusError(f"compare={cfg.compare}: {len(hypotheses)} hypotheses for {count} "
                          f"sentences of {name}")  # fmt: skip
    return label, hypotheses


def run_hypotheses(other: RunDir, cfg: DictConfig, name: str) -> tuple[str, list[str]]:
    """The other run's latest hypotheses on `name` made as this evaluation makes its own
    (segmented or not), else its translations made now."""
    segment = bool(cfg.get("segment"))
    reports = sorted((p for p in other.eval_dir.glob(f"{name}.*.json")
                      if p.stem.endswith(".segmented") == segment),
                     key=lambda p: p.stat().st_mtime)  # fmt: skip
    if reports:
        report = json.loads(reports[-1].read_text(encoding="utf-8"))
        return f"{other.path.name} ({reports[-1].stem})", read_lines(Path(report["hypotheses"]))
    log.info("%s has no report on %s: translating it with that run", other, name)
    own = OmegaConf.merge(cfg, {"run_dir": str(other.path), "weights": "auto",
                                "decode": {k: None for k in cfg.decode}})  # fmt: skip
    translator = from_command(own)
    _, sources, _ = test_set(cfg, translator.run_config)
    label = (
        f"{other.path.name} ({name}.{other.weights_kind(translator.weights_file)}."
        f"{decode_name(translator.decode)})"
    )
    translations = translate_all(translator, sources, f"translating {name} with {other}",
                                 segmenter_for(translator, segment))  # fmt: skip
    return label, [t.text for t in translations]


def print_table(report: dict, report_path: Path) -> None:
    labels = {"bleu": "BLEU", "bleu_lowercase": "BLEU (lowercased)", "chrf": "chrF",
              "ter": "TER (lower is better)"}  # fmt: skip
    print(f"{report['dataset']}: {report['sentences']} sentences, "
          f"{report['sentences_per_second']} sentences/s")  # fmt: skip
    for key, label in labels.items():
        ci = report["confidence_95"][key]
        interval = f"± {ci:5.2f}" if ci is not None else " " * 7
        print(f"  {label:<22} {report['scores'][key]:6.2f} {interval}   "
              f"{report['signatures'][key]}")  # fmt: skip
    if ci is not None:
        print("  (± half the bootstrap 95% confidence interval)")
    if "compared_with" in report:
        print_comparison(report["compared_with"])
    print(f"report: {report_path}\nhypotheses: {report['hypotheses']}")


def print_comparison(comparison: dict) -> None:
    print(f"paired bootstrap test against {comparison['baseline']}:")
    for key, label in (("bleu", "BLEU"), ("chrf", "chrF"), ("ter", "TER")):
        row = comparison[key]
        verdict = "significant" if row["p_value"] < 0.05 else "not significant"
        print(
            f"  {label:<6} {row['system']:6.2f} vs {row['baseline']:6.2f} "
            f"({row['difference']:+.2f}), p = {row['p_value']:.4f}: {verdict} at 0.05"
        )
