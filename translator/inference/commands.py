"""The `translate` command: sentences from text=, a file, or standard input."""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from omegaconf import DictConfig
from tqdm import tqdm

from translator.atomic import write_atomic
from translator.data.corpus import read_file
from translator.errors import CorpusError, TranslatorError
from translator.inference.engines import from_command
from translator.inference.translator import Translation, Translator
from translator.textio import strip_bom

log = logging.getLogger(__name__)


def warn_length_limited(results: list[Translation], first_line: int = 1) -> int:
    """One warning line per translation cut at its output length limit without ending (its
    source line number, from `first_line`); returns how many there were."""
    limited = [(first_line + i, r) for i, r in enumerate(results) if r.length_limited]
    for number, result in limited:
        print(f"warning: line {number}: the translation reached its length limit without "
              f"ending (decode.max_length_a, max_length_b): {result.source[:60]!r}",
              file=sys.stderr)  # fmt: skip
    return len(limited)


def format_translation(index: int, translation: Translation, all_hypotheses: bool) -> str:
    if not all_hypotheses:
        return translation.text
    if not translation.n_best:
        return f"{index} ||| ||| 0.0000"
    return "\n".join(f"{index} ||| {text} ||| {score:.4f}" for text, score in translation.n_best)


def decode_line(raw: bytes, where: str, strict: bool) -> str:
    """One input line as text. Invalid UTF-8: with `strict`, a CorpusError naming `where`;
    otherwise the bad bytes become U+FFFD and a warning names the line."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as error:
        message = f"{where}: invalid UTF-8 (byte 0x{raw[error.start]:02x})"
        if strict:
            raise CorpusError(message) from None
        print(f"warning: {message}; translated with U+FFFD in its place", file=sys.stderr)
        return raw.decode("utf-8", errors="replace")


def read_stdin_lines(strict: bool):
    for number, raw in enumerate(sys.stdin.buffer, start=1):
        if number == 1:
            raw = strip_bom(raw, "<stdin>")
        yield decode_line(raw.rstrip(b"\r\n"), f"<stdin>:{number}", strict)


def read_input(path: Path, strict: bool) -> tuple[list[str], CorpusError | None]:
    """The lines of an input file (plain or .gz), and with `strict` the error of its first
    undecodable line (the lines before it are returned, to be translated before the error is
    reported)."""
    raws = read_file(path).split(b"\n")
    if raws and raws[-1] == b"":
        raws.pop()  # the file's final newline
    lines = []
    for number, raw in enumerate(raws, start=1):
        try:
            lines.append(decode_line(raw.rstrip(b"\r"), f"{path}:{number}", strict).strip())
        except CorpusError as error:
            return lines, error
    return lines, None


def translate_file(translator: Translator, cfg: DictConfig) -> dict:
    source, error = read_input(Path(cfg.input), cfg.strict)
    output = Path(cfg.output) if cfg.output else None
    if output and output.exists() and not cfg.overwrite:
        raise TranslatorError(f"{output} exists; pass overwrite=true to replace it")
    start = time.perf_counter()
    with tqdm(total=len(source), unit="sent", desc="translating", file=sys.stderr) as bar:
        results = translator.translate_detailed(source, progress=bar.update)
    seconds = time.perf_counter() - start
    warn_length_limited(results)
    lines = [format_translation(i, r, cfg.print_n_best) for i, r in enumerate(results)]
    text = "\n".join(lines) + "\n" if lines else ""
    if output:
        write_atomic(output, text)  # an old file is only ever replaced by a complete new one
        print(f"wrote {len(lines)} translations to {output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    if error:  # strict: the lines before the bad one are written; now refuse it
        raise error
    return {"sentences": len(source), "seconds": round(seconds, 2), "output": str(output or "-")}


def translate_stream(translator: Translator, cfg: DictConfig) -> dict:
    """Standard input: line by line on a terminal, in batches when piped.

    Each batch is translated and printed at most once: it leaves `batch` before it is
    translated, and an error inside a flush (Ctrl-C, a closed pipe) propagates without another
    flush. Only at the end of the input, or at a bad line with `strict`, is the rest flushed."""
    interactive = sys.stdin.isatty()
    batch_size = 1 if interactive else translator.decode.batch_size
    count, batch = 0, []

    def flush():
        nonlocal count
        pending = batch[:]
        batch.clear()
        if not pending:
            return
        results = translator.translate_detailed(pending)
        warn_length_limited(results, first_line=count + 1)
        for result in results:
            print(format_translation(count, result, cfg.print_n_best), flush=True)
            count += 1

    try:
        for line in read_stdin_lines(cfg.strict):
            batch.append(line)
            if len(batch) >= batch_size:
                flush()
    except CorpusError:
        flush()  # strict: the lines before the bad one are still translated
        raise
    flush()
    return {"sentences": count}


def translate(cfg: DictConfig) -> dict:
    """Translate `cfg.text`, the file `cfg.input`, or standard input with the run `cfg.run_dir`."""
    translator = from_command(cfg)
    if cfg.text:
        result = translator.translate_detailed([cfg.text])[0]
        warn_length_limited([result])
        print(format_translation(0, result, cfg.print_n_best))
        return {"sentences": 1, "translation": result.text}
    if cfg.input:
        return translate_file(translator, cfg)
    return translate_stream(translator, cfg)
