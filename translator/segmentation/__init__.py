"""Sentence segmentation: text as people write it -> the sentences a model translates.

Models learn from sentence pairs; a line that holds several sentences loses some of them in
translation (docs/translation.md, "Paragraphs and documents"). `Segmenter` cuts a text into
sentences with Moses' rules (the `sentence-splitter` package: non-breaking prefixes per
language, offline, no model; chosen on the labelled set in bench/data/segmentation, see
docs/translation.md), corrected by rules of our own (`rules.py`: sentence starters after
abbreviations and numbers, ellipses), and returns where each sentence lies in the text, so
`Segmented.join` puts the translations back in their places: the spaces, line breaks and blank
lines between sentences are kept as they were. Text before the first sentence and after the last
(the text's outer whitespace) is dropped, as translating a whole line drops it.
"""

from __future__ import annotations

import logging
import re
import tempfile
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from translator.segmentation.rules import rules_for

log = logging.getLogger(__name__)

LINE_BREAK = re.compile(r"\r\n|\r|\n")
FALLBACK_LANGUAGE = "en"
PREFIXES = Path(__file__).parent / "prefixes"  # our additions to the package's prefix lists
# German quotes open with „ and » and close with “ and «, the reverse of the Unicode classes
# (initial/final punctuation) the rules read; they see the German marks swapped for ones of the
# right class, character for character, so spans still point into the original text.
QUOTES_AS_CLASSED = {"de": str.maketrans("„“»«", "“”«»")}


@dataclass(frozen=True)
class Segmented:
    """A text and the (start, end) character spans of its sentences, in order."""

    text: str
    spans: tuple[tuple[int, int], ...]

    @property
    def sentences(self) -> list[str]:
        return [self.text[start:end] for start, end in self.spans]

    def join(self, translations: list[str]) -> str:
        """The translations in their sentences' places, with the text between sentences kept."""
        if len(translations) != len(self.spans):
            raise ValueError(f"{len(translations)} translations for {len(self.spans)} sentences")
        pieces = []
        for i, ((start, _), translation) in enumerate(zip(self.spans, translations, strict=True)):
            if i:
                pieces.append(self.text[self.spans[i - 1][1] : start])
            pieces.append(translation)
        return "".join(pieces)


class Segmenter:
    """Cuts texts into sentences by the rules of `language` (an ISO 639-1 code such as es).

    A language without rules of its own is segmented by the English ones (with a warning):
    they split at sentence-final punctuation followed by a space and a capital, which holds
    for most languages written with the Latin script."""

    backend = "sentence-splitter (Moses rules)"

    def __init__(self, language: str):
        self.language = base_language(language)
        self._split = _splitter(self.language).split
        self._quotes = QUOTES_AS_CLASSED.get(self.language)
        self._rules = rules_for(self.language)

    def __call__(self, text: str) -> Segmented:
        spans = []
        for start, line in lines_of(text):
            spans.extend((start + a, start + b) for a, b in self.line_spans(line))
        return Segmented(text, tuple(spans))

    def line_spans(self, line: str) -> list[tuple[int, int]]:
        """The sentences of one line (no line break), as spans of `line` without their outer
        whitespace; none for a blank line. A line the rules cannot be mapped back onto (they
        changed more than its whitespace) stays whole."""
        if not line.strip():
            return []
        read = line.translate(self._quotes) if self._quotes else line
        spans = locate(read, self._split(read))
        return self._rules.refine(read, spans) if spans else [outer_span(line)]


def locate(line: str, sentences: list[str]) -> list[tuple[int, int]] | None:
    """The spans of `sentences` in `line`, matched by their non-whitespace characters (the rules
    may collapse or strip whitespace); None if they do not spell out the line."""
    spans, i, end = [], 0, len(line)
    for sentence in sentences:
        characters = "".join(sentence.split())
        if not characters:
            continue
        start = None
        for character in characters:
            while i < end and line[i].isspace():
                i += 1
            if i == end or line[i] != character:
                return None
            start = i if start is None else start
            i += 1
        spans.append((start, i))
    return spans if not line[i:].strip() else None


def base_language(code: str) -> str:
    """The language of a code such as pt-BR, pt_br or DE: pt, pt, de."""
    return code.strip().lower().replace("_", "-").split("-")[0]


def lines_of(text: str) -> list[tuple[int, str]]:
    """(offset, line) of each line of `text`, line breaks (\\n, \\r\\n, \\r) excluded."""
    lines, start = [], 0
    for match in LINE_BREAK.finditer(text):
        lines.append((start, text[start : match.start()]))
        start = match.end()
    lines.append((start, text[start:]))
    return lines


def outer_span(line: str) -> tuple[int, int]:
    """The span of `line` without its leading and trailing whitespace."""
    start = len(line) - len(line.lstrip())
    return start, len(line.rstrip())


@cache
def _splitter(language: str):
    """sentence-splitter's rules for `language`, with our additions in PREFIXES."""
    import sentence_splitter
    from sentence_splitter import SentenceSplitter

    bundled = Path(sentence_splitter.__file__).parent / "non_breaking_prefixes"
    if not (bundled / f"{language}.txt").is_file():
        log.warning("sentence segmentation: no rules for language %r; using the %r rules",
                    language, FALLBACK_LANGUAGE)  # fmt: skip
        language = FALLBACK_LANGUAGE
    extra = PREFIXES / f"{language}.txt"
    if not extra.is_file():
        return SentenceSplitter(language=language)
    with tempfile.TemporaryDirectory() as folder:
        combined = Path(folder) / f"{language}.txt"
        own = (bundled / f"{language}.txt").read_text(encoding="utf-8")
        combined.write_text(own + "\n" + extra.read_text(encoding="utf-8"), encoding="utf-8")
        return SentenceSplitter(language=language, non_breaking_prefix_file=str(combined))
