"""The `translate` command: sentences from text=, a file, or standard input."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path

from omegaconf import DictConfig
from tqdm import tqdm

from translator.data.corpus import read_lines
from translator.errors import CorpusError, TranslatorError
from translator.inference.translator import Translation, Translator

log = logging.getLogger(__name__)


def format_translation(index: int, translation: Translation, all_hypotheses: bool) -> str:
    if not all_hypotheses:
        return translation.text
    if not translation.n_best:
        return f"{index} ||| ||| 0.0000"
    return "\n".join(f"{index} ||| {text} ||| {score:.4f}" for text, score in translation.n_best)


def read_stdin_lines():
    for number, raw in enumerate(sys.stdin.buffer, start=1):
        try:
            yield raw.decode("utf-8").rstrip("\r\n")
        except UnicodeDecodeError as error:
            raise CorpusError(
                f"<stdin>:{number}: invalid UTF-8 (byte 0x{raw[error.start]:02x})"
            ) from None


def translate_file(translator: Translator, cfg: DictConfig) -> dict:
    source = read_lines(Path(cfg.input))
    output = Path(cfg.output) if cfg.output else None
    if output and output.exists() and not cfg.overwrite:
        raise TranslatorError(f"{output} exists; pass overwrite=true to replace it")
    start = time.perf_counter()
    with tqdm(total=len(source), unit="sent", desc="translating", file=sys.stderr) as bar:
        results = translator.translate_detailed(source, progress=bar.update)
    seconds = time.perf_counter() - start
    lines = [format_translation(i, r, cfg.print_n_best) for i, r in enumerate(results)]
    text = "\n".join(lines) + "\n" if lines else ""
    if output:
        partial = output.with_name(output.name + ".partial")
        partial.write_text(text, encoding="utf-8")
        os.replace(partial, output)  # the old file is only replaced by a complete new one
        print(f"wrote {len(lines)} translations to {output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return {"sentences": len(source), "seconds": round(seconds, 2), "output": str(output or "-")}


def translate_stream(translator: Translator, cfg: DictConfig) -> dict:
    """Standard input: line by line on a terminal, in batches when piped."""
    interactive = sys.stdin.isatty()
    batch_size = 1 if interactive else translator.decode.batch_size
    count, batch = 0, []

    def flush():
        nonlocal count
        for result in translator.translate_detailed(batch):
            print(format_translation(count, result, cfg.print_n_best), flush=True)
            count += 1
        batch.clear()

    for line in read_stdin_lines():
        batch.append(line)
        if len(batch) >= batch_size:
            flush()
    flush()
    return {"sentences": count}


def translate(cfg: DictConfig) -> dict:
    """Translate `cfg.text`, the file `cfg.input`, or standard input with the run `cfg.run_dir`."""
    translator = Translator.from_command(cfg)
    if cfg.text:
        result = translator.translate_detailed([cfg.text])[0]
        print(format_translation(0, result, cfg.print_n_best))
        return {"sentences": 1, "translation": result.text}
    if cfg.input:
        return translate_file(translator, cfg)
    return translate_stream(translator, cfg)
