"""Lexically constrained beam search by dynamic beam allocation (Post & Vilar, 2018).

Each sentence may name target phrases (token sequences) that must appear in its translation, in
any order. Every step, each hypothesis offers its K best next tokens, the tokens that advance a
constraint (the next token of the phrase it is inside, or the first token of each phrase not yet
met) and, once all its phrases are met, END; a hypothesis cannot end before that. The candidates
are sorted into banks by how many constraint tokens they have met, and the K places of the beam
are shared out over the banks (places a bank cannot fill go to the others, the banks of more met
tokens first), each bank taking its best candidates: hypotheses that have met more constraints
survive beside more probable ones that have met fewer. A phrase left halfway counts for nothing
(its tokens stay in the output; the phrase must be started again).

The search runs in Python over the model's compiled decoding step: `step(tokens (N,) int32,
index, state) -> (log_probs (N, V) numpy, state)` and `reorder(state, rows) -> state`, N being
every live hypothesis of every sentence. Scores are summed log-probabilities divided by the GNMT
length penalty, as in `decoding.beam_search`. A sentence that reaches its length limit without a
finished hypothesis returns its best live one (the one with the most constraint tokens met),
marked length-limited; a sentence whose phrases cannot fit its limit is refused before the search.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from translator.errors import TranslatorError

Phrases = list[list[int]]


@dataclass(frozen=True)
class Progress:
    """Which phrases a hypothesis has met and where it is inside one (phrase, tokens matched)."""

    met: frozenset[int] = frozenset()
    inside: tuple[int, int] | None = None
    just_met: bool = False  # the last token completed a phrase: the next must not extend its word

    def after(self, token: int, phrases: Phrases) -> Progress:
        """The progress once `token` is produced."""
        if self.inside is not None:
            phrase, matched = self.inside
            if phrases[phrase][matched] == token:
                return self._advanced(phrase, matched + 1, phrases)
        for phrase, tokens in enumerate(phrases):  # start an unmet phrase (the first that fits)
            if phrase not in self.met and tokens[0] == token:
                return Progress(self.met)._advanced(phrase, 1, phrases)
        return Progress(self.met)  # a phrase left halfway counts for nothing

    def _advanced(self, phrase: int, matched: int, phrases: Phrases) -> Progress:
        if matched == len(phrases[phrase]):
            return Progress(self.met | {phrase}, just_met=True)
        return Progress(self.met, (phrase, matched))

    def next_tokens(self, phrases: Phrases) -> set[int]:
        """Tokens that advance a constraint from here."""
        if self.inside is not None:
            phrase, matched = self.inside
            return {phrases[phrase][matched]} | self._starts(phrases)
        return self._starts(phrases)

    def _starts(self, phrases: Phrases) -> set[int]:
        return {tokens[0] for p, tokens in enumerate(phrases) if p not in self.met}

    def met_tokens(self, phrases: Phrases) -> int:
        inside = self.inside[1] if self.inside is not None else 0
        return sum(len(phrases[p]) for p in self.met) + inside

    def complete(self, phrases: Phrases) -> bool:
        return len(self.met) == len(phrases)


@dataclass
class Hypothesis:
    tokens: list[int]
    log_prob: float
    progress: Progress
    row: int  # its row in the decoder state


@dataclass
class Sentence:
    """One sentence's search: its phrases, limit, live hypotheses and finished ones."""

    phrases: Phrases
    limit: int
    alive: list[Hypothesis]
    finished: list[tuple[float, list[int]]] = field(default_factory=list)
    done: bool = False


def check_room(phrases: Phrases, limit: int, sentence: int) -> None:
    """All phrases and END must fit within the output length limit."""
    needed = sum(map(len, phrases)) + 1
    if needed > limit:
        raise TranslatorError(f"sentence {sentence + 1}: its constraints need {needed} tokens "
                              f"with END; its output length limit is {limit} (decode."
                              "max_length_a, max_length_b)")  # fmt: skip


def penalty(length: int, alpha: float) -> float:
    return ((5.0 + length) / 6.0) ** alpha


def constrained_beam_search(
    step: Callable,
    state,
    reorder: Callable,
    phrases: list[Phrases],
    limits: list[int],
    beam_size: int,
    alpha: float,
    start_id: int,
    end_id: int,
    continuations: np.ndarray | None = None,
) -> list[tuple[list[int], float, bool]]:
    """Per sentence: (tokens without START, END included when it ended; score; length-limited).
    `state` holds one row per sentence; it is reordered to the live hypotheses every step.
    `continuations` (V,) bool: pieces that extend the word before them (letters without a word
    start), which may not follow a completed phrase: "Sofa" must not become "Sofas"."""
    for i, (own, limit) in enumerate(zip(phrases, limits, strict=True)):
        check_room(own, limit, i)
    sentences = [Sentence(own, limit, [Hypothesis([start_id], 0.0, Progress(), i)])
                 for i, (own, limit) in enumerate(zip(phrases, limits, strict=True))]  # fmt: skip
    index = 0
    while any(not s.done for s in sentences):
        live = [h for s in sentences if not s.done for h in s.alive]
        state = reorder(state, np.array([h.row for h in live], np.int32))
        log_probs, state = step(np.array([h.tokens[-1] for h in live], np.int32), index, state)
        row = 0
        for sentence in sentences:
            if sentence.done:
                continue
            count = len(sentence.alive)
            rows = range(row, row + count)
            for h, r in zip(sentence.alive, rows, strict=True):
                h.row = r
            advance(sentence, log_probs, beam_size, alpha, end_id, index, continuations)
            row += count
        index += 1
    return [result(s, alpha) for s in sentences]


def advance(sentence: Sentence, log_probs: np.ndarray, k: int, alpha: float, end_id: int,
            index: int, continuations: np.ndarray | None = None) -> None:  # fmt: skip
    """One step of one sentence: candidates, banks, the new beam, finished hypotheses."""
    phrases = sentence.phrases
    candidates = {}
    for h in sentence.alive:
        scores = log_probs[h.row]
        allowed = np.array(scores, copy=True)
        if not h.progress.complete(phrases):
            allowed[end_id] = -np.inf
        if h.progress.just_met and continuations is not None:
            allowed[continuations] = -np.inf
        best = np.argpartition(-allowed, k)[:k] if k < len(allowed) else np.arange(len(allowed))
        for token in {*map(int, best), *h.progress.next_tokens(phrases)}:
            if np.isfinite(allowed[token]):
                candidates[(h.row, token)] = (h, token, h.log_prob + float(scores[token]))
    kept = []
    for h, token, log_prob in candidates.values():
        if token == end_id:
            length = len(h.tokens)  # generated tokens with END (START excluded, END added)
            sentence.finished.append((log_prob / penalty(length, alpha), h.tokens[1:] + [token]))
        else:
            kept.append(Hypothesis(h.tokens + [token], log_prob, h.progress.after(token, phrases),
                                   h.row))  # fmt: skip
    sentence.alive = allocate(kept, k, phrases)
    sentence.finished = sorted(sentence.finished, key=lambda f: -f[0])[:k]
    at_limit = index + 1 >= sentence.limit
    sentence.done = at_limit or not sentence.alive or hopeless(sentence, k, alpha)


def allocate(candidates: list[Hypothesis], k: int, phrases: Phrases) -> list[Hypothesis]:
    """The beam: K places shared out over the banks of met constraint tokens (each bank its best
    candidates), the places a bank cannot fill going to the banks of more met tokens first."""
    banks: dict[int, list[Hypothesis]] = {}
    for h in sorted(candidates, key=lambda h: -h.log_prob):
        banks.setdefault(h.progress.met_tokens(phrases), []).append(h)
    levels = sorted(banks, reverse=True)
    if not levels:
        return []
    share = [k // len(levels) + (1 if i < k % len(levels) else 0) for i in range(len(levels))]
    taken = [min(n, len(banks[level])) for n, level in zip(share, levels, strict=True)]
    spare = k - sum(taken)
    for i, level in enumerate(levels):  # unused places: to the banks of more met tokens first
        extra = min(spare, len(banks[level]) - taken[i])
        taken[i] += extra
        spare -= extra
    beam = [h for n, level in zip(taken, levels, strict=True) for h in banks[level][:n]]
    return sorted(beam, key=lambda h: -h.log_prob)


def hopeless(sentence: Sentence, k: int, alpha: float) -> bool:
    """K hypotheses have finished and no live one can beat the worst of them."""
    if len(sentence.finished) < k:
        return False
    best_possible = max(h.log_prob for h in sentence.alive) / penalty(sentence.limit, alpha)
    return best_possible <= sentence.finished[-1][0]


def result(sentence: Sentence, alpha: float) -> tuple[list[int], float, bool]:
    """The best finished hypothesis, else the live one with the most constraint tokens met."""
    if sentence.finished:
        score, tokens = sentence.finished[0]
        return tokens, score, False
    if not sentence.alive:
        return [], float("-inf"), True
    best = max(sentence.alive, key=lambda h: (h.progress.met_tokens(sentence.phrases),
                                              h.log_prob))  # fmt: skip
    return best.tokens[1:], best.log_prob / penalty(len(best.tokens) - 1, alpha), True
