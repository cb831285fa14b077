"""What a `POST /translate` body may hold, checked into sentences and decode settings."""

from __future__ import annotations

import json
from dataclasses import dataclass

from omegaconf import DictConfig


class BadRequest(Exception):
    """A request the server refuses: its status code and a one-line reason."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


ATTENTION_KINDS = ("cross", "encoder_self", "decoder_self")


@dataclass(frozen=True)
class AttentionRequest:
    """The attention weights an answer carries: `"attention": true` asks for cross-attention,
    every layer and head; an object chooses `kinds`, `layers` (indices, negative from the last)
    and `heads` ("all", "mean" of them, or a list of indices)."""

    kinds: tuple[str, ...] = ("cross",)
    layers: tuple[int, ...] | None = None  # None: every layer
    heads: str | tuple[int, ...] = "all"


@dataclass
class TranslateRequest:
    sentences: list[str]
    single: bool  # {"text": ...} rather than {"texts": [...]}
    decode: dict  # the request's decode overrides
    attention: AttentionRequest | None  # None: no attention weights
    segment: bool  # cut each text into sentences (serve.yaml's `segment` unless the body says)
    prefixes: list[str] | None = None  # per text, words its translation must start with
    alignment: bool = False  # word links (source word, target word) in the answer
    constraints: list[list[str]] | None = None  # per text, phrases its translation must contain


def parse_body(body: bytes, limits: DictConfig) -> TranslateRequest:
    """The request in a JSON body, or a BadRequest naming what is wrong with it."""
    try:
        data = json.loads(body.decode("utf-8"))
    except RecursionError:
        raise BadRequest(400, "the body is not valid JSON: nested too deeply") from None
    except ValueError as error:  # not UTF-8, not JSON, or an integer too long to read
        raise BadRequest(400, f"the body is not valid JSON: {first_line_of(error)}") from None
    if not isinstance(data, dict):
        raise BadRequest(422, 'expected a JSON object such as {"text": "..."}')
    known = {"text", "texts", "decode", "attention", "segment", "prefix", "alignment",
             "constraints"}  # fmt: skip
    unknown = sorted(set(data) - known)
    if unknown:
        raise BadRequest(422, f"unknown field {unknown[0]!r} (expected text or texts, decode, "
                              "attention, segment, prefix, alignment, constraints)")  # fmt: skip
    sentences, single = sentences_of(data, limits)
    decode = decode_of(data.get("decode", {}), limits)
    segment = data.get("segment", limits.segment)
    if not isinstance(segment, bool):
        raise BadRequest(422, f"segment must be true or false, not {segment!r}")
    attention = attention_of(data.get("attention", False))
    prefixes = prefixes_of(data["prefix"], single, len(sentences), limits) if "prefix" in data \
        else None  # fmt: skip
    alignment = data.get("alignment", False)
    if not isinstance(alignment, bool):
        raise BadRequest(422, f"alignment must be true or false, not {alignment!r}")
    constraints = constraints_of(data["constraints"], single, len(sentences), limits) \
        if "constraints" in data else None  # fmt: skip
    return TranslateRequest(sentences, single, decode, attention, segment, prefixes, alignment,
                            constraints)  # fmt: skip


def constraints_of(value, single: bool, count: int, limits: DictConfig) -> list[list[str]]:
    """Per text, the target phrases its translation must contain: a list of strings with
    "text"; with "texts", a list of such lists, one per text."""
    lists, names = ([value], ["constraints"]) if single else (value, [
        f"constraints[{i}]" for i in range(count)])  # fmt: skip
    if not isinstance(lists, list) or len(lists) != count:
        raise BadRequest(422, f"constraints must be a list of {count} lists of strings (one per "
                              f"text), not {str(value)[:60]}")  # fmt: skip
    checked = []
    for name, phrases in zip(names, lists, strict=True):
        if not isinstance(phrases, list):
            raise BadRequest(422, f"{name} must be a list of strings, not {str(phrases)[:60]}")
        if len(phrases) > limits.max_constraints:
            raise BadRequest(413, f"{name} has {len(phrases)} phrases; the limit is "
                                  f"{limits.max_constraints} (max_constraints)")  # fmt: skip
        for j, phrase in enumerate(phrases):
            checked_string(phrase, f"{name}[{j}]", limits.max_constraint_chars,
                           "max_constraint_chars")  # fmt: skip
        checked.append([p.strip() for p in phrases if p.strip()])
    return checked


def prefixes_of(value, single: bool, count: int, limits: DictConfig) -> list[str]:
    """One target prefix per text: a string with "text"; with "texts", a list as long as it
    ("" or null: none for that text)."""
    if single:
        value = [value]
        names = ["prefix"]
    else:
        if not isinstance(value, list) or len(value) != count:
            raise BadRequest(422, f"prefix must be a list of {count} strings (one per text; "
                                  f'"" for none), not {str(value)[:60]}')  # fmt: skip
        names = [f"prefix[{i}]" for i in range(count)]
    prefixes = []
    for name, prefix in zip(names, value, strict=True):
        prefix = "" if prefix is None else prefix
        checked_string(prefix, name, limits.max_prefix_chars, "max_prefix_chars")
        prefixes.append(prefix.strip())
    return prefixes


def sentences_of(data: dict, limits: DictConfig) -> tuple[list[str], bool]:
    if ("text" in data) == ("texts" in data):
        raise BadRequest(422, 'give either "text" (a string) or "texts" (a list of strings)')
    single = "text" in data
    sentences = [data["text"]] if single else data["texts"]
    if not isinstance(sentences, list):
        raise BadRequest(422, f"texts must be a list of strings, not {type(sentences).__name__}")
    if not sentences:
        raise BadRequest(422, "texts is empty")
    if len(sentences) > limits.max_sentences:
        raise BadRequest(413, f"{len(sentences)} texts in one request; the limit is "
                              f"{limits.max_sentences}")  # fmt: skip
    for i, sentence in enumerate(sentences):
        checked_string(sentence, "text" if single else f"texts[{i}]", limits.max_chars)
    return sentences, single


def checked_string(value, name: str, limit: int, key: str | None = None) -> str:
    """`value` if it is a string of valid Unicode within `limit` characters, else a BadRequest
    naming it (`name`) and the limit (`key`: its serve.yaml setting)."""
    if not isinstance(value, str):
        raise BadRequest(422, f"{name} must be a string, not {type(value).__name__}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise BadRequest(422, f"{name} is not valid Unicode (a lone surrogate)") from None
    if len(value) > limit:
        setting = f" ({key})" if key else ""
        raise BadRequest(413, f"{name} has {len(value)} characters; the limit is {limit}{setting}")
    return value


def decode_of(decode, limits: DictConfig) -> dict:
    """Checked decode overrides: beam_size and n_best integers within the limits,
    length_penalty a number in [0, 5], rounded to one decimal."""
    if not isinstance(decode, dict):
        raise BadRequest(422, f"decode must be an object, not {type(decode).__name__}")
    allowed = {"beam_size": limits.max_beam_size, "n_best": limits.max_n_best}
    checked = {}
    for key, value in decode.items():
        if key in allowed:
            if isinstance(value, bool) or not isinstance(value, int):
                raise BadRequest(422, f"decode.{key} must be an integer, not {value!r}")
            if not 1 <= value <= allowed[key]:
                raise BadRequest(422, f"decode.{key}={value}: expected 1 to {allowed[key]}")
        elif key == "length_penalty":
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise BadRequest(422, f"decode.length_penalty must be a number, not {value!r}")
            if not 0 <= value <= 5:
                raise BadRequest(422, f"decode.length_penalty={value}: expected 0 to 5")
            value = round(float(value), 1)  # each value compiles its own search: a few only
        else:
            raise BadRequest(422, f"unknown decode setting {key!r} (expected beam_size, "
                                  "length_penalty, n_best)")  # fmt: skip
        checked[key] = value
    return checked


def attention_of(value) -> AttentionRequest | None:
    """The attention a request asks for: true, false, or {"kinds", "layers", "heads"}."""
    if isinstance(value, bool):
        return AttentionRequest() if value else None
    if not isinstance(value, dict):
        raise BadRequest(422, "attention must be true, false or an object with kinds, layers "
                              f"and heads, not {value!r}")  # fmt: skip
    unknown = sorted(set(value) - {"kinds", "layers", "heads"})
    if unknown:
        raise BadRequest(422, f"unknown attention field {unknown[0]!r} (expected kinds, layers, "
                              "heads)")  # fmt: skip
    kinds = value.get("kinds", ["cross"])
    if not _list_of(kinds, str) or not set(kinds) <= set(ATTENTION_KINDS):
        raise BadRequest(422, f"attention.kinds must be a list of {', '.join(ATTENTION_KINDS)}, "
                              f"not {kinds!r}")  # fmt: skip
    layers = value.get("layers")
    if layers is not None and not _list_of(layers, int):
        raise BadRequest(422, f"attention.layers must be a list of layer indices, not {layers!r}")
    heads = value.get("heads", "all")
    if heads not in ("all", "mean") and not _list_of(heads, int):
        raise BadRequest(422, 'attention.heads must be "all", "mean" or a list of head indices, '
                              f"not {heads!r}")  # fmt: skip
    return AttentionRequest(
        tuple(dict.fromkeys(kinds)),
        None if layers is None else tuple(dict.fromkeys(layers)),
        heads if isinstance(heads, str) else tuple(dict.fromkeys(heads)),
    )


def _list_of(value, kind: type) -> bool:
    """A non-empty list of `kind` (booleans are not integers here)."""
    return (
        isinstance(value, list)
        and bool(value)
        and all(isinstance(v, kind) and not isinstance(v, bool) for v in value)
    )


def first_line_of(error: BaseException) -> str:
    lines = str(error).splitlines()
    return lines[0] if lines else type(error).__name__
