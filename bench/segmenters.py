"""Offline rule-based sentence segmenters compared on labelled paragraphs: pysbd, sentencex and
Moses' sentence-splitter, for Spanish, English, German and French.

    python bench/segmenters.py [--data DIR] [--repeats N] [--examples N]

Each `{lang}.tsv` in DIR holds one paragraph a line, its sentences separated by a TAB; the
paragraph's text is those sentences joined by one space. A boundary is the character offset where
a sentence starts inside a paragraph (offset 0 is not one). Each library's sentences are mapped
back to offsets by their non-whitespace characters, so it does not matter whether a library keeps,
strips or rewrites whitespace. Per language and library: boundary precision, recall and F1, the
fraction of paragraphs segmented exactly right, how often the output keeps the text (and its
whitespace), and speed (best of N runs): over the paragraphs, over each gold sentence alone (a
one-sentence line, as translation requests mostly are) and over one long paragraph made of the
whole file. Network sockets are disabled while the libraries run: none may download anything.
A library that is not installed is reported as unavailable. Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent / "data" / "segmentation"
LANGS = ("es", "en", "de", "fr")
LIBRARIES = ("pysbd", "sentencex", "sentence-splitter", "translator")  # the last: ours (below)

Splitter = Callable[[str], list[str]]


def make_splitter(library: str, lang: str) -> Splitter:
    """A function text -> sentences for `library` in `lang` (ImportError when not installed)."""
    if library == "pysbd":
        import pysbd

        return pysbd.Segmenter(language=lang, clean=False).segment
    if library == "sentencex":
        import sentencex

        return lambda text: list(sentencex.segment(lang, text))
    if library == "sentence-splitter":
        from sentence_splitter import SentenceSplitter

        return SentenceSplitter(language=lang).split
    if library == "translator":  # the project's Segmenter: sentence-splitter with our prefixes
        from translator.segmentation import Segmenter

        segmenter = Segmenter(lang)
        return lambda text: segmenter(text).sentences
    raise ValueError(f"unknown library {library!r}")


def load_paragraphs(path: Path) -> list[list[str]]:
    """The gold sentences of each paragraph (one line of the TSV file)."""
    lines = path.read_text(encoding="utf-8").splitlines()
    return [line.split("\t") for line in lines if line.strip()]


def gold_boundaries(sentences: Sequence[str]) -> set[int]:
    """Offsets where sentences 2..n start in the paragraph `" ".join(sentences)`."""
    offsets, position = set(), 0
    for sentence in sentences[:-1]:
        position += len(sentence) + 1
        offsets.add(position)
    return offsets


def sentence_starts(text: str, pieces: Sequence[str]) -> tuple[list[int], int]:
    """Offsets in `text` of the first non-whitespace character of each piece, and how many
    pieces could not be found in the text (the library changed their characters)."""
    where = [i for i, char in enumerate(text) if not char.isspace()]
    dense = "".join(text[i] for i in where)
    starts, cursor, lost = [], 0, 0
    for piece in pieces:
        key = "".join(piece.split())
        if not key:
            continue
        found = cursor if dense.startswith(key, cursor) else dense.find(key, cursor)
        if found < 0:
            found, lost = cursor, lost + 1
        starts.append(where[found] if found < len(where) else len(text))
        cursor = found + len(key)
    return starts, lost


def predicted_boundaries(text: str, pieces: Sequence[str]) -> tuple[set[int], int]:
    """The boundaries a segmentation `pieces` of `text` puts, and its count of lost pieces."""
    starts, lost = sentence_starts(text, pieces)
    return {start for start in starts if start > 0}, lost


def f1_scores(tp: int, fp: int, fn: int) -> dict[str, float]:
    """Precision, recall and F1 (each 1.0 when there is nothing to get wrong)."""
    precision = tp / (tp + fp) if tp + fp else 1.0
    recall = tp / (tp + fn) if tp + fn else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": round(precision, 4), "recall": round(recall, 4), "f1": round(f1, 4)}


def accuracy(split: Splitter, paragraphs: list[list[str]], examples: int) -> dict:
    """Boundary scores of `split` on the gold paragraphs, and up to `examples` of its errors."""
    tp = fp = fn = exact = lost = kept_text = kept_space = 0
    errors = []
    for sentences in paragraphs:
        text = " ".join(sentences)
        pieces = split(text)
        gold = gold_boundaries(sentences)
        predicted, missing = predicted_boundaries(text, pieces)
        tp, fp, fn = (
            tp + len(gold & predicted),
            fp + len(predicted - gold),
            fn + len(gold - predicted),
        )
        exact += gold == predicted
        lost += missing
        kept_text += "".join("".join(pieces).split()) == "".join(text.split())
        kept_space += "".join(pieces) == text
        if gold != predicted and len(errors) < examples:
            errors.append({"gold": sentences, "predicted": [piece.strip() for piece in pieces]})
    n = len(paragraphs)
    return {
        **f1_scores(tp, fp, fn),
        "false_splits": fp,
        "missed_splits": fn,
        "exact": round(exact / n, 4),
        "keeps_text": round(kept_text / n, 4),
        "keeps_whitespace": round(kept_space / n, 4),
        "lost_pieces": lost,
        **({"errors": errors} if examples else {}),
    }


def best_seconds(split: Splitter, texts: Sequence[str], repeats: int) -> float:
    """The fastest of `repeats` runs of `split` over all `texts`, in seconds."""
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for text in texts:
            split(text)
        best = min(best, time.perf_counter() - start)
    return best


def speed(split: Splitter, paragraphs: list[list[str]], repeats: int) -> dict:
    """Paragraphs/s and µs per paragraph, µs per one-sentence line, ms for one long paragraph."""
    texts = [" ".join(sentences) for sentences in paragraphs]
    lines = [sentence for sentences in paragraphs for sentence in sentences]
    seconds = best_seconds(split, texts, repeats)
    line_seconds = best_seconds(split, lines, repeats)
    long_seconds = best_seconds(split, [" ".join(texts)], repeats)
    return {
        "paragraphs_per_s": round(len(texts) / seconds, 1),
        "us_per_paragraph": round(seconds / len(texts) * 1e6, 1),
        "us_per_sentence_line": round(line_seconds / len(lines) * 1e6, 1),
        "ms_long_paragraph": round(long_seconds * 1e3, 2),
    }


def version(library: str) -> str | None:
    """The installed version of `library`, or None when it is not installed."""
    try:
        return metadata.version(library)
    except metadata.PackageNotFoundError:
        return None


def evaluate(
    library: str, lang: str, paragraphs: list[list[str]], args: argparse.Namespace
) -> dict:
    """Accuracy and speed of one library on one language, or why it could not run."""
    try:
        start = time.perf_counter()
        split = make_splitter(library, lang)
        setup_ms = round((time.perf_counter() - start) * 1e3, 2)
    except ImportError as error:
        return {"unavailable": f"{type(error).__name__}: {error}"}
    except Exception as error:  # the library does not know this language
        return {"unsupported": f"{type(error).__name__}: {error}"}
    scores = accuracy(split, paragraphs, args.examples)
    return {**scores, **speed(split, paragraphs, args.repeats), "setup_ms": setup_ms}


def language_report(lang: str, args: argparse.Namespace) -> dict:
    """Every library's results on `{lang}.tsv`, with the set's size."""
    paragraphs = load_paragraphs(args.data / f"{lang}.tsv")
    report: dict = {
        "paragraphs": len(paragraphs),
        "sentences": sum(map(len, paragraphs)),
        "boundaries": sum(len(sentences) - 1 for sentences in paragraphs),
    }
    for library in LIBRARIES:
        report[library] = evaluate(library, lang, paragraphs, args)
    return report


def summary(results: dict) -> dict:
    """Per library: its worst and mean F1 and exact rate, and its slowest one-sentence line."""
    out = {}
    for library in LIBRARIES:
        rows = [results[lang][library] for lang in results if "f1" in results[lang][library]]
        if not rows:
            continue
        out[library] = {
            "min_f1": min(row["f1"] for row in rows),
            "mean_f1": round(sum(row["f1"] for row in rows) / len(rows), 4),
            "min_exact": min(row["exact"] for row in rows),
            "max_us_per_sentence_line": max(row["us_per_sentence_line"] for row in rows),
        }
    return out


@contextmanager
def no_network() -> Iterator[None]:
    """Make any attempt to open a socket fail, so that a download would show as an error."""

    def refuse(*args: object, **kwargs: object) -> socket.socket:
        raise OSError("network access is disabled while the segmenters run")

    saved = socket.socket, socket.create_connection
    socket.socket, socket.create_connection = refuse, refuse
    try:
        yield
    finally:
        socket.socket, socket.create_connection = saved


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=DATA_DIR, help="folder of {lang}.tsv files")
    parser.add_argument("--langs", nargs="+", default=list(LANGS), help="languages to run")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs; the best counts")
    parser.add_argument("--examples", type=int, default=0, help="wrong paragraphs to list")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    """Run every library on every language and print the report as JSON."""
    args = parse_args(argv)
    with no_network():
        results = {lang: language_report(lang, args) for lang in args.langs}
    report = {
        "data": str(args.data),
        "repeats": args.repeats,
        "versions": {library: version(library) for library in LIBRARIES},
        "results": results,
        "summary": summary(results),
    }
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
