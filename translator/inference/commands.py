"""The `translate` command: sentences from text=, a file, or standard input."""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from itertools import chain
from pathlib import Path
from typing import TextIO

from omegaconf import DictConfig
from tqdm import tqdm

from translator.atomic import open_atomic
from translator.data.sources import count_lines, open_binary
from translator.errors import CorpusError, TranslatorError
from translator.inference.alignment import pharaoh
from translator.inference.engines import from_command
from translator.inference.paragraphs import segmenter_for, translate_texts
from translator.inference.translator import Translation, Translator
from translator.segmentation import Segmenter
from translator.textio import strip_bom

log = logging.getLogger(__name__)

BLOCK_LINES = 1024  # input lines read and translated together: memory stays flat on any file


def warn_length_limited(results: list[Translation], first_line: int = 1) -> int:
    """One warning line per translation cut at its output length limit without ending (its
    source line number, from `first_line`); returns how many there were."""
    limited = [(first_line + i, r) for i, r in enumerate(results) if r.length_limited]
    for number, result in limited:
        print(f"warning: line {number}: the translation reached its length limit without "
              f"ending (decode.max_length_a, max_length_b): {result.source[:60]!r}",
              file=sys.stderr)  # fmt: skip
    return len(limited)


def format_translation(index: int, translation: Translation, all_hypotheses: bool,
                       alignment: bool = False) -> str:  # fmt: skip
    """A translation's output line: its text (with `alignment`, then " ||| " and its word
    links "i-j ..."), or with `all_hypotheses` its n-best list, one "index ||| text ||| score"
    line each."""
    if alignment:
        return f"{translation.text} ||| {pharaoh(translation.alignment or [])}"
    if not all_hypotheses:
        return translation.text
    if not translation.n_best:
        return f"{index} ||| ||| 0.0000"
    return "\n".join(f"{index} ||| {text} ||| {score:.4f}" for text, score in translation.n_best)


def format_line(index: int, translation: Translation, cfg: DictConfig) -> str:
    """`format_translation` as the command's settings ask."""
    return format_translation(index, translation, cfg.print_n_best,
                              bool(cfg.get("print_alignment")))  # fmt: skip


def alignment_layer(cfg: DictConfig) -> dict:
    """The `alignment` argument of `translate_texts` when `print_alignment` asks for links."""
    if not cfg.get("print_alignment"):
        return {}
    if cfg.print_n_best:
        raise TranslatorError("print_alignment links the words of the best translation only: "
                              "not with print_n_best")  # fmt: skip
    return {"alignment": cfg.alignment_layer}


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


def input_lines(path: str, strict: bool) -> Iterator[str]:
    """The stripped lines of an input file (plain or .gz), streamed; see `decode_line` for
    invalid UTF-8."""
    with open_binary(path) as f:
        for number, raw in enumerate(f, start=1):
            if number == 1:
                raw = strip_bom(raw, path)
            yield decode_line(raw.rstrip(b"\r\n"), f"{path}:{number}", strict).strip()


def aligned(first: Iterator[str], second: Iterator[str], names: tuple[str, str]
            ) -> Iterator[tuple[str, str]]:  # fmt: skip
    """(line of `first`, line of `second`), streamed; a CorpusError when one (named by `names`)
    ends before the other."""
    count = 0
    for line in first:
        other = next(second, None)
        if other is None:
            raise CorpusError(f"{names[1]} has {count} lines but {names[0]} has more")
        count += 1
        yield line, other
    if next(second, None) is not None:
        raise CorpusError(f"{names[0]} has {count} lines but {names[1]} has more")


CONSTRAINT_SEPARATOR = "\t"  # between the phrases of one line of a constraints file


def with_extras(lines: Iterator[str], cfg: DictConfig, name: str) -> Iterator[tuple]:
    """(line, its target prefix, its constraint phrases): the prefix from the file
    `cfg.prefix` and the phrases (separated by tabs) from the file `cfg.constraints`, line for
    line; "" and [] where no file is given."""
    items = ((line,) for line in lines)
    for key in ("prefix", "constraints"):
        path = cfg.get(key)
        if path:
            extra = input_lines(path, cfg.strict)
            items = ((*item, more) for item, more in aligned(items, extra, (name, path)))
        else:
            items = ((*item, "") for item in items)
    for line, prefix, constraints in items:
        yield line, prefix, [p for p in constraints.split(CONSTRAINT_SEPARATOR) if p.strip()]


def extras_of(items: list[tuple]) -> dict:
    """The lines of (line, prefix, constraints) items and `translate_texts` arguments."""
    return {"texts": [item[0] for item in items], "prefixes": [item[1] for item in items],
            "constraints": [item[2] for item in items]}  # fmt: skip


def blocks_of(lines: Iterator[str]) -> Iterator[tuple[list[str], CorpusError | None]]:
    """`lines` in blocks of BLOCK_LINES; a CorpusError while reading ends the blocks with the
    lines read before it and the error (they are translated before it is reported)."""
    block: list[str] = []
    try:
        for line in lines:
            block.append(line)
            if len(block) == BLOCK_LINES:
                yield block, None
                block = []
    except CorpusError as error:
        yield block, error
        return
    if block:
        yield block, None


@contextmanager
def output_file(output: Path | None) -> Iterator[TextIO]:
    """Where translations go: standard output, or a temporary file beside `output` renamed over
    it when the block ends without an exception (an old file is never left half written; with
    `strict`, the translations of the lines before a bad one replace it before the error)."""
    if output is None:
        yield sys.stdout
        return
    with open_atomic(output) as f:
        yield f


def translate_file(translator: Translator, cfg: DictConfig) -> dict:
    """The file `cfg.input`, streamed in blocks (memory stays flat on any size) with a progress
    bar, one output line per input line."""
    output = Path(cfg.output) if cfg.output else None
    if output and output.exists() and not cfg.overwrite:
        raise TranslatorError(f"{output} exists; pass overwrite=true to replace it")
    # A file is counted for the bar's total; a pipe (input=<(zcat ...)) can be read only once.
    total = count_lines(cfg.input) if not os.path.exists(cfg.input) or os.path.isfile(cfg.input) \
        else None  # fmt: skip
    segmenter = segmenter_of(translator, cfg)
    start, count, error = time.perf_counter(), 0, None
    blocks = blocks_of(with_extras(input_lines(cfg.input, cfg.strict), cfg, cfg.input))
    first = next(blocks, None)  # its notes (a byte-order mark) print before the bar does
    with (
        output_file(output) as sink,
        tqdm(total=total, unit="line", desc="translating", file=sys.stderr) as bar,
    ):
        for block, failure in chain([first] if first else [], blocks):
            error = failure
            results = translate_texts(translator, segmenter=segmenter, progress=bar.update,
                                      **extras_of(block), **alignment_layer(cfg))  # fmt: skip
            warn_length_limited(results, first_line=count + 1)
            sink.write("".join(f"{format_line(count + i, r, cfg)}\n"
                               for i, r in enumerate(results)))  # fmt: skip
            sink.flush()
            count += len(block)
    seconds = time.perf_counter() - start
    if output:
        print(f"wrote {count} translations to {output}", file=sys.stderr)
    if error:  # strict: the lines before the bad one are written; now refuse it
        raise error
    return {"sentences": count, "seconds": round(seconds, 2), "output": str(output or "-")}


def translate_stream(translator: Translator, cfg: DictConfig) -> dict:
    """Standard input: line by line on a terminal, in batches when piped.

    Each batch is translated and printed at most once: it leaves `batch` before it is
    translated, and an error inside a flush (Ctrl-C, a closed pipe) propagates without another
    flush. Only at the end of the input, or at a bad line with `strict`, is the rest flushed."""
    interactive = sys.stdin.isatty()
    batch_size = 1 if interactive else translator.decode.batch_size
    segmenter = segmenter_of(translator, cfg)
    count, batch = 0, []

    def flush():
        nonlocal count
        pending = batch[:]
        batch.clear()
        if not pending:
            return
        results = translate_texts(translator, segmenter=segmenter, **extras_of(pending),
                                  **alignment_layer(cfg))  # fmt: skip
        warn_length_limited(results, first_line=count + 1)
        for result in results:
            print(format_line(count, result, cfg), flush=True)
            count += 1

    try:
        for item in with_extras(read_stdin_lines(cfg.strict), cfg, "<stdin>"):
            batch.append(item)
            if len(batch) >= batch_size:
                flush()
    except CorpusError:
        flush()  # strict: the lines before the bad one are still translated
        raise
    flush()
    return {"sentences": count}


def segmenter_of(translator: Translator, cfg: DictConfig) -> Segmenter | None:
    """The segmenter `cfg.segment` asks for; none with `print_n_best` (n-best lists are of
    whole lines)."""
    return segmenter_for(translator, bool(cfg.get("segment")) and not cfg.print_n_best)


def translate(cfg: DictConfig) -> dict:
    """Translate `cfg.text`, the file `cfg.input`, or standard input with the run `cfg.run_dir`."""
    translator = from_command(cfg)
    if cfg.text:
        prefix = cfg.get("prefix_text") or ""
        result = translate_texts(translator, [cfg.text], segmenter_of(translator, cfg),
                                 prefixes=[prefix], **alignment_layer(cfg))[0]  # fmt: skip
        warn_length_limited([result])
        print(format_line(0, result, cfg))
        return {"sentences": 1, "translation": result.text}
    if cfg.input:
        return translate_file(translator, cfg)
    return translate_stream(translator, cfg)
