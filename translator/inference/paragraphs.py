"""Translating text as people write it: each text cut into sentences (`Segmenter`), the sentences
of all texts translated together in the usual batches, and each text's translations put back in
their sentences' places (line breaks, blank lines and the spaces between sentences kept).

`translate`, `evaluate segment=true`, the HTTP API and its page all translate through
`translate_texts`; without a segmenter it is `translate_detailed` itself. A text given a target
prefix is translated whole: the prefix begins its translation, not its first sentence's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace

from omegaconf import DictConfig

from translator.inference.alignment import shifted
from translator.inference.translator import SentenceTranslation, Translation
from translator.segmentation import Segmented, Segmenter, outer_span

log = logging.getLogger(__name__)


def segmenter_for(translator, segment: bool) -> Segmenter | None:
    """The segmenter of the run's source language when `segment`, else None."""
    if not segment:
        return None
    run_config: DictConfig | None = getattr(translator, "run_config", None)
    if run_config is None:
        log.warning("sentence segmentation: the run's source language is unknown; English rules")
        return Segmenter("en")
    return Segmenter(str(run_config.data.source))


def translate_texts(
    translator,
    texts: list[str],
    segmenter: Segmenter | None,
    attention: bool = False,
    progress: Callable[[float], None] | None = None,
    prefixes: list[str] | None = None,
    alignment: int | None = None,
    constraints: list[list[str]] | None = None,
) -> list[Translation]:
    """One Translation per text. With a segmenter, each text's sentences are translated
    (together with every other text's) and joined: `Translation.sentences` holds each
    sentence's span and translation, `score` their sum. `progress` is called with the number
    of texts finished (fractions of a text while its sentences are translated). `prefixes`:
    per text, words its translation must start with ("": none); such texts stay whole.
    `alignment`: the layer whose cross-attention links words (`Translation.alignment`, of the
    whole text: words counted from its start). `constraints`: per text, target phrases its
    translation must contain; such texts stay whole too."""
    given = {"prefixes": prefixes} if prefixes and any(prefixes) else {}
    if constraints and any(constraints):
        given["constraints"] = constraints
    aligned = {} if alignment is None else {"alignment": alignment}
    if segmenter is None:
        return translator.translate_detailed(texts, attention=attention, progress=progress,
                                             **given, **aligned)  # fmt: skip
    whole = [bool(p or c) for p, c in zip(given.get("prefixes", [""] * len(texts)),
                                          given.get("constraints", [[]] * len(texts)),
                                          strict=True)]  # fmt: skip
    cut, sentences = segment_texts(texts, segmenter, whole)
    given = {key: per_sentence(cut, value) for key, value in given.items()}
    empty = sum(1 for one in cut if not one.spans)
    share = (len(texts) - empty) / max(len(sentences), 1)  # of a text, per sentence
    if progress and empty:
        progress(empty)  # texts without a sentence are done already
    done = translator.translate_detailed(
        sentences, attention=attention, progress=progress and whole_steps(progress, share),
        **given, **aligned,
    )  # fmt: skip
    return rejoin(cut, done)


def joined_alignment(cut: Segmented, parts: list[Translation]) -> list[tuple[int, int]] | None:
    """The word links of a segmented text from its sentences': each sentence's words counted
    from the text's start, on both sides (what lies between sentences is whitespace)."""
    if any(part.alignment is None for part in parts):
        return None
    found, target_words = [], 0
    for (start, _), part in zip(cut.spans, parts, strict=True):
        found += shifted(part.alignment, len(cut.text[:start].split()), target_words)
        target_words += len(part.text.split())
    return found


def per_sentence(cut: list[Segmented], values: list) -> list:
    """Per sentence of segmented texts, its text's value (a prefix, constraints); texts given
    one are a single sentence, so it goes to their only sentence."""
    return [own for one, value in zip(cut, values, strict=True)
            for own in [value] * len(one.spans)]  # fmt: skip


def whole_steps(progress: Callable[[int], None], share: float) -> Callable[[int], None]:
    """`progress` called with whole texts as sentences finish (`share` of a text each)."""
    done = {"texts": 0.0, "reported": 0}

    def finished(sentences: int) -> None:
        done["texts"] += sentences * share
        whole = int(done["texts"] + 1e-6)  # 1e-6: a sum of fractions lands just below
        if whole > done["reported"]:
            progress(whole - done["reported"])
            done["reported"] = whole

    return finished


def segment_texts(texts: list[str], segmenter: Segmenter, whole: list[bool] | None = None
                  ) -> tuple[list[Segmented], list[str]]:  # fmt: skip
    """Each text cut into sentences (kept as one where `whole` says so), and all their
    sentences in order."""
    whole = whole or [False] * len(texts)
    cut = [one_sentence(text) if keep else segmenter(text)
           for text, keep in zip(texts, whole, strict=True)]  # fmt: skip
    return cut, [sentence for one in cut for sentence in one.sentences]


def one_sentence(text: str) -> Segmented:
    """`text` as a single sentence (none when blank)."""
    return Segmented(text, (outer_span(text),) if text.strip() else ())


def rejoin(cut: list[Segmented], done: list[Translation]) -> list[Translation]:
    """One Translation per segmented text from the translations of all their sentences."""
    results, first = [], 0
    for one in cut:
        results.append(joined(one, done[first : first + len(one.spans)]))
        first += len(one.spans)
    return results


def joined(cut: Segmented, parts: list[Translation]) -> Translation:
    """A segmented text's translation from its sentences'."""
    if not parts:  # an empty or blank text
        return Translation(source=cut.text.strip(), text="", score=0.0)
    sentences = [SentenceTranslation(start, end, part)
                 for (start, end), part in zip(cut.spans, parts, strict=True)]  # fmt: skip
    if len(parts) == 1:  # one sentence: its translation, n-best and attention as they are
        return replace(parts[0], sentences=sentences)
    text = cut.join([part.text for part in parts])
    score = sum(part.score for part in parts)
    return Translation(
        source=cut.text.strip(),
        text=text,
        score=score,
        n_best=[(text, score)],
        truncated=any(part.truncated for part in parts),
        length_limited=any(part.length_limited for part in parts),
        sentences=sentences,
        alignment=joined_alignment(cut, parts),
    )
