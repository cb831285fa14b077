"""The `backtranslate` command: monolingual text in the language a model should learn to write
becomes a parallel corpus with synthetic sources (Sennrich et al., 2016; Edunov et al., 2018).

A run trained in the reverse direction (target -> source) translates each line; the folder it
writes holds `train.<its source>` (the real lines) and `train.<its target>` (their translations),
aligned line by line, empty lines kept, plus SYNTHETIC_MARK describing how it was made. Any
`data` config reads it, typically as one of `data.corpora` beside the real pairs. With
`samples=N` (sampling decodes only) each line is written N times, each with its own draw.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Iterator
from itertools import islice
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from translator.atomic import fsync_directory, temporary_beside
from translator.data.sources import SYNTHETIC_MARK, count_lines, decoded_lines
from translator.errors import TranslatorError
from translator.inference.engines import from_command
from translator.inference.translator import sampling_options

log = logging.getLogger(__name__)

BLOCK_LINES = 4096  # lines read and translated together: memory stays flat on any input


def backtranslate(cfg: DictConfig) -> dict:
    """Translate `cfg.input` with the run `cfg.run_dir` into the corpus folder `cfg.output`."""
    if not cfg.input or not cfg.output:
        raise TranslatorError("backtranslate needs input=<monolingual text> and output=<folder>")
    samples = check_samples(cfg.samples, cfg.decode)
    target = Path(cfg.output)
    check_output(target, cfg.overwrite)
    translator = from_command(cfg)
    run_cfg = translator.run_config
    real, synthetic = run_cfg.data.source, run_cfg.data.target
    total = count_lines(cfg.input) * samples
    start = time.perf_counter()
    with temporary_beside(target) as partial:
        partial.mkdir()
        with (
            open(partial / f"train.{real}", "w", encoding="utf-8") as real_file,
            open(partial / f"train.{synthetic}", "w", encoding="utf-8") as synthetic_file,
            tqdm(total=total, unit="line", desc="back-translating", file=sys.stderr) as bar,
        ):
            for block in blocks(decoded_lines(cfg.input)):
                block = [line for line in block for _ in range(samples)]
                translations = translator.translate(block)
                real_file.write("".join(f"{line}\n" for line in block))
                synthetic_file.write("".join(f"{text}\n" for text in translations))
                bar.update(len(block))
        seconds = time.perf_counter() - start
        mark = describe(cfg, translator, total, seconds)
        (partial / SYNTHETIC_MARK).write_text(json.dumps(mark, indent=1) + "\n")
        for file in partial.iterdir():
            with open(file, "rb") as f:
                os.fsync(f.fileno())
        shutil.rmtree(target, ignore_errors=True)
        os.replace(partial, target)
    fsync_directory(target.parent)
    print(f"wrote {total} pairs ({synthetic} synthetic, {real} real) to {target}",
          file=sys.stderr)  # fmt: skip
    return {"lines": total, "seconds": round(seconds, 1), "output": str(target)}


def check_samples(samples, decode: DictConfig) -> int:
    """`samples`, checked: a whole number >= 1, and above 1 only when `decode` samples (greedy
    and beam search would write the same translation N times)."""
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise TranslatorError(f"samples={samples}: expected a whole number >= 1")
    if samples > 1 and sampling_options(decode) is None:
        raise TranslatorError(f"samples={samples} needs a sampling decode (decode=sample, or "
                              "decode.sampling_topk other than 1): "
                              f"decode.strategy={decode.strategy} gives the same "
                              "translation every time")  # fmt: skip
    return samples


def check_output(target: Path, overwrite: bool) -> None:
    if target.exists() and not target.is_dir():
        raise TranslatorError(f"{target} exists and is not a folder")
    if target.is_dir() and any(target.iterdir()) and not overwrite:
        raise TranslatorError(f"{target} is not empty; pass overwrite=true to replace it")
    target.parent.mkdir(parents=True, exist_ok=True)


def blocks(lines: Iterator[str]) -> Iterator[list[str]]:
    while block := list(islice(lines, BLOCK_LINES)):
        yield block


def describe(cfg: DictConfig, translator, lines: int, seconds: float) -> dict:
    """What SYNTHETIC_MARK records: the model, its decode settings, the input and the cost."""
    return {
        "run_dir": str(translator.run.path),
        "weights": str(translator.weights_file),
        "direction": f"{translator.run_config.data.source}->{translator.run_config.data.target}",
        "decode": OmegaConf.to_container(translator.decode),
        "input": str(cfg.input),
        "lines": lines,
        "samples": cfg.samples,
        "seconds": round(seconds, 1),
    }
