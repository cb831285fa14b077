"""Boundaries Moses' rules miss or add, corrected on their sentences by a few language rules.

Moses' rules never split after a non-breaking prefix ("etc.", "EE. UU.", German "usw." and, in
German, numbers: "am 3. Oktober") nor after an ellipsis character, so a sentence that ends with
one runs into the next. Two signs of a boundary they miss:

- a capitalised sentence starter (`starters/{lang}.txt`: articles, pronouns, conjunctions, common
  adverbs) after a word ending in a period: these words are written in lower case inside a
  sentence, so "etc. Yo", "U.S. She" or German "lautet 42. Das" begin a new sentence. Titles
  (`Dr.`, French `M.`) and single capitals (initials) stay joined to what follows ("M. Le Pen").
- "…" followed by a capital, as Moses treats "...".

And one it adds: a German street name ending in "str." before its house number
("Goethestr. 12").
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path

RULES = Path(__file__).parent
Span = tuple[int, int]
# A boundary candidate inside a sentence: the end of a word, then a period or ellipsis, space.
PERIOD_SPACE = re.compile(r"(\S*?)(\.|…)(\s+)(?=\S)")
OPENING = "\"'«»“”„‘’‚(¿¡["
STREET_NUMBER = re.compile(r"\w+str\.$")


@dataclass(frozen=True)
class Rules:
    """A language's sentence starters, titles and whether street numbers join (German)."""

    starters: frozenset[str]
    titles: frozenset[str]
    street_numbers: bool

    def refine(self, line: str, spans: list[Span]) -> list[Span]:
        """`spans` (sentences of `line`) split at missed boundaries and joined where wrongly cut."""
        split = [piece for span in spans for piece in self.split(line, span)]
        return self.join(line, split) if self.street_numbers else split

    def split(self, line: str, span: Span) -> list[Span]:
        start, end = span
        pieces = []
        for match in PERIOD_SPACE.finditer(line, start, end):
            if self.is_boundary(match.group(1), match.group(2), line[match.end() : end]):
                pieces.append((start, match.end(2)))
                start = match.end()
        return [*pieces, (start, end)]

    def is_boundary(self, word: str, mark: str, rest: str) -> bool:
        """Whether `word` + `mark` ("." or "…") ends a sentence, given the text after it."""
        following, word = rest.lstrip(OPENING), word.lstrip(OPENING)
        if mark == "…":
            return following[:1].isupper()
        if not word or word in self.titles or (len(word) == 1 and word.isupper()):
            return False
        return not self.starters.isdisjoint(first_words(following))

    def join(self, line: str, spans: list[Span]) -> list[Span]:
        """German street abbreviations ("Hauptstr.") stay with the house number after them."""
        joined = [spans[0]] if spans else []
        for start, end in spans[1:]:
            previous = joined[-1]
            if line[start].isdigit() and STREET_NUMBER.search(line[previous[0] : previous[1]]):
                joined[-1] = (previous[0], end)
            else:
                joined.append((start, end))
        return joined


def first_words(text: str) -> set[str]:
    """The leading word of `text`, alone and with an elision's apostrophe: "J'apporte" ->
    {"J", "J'"}, "I’ll" -> {"I", "I'"}, "J.-C." -> {"J"}, "Er," -> {"Er"}."""
    match = re.match(r"(\w+)(['’]?)", text)
    if not match:
        return set()
    return {match.group(1), match.group(1) + match.group(2).replace("’", "'")}


@cache
def rules_for(language: str) -> Rules:
    """The rules of `language` (no starters or titles for a language without lists)."""
    return Rules(
        starters=frozenset(word_list(RULES / "starters" / f"{language}.txt")),
        titles=frozenset(word_list(RULES / "titles" / f"{language}.txt")),
        street_numbers=language == "de",
    )


def word_list(path: Path) -> list[str]:
    """The words of a list file: whitespace-separated, `#` starts a comment."""
    if not path.is_file():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [word for line in lines for word in line.split("#")[0].split()]
