"""Word alignments from cross-attention: which source word each target word was translated from.

For each target piece (END excluded), the source piece its cross-attention weighs most (one
layer's heads averaged; START and END of the source excluded) gives one link; pieces are mapped to
the whitespace-separated words of their text (a SentencePiece piece starting with "▁" begins a
word), and the distinct (source word, target word) links, sorted, are the alignment, written in
the Pharaoh format "i-j" (i: source word, j: target word, both from 0) as Moses, fast_align,
Marian and OpenNMT write it. Used to carry markup or formatting across a translation.
"""

from __future__ import annotations

import numpy as np

WORD_START = "\u2581"  # SentencePiece's meta symbol for a space before a piece
SPECIAL = ("<s>", "</s>", "<pad>", "<unk>")

Links = list[tuple[int, int]]


def word_of_pieces(pieces: list[str]) -> list[int | None]:
    """Per piece, the index of the word it belongs to; None for START, END and padding."""
    words, current = [], -1
    for piece in pieces:
        if piece in SPECIAL[:3]:
            words.append(None)
            continue
        if piece.startswith(WORD_START) or current < 0:
            current += 1
        words.append(current)
    return words


def links(cross: np.ndarray, source_pieces: list[str], target_pieces: list[str]) -> Links:
    """The word links of one sentence from its cross-attention (target pieces x source pieces,
    heads already averaged): each target piece's most attended source word."""
    source_words, target_words = word_of_pieces(source_pieces), word_of_pieces(target_pieces)
    usable = np.array([w is not None for w in source_words])
    if not usable.any():
        return []
    found = set()
    for row, target_word in enumerate(target_words[: len(cross)]):
        if target_word is None:
            continue
        weights = np.where(usable, cross[row, : len(source_words)], -np.inf)
        found.add((source_words[int(np.argmax(weights))], target_word))
    return sorted(found)


def pharaoh(found: Links) -> str:
    """Links as "0-0 1-2 ..."."""
    return " ".join(f"{i}-{j}" for i, j in found)


def shifted(found: Links, source_offset: int, target_offset: int) -> Links:
    """Links of a sentence inside a longer text: its words counted from the text's start."""
    return [(i + source_offset, j + target_offset) for i, j in found]
