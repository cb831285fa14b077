"""The `score` command: log P(target | source) of each line pair of two files under a run."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from omegaconf import DictConfig
from tqdm import tqdm

from translator.data.sources import count_lines
from translator.errors import TranslatorError
from translator.inference.commands import aligned, blocks_of, input_lines, output_file
from translator.inference.engines import from_command
from translator.inference.scoring import PairScore

FORMATS = ("number", "json")


def line_pairs(source: str, target: str, strict: bool) -> Iterator[tuple[str, str]]:
    """(source line, target line) of two files, streamed; a CorpusError when one file ends
    before the other."""
    return aligned(input_lines(source, strict), input_lines(target, strict), (source, target))


def formatted(score: PairScore, cfg: DictConfig) -> str:
    if cfg.format == "json":
        return json.dumps({"log_prob": round(score.log_prob, 6), "tokens": score.tokens,
                           "per_token": round(score.per_token, 6)})  # fmt: skip
    return f"{score.per_token if cfg.per_token else score.log_prob:.6f}"


def check_command(cfg: DictConfig) -> Path | None:
    """The output path, after the command's own checks (files given, format known, output
    free)."""
    if not (cfg.source and cfg.target):
        raise TranslatorError("give source=FILE and target=FILE: the pairs to score")
    if cfg.format not in FORMATS:
        raise TranslatorError(f"format={cfg.format!r}: expected one of {', '.join(FORMATS)}")
    output = Path(cfg.output) if cfg.output else None
    if output and output.exists() and not cfg.overwrite:
        raise TranslatorError(f"{output} exists; pass overwrite=true to replace it")
    return output


def score(cfg: DictConfig) -> dict:
    """Score the line pairs of `cfg.source` and `cfg.target` with the run `cfg.run_dir`, a
    block of lines at a time (memory stays flat), with a progress bar; the output is written
    whole or not at all."""
    output = check_command(cfg)
    translator = from_command(cfg)
    total = count_lines(cfg.source) if Path(cfg.source).is_file() else None
    start, count, log_prob, tokens = time.perf_counter(), 0, 0.0, 0
    pairs = blocks_of(line_pairs(cfg.source, cfg.target, cfg.strict))
    with (
        output_file(output) as sink,
        tqdm(total=total, unit="pair", desc="scoring", file=sys.stderr) as bar,
    ):
        for block, error in pairs:
            if error:
                raise error
            sources, targets = [s for s, _ in block], [t for _, t in block]
            scores = translator.score(sources, targets, progress=bar.update)
            sink.write("".join(f"{formatted(s, cfg)}\n" for s in scores))
            count += len(scores)
            log_prob += sum(s.log_prob for s in scores)
            tokens += sum(s.tokens for s in scores)
    seconds = time.perf_counter() - start
    if output:
        print(f"wrote {count} scores to {output}", file=sys.stderr)
    per_token = round(log_prob / tokens, 4) if tokens else None
    return {"pairs": count, "per_token": per_token, "seconds": round(seconds, 2)}
