"""`POST /translate` answers: translations, n-best lists and the attention a request selected,
as JSON bytes.

Attention is the one part of an answer that can be large (layers x heads x output x source
pieces per sentence): `select_attention` keeps only what the request asked for, the caller counts
it (`attention_size`) against the server's limit before anything is serialised, and `encode`
writes one matrix at a time, so on a worker thread it hands the interpreter back to the event
loop between matrices instead of holding it for the whole answer.
"""

from __future__ import annotations

import json

import numpy as np

from translator.inference.translator import SentenceTranslation, Translation
from translator.serving.requests import AttentionRequest, BadRequest
from translator.visualization.attention import KINDS, axis_tokens

DECIMALS = 4  # attention weights are rounded to this many decimals


def check_attention(request: AttentionRequest, layers: int, heads: int) -> None:
    """A BadRequest (422) if the request names a layer or head the model does not have."""
    for name, wanted, count in (
        ("layers", request.layers, layers),
        ("heads", request.heads, heads),
    ):
        bad = [i for i in wanted if not -count <= i < count] if isinstance(wanted, tuple) else []
        if bad:
            message = f"{count} {name} (0 to {count - 1}, or -{count} to -1)"
            raise BadRequest(422, f"attention.{name}: {bad[0]} is not one of the model's {message}")


def select_attention(translation: Translation, request: AttentionRequest) -> dict:
    """The kinds, layers and heads `request` asks for: {"kinds": {kind: {"title", "columns",
    "rows", "layers", "heads", "weights"}}}, where `weights` lists, per chosen layer, an array
    (heads, rows, columns); one head, their mean, for "heads": "mean"."""
    count = len(translation.attention["cross"])
    layers = range(count) if request.layers is None else [i % count for i in request.layers]
    kinds = {}
    for kind in request.kinds:
        columns, rows = axis_tokens(translation, kind)
        weights = [_heads(translation.attention[kind][layer], request.heads) for layer in layers]
        heads = request.heads if isinstance(request.heads, str) else list(request.heads)
        kinds[kind] = {"title": KINDS[kind][0], "columns": columns, "rows": rows,
                       "layers": list(layers), "heads": heads, "weights": weights}  # fmt: skip
    return {"kinds": kinds}


def select_attention_of(translation: Translation, request: AttentionRequest
                        ) -> dict | list | None:  # fmt: skip
    """What `select_attention` selects of a text: the translation's own, for a text segmented
    into several sentences a list with each sentence's, and None for an empty text."""
    if len(translation.sentences) > 1:
        return [select_attention(part.translation, request) for part in translation.sentences]
    return None if translation.attention is None else select_attention(translation, request)


def _heads(weights: np.ndarray, heads: str | tuple[int, ...]) -> np.ndarray:
    """(H, rows, cols) -> the chosen heads, or their mean as one head."""
    if heads == "mean":
        return weights.mean(axis=0, keepdims=True)
    return weights if heads == "all" else weights[list(heads)]


def attention_size(selected: list[dict | list]) -> int:
    """How many weights the selected attention of an answer's translations holds."""
    flat = [
        one for item in selected if item for one in (item if isinstance(item, list) else [item])
    ]
    return sum(
        array.size
        for attention in flat
        for kind in attention["kinds"].values()
        for array in kind["weights"]
    )


def translation_json(translation: Translation, n_best: int, attention: dict | list | None,
                     segmented: bool = False) -> dict:  # fmt: skip
    """One translation's part of an answer (attention as selected, arrays left for `encode`).
    A segmented text also lists its sentences: their (start, end) in the text (in Unicode
    code points), source, translation and score; the n-best lists and attention of a text of
    several sentences are in its sentences' entries."""
    result = {"text": translation.text, "score": round(translation.score, 4)}
    several = len(translation.sentences) > 1  # then n-best lists and attention are per sentence
    if n_best > 1 and not several:
        result["n_best"] = n_best_json(translation)
    if isinstance(attention, dict):
        result["attention"] = attention
    if translation.alignment is not None:
        result["alignment"] = [list(link) for link in translation.alignment]
    if translation.truncated:
        result["truncated"] = True
    if translation.length_limited:
        result["length_limited"] = True
    if segmented:
        each = attention if isinstance(attention, list) else [None] * len(translation.sentences)
        pairs = zip(translation.sentences, each, strict=True)
        result["sentences"] = [sentence_json(part, selected, n_best if several else 1)
                               for part, selected in pairs]  # fmt: skip
    return result


def n_best_json(translation: Translation) -> list[dict]:
    return [{"text": t, "score": round(s, 4)} for t, s in translation.n_best]


def sentence_json(part: SentenceTranslation, attention: dict | None, n_best: int) -> dict:
    translation = part.translation
    entry = {"start": part.start, "end": part.end, "source": translation.source,
             "text": translation.text, "score": round(translation.score, 4)}  # fmt: skip
    if n_best > 1:
        entry["n_best"] = n_best_json(translation)
    if attention is not None:
        entry["attention"] = attention
    if translation.alignment is not None:  # the sentence's own words, from 0 on both sides
        entry["alignment"] = [list(link) for link in translation.alignment]
    if translation.truncated:
        entry["truncated"] = True
    if translation.length_limited:
        entry["length_limited"] = True
    return entry


def encode(value) -> bytes:
    """`value` as compact UTF-8 JSON; numpy arrays become nested lists of rounded numbers, each
    serialised on its own."""
    return "".join(_pieces(value)).encode("utf-8")


def _pieces(value):
    if isinstance(value, np.ndarray):
        rounded = np.round(value.astype(np.float64), DECIMALS)  # float64: 0.1234, not 0.12340000271
        yield json.dumps(rounded.tolist(), separators=(",", ":"))
    elif isinstance(value, dict):
        yield "{"
        for i, (key, item) in enumerate(value.items()):
            yield ("," if i else "") + json.dumps(key, ensure_ascii=False) + ":"
            yield from _pieces(item)
        yield "}"
    elif isinstance(value, list | tuple):
        yield "["
        for i, item in enumerate(value):
            yield "," if i else ""
            yield from _pieces(item)
        yield "]"
    else:
        yield json.dumps(value, ensure_ascii=False, allow_nan=False)
