"""One loaded run, translating with per-request decode settings that share its model."""

from __future__ import annotations

import threading
from collections import OrderedDict

from omegaconf import DictConfig, OmegaConf

from translator.config import DecodeConfig
from translator.inference.translator import Translation, Translator

# Decode settings a request may choose; the rest stay as the run's.
REQUEST_DECODE_KEYS = ("beam_size", "length_penalty", "n_best")
SETTINGS_CACHED = 256  # requests' decode settings kept merged and checked (OmegaConf is slow)


class Lru(OrderedDict):
    """A dict of at most `size` entries: the least recently used leaves first."""

    def __init__(self, size: int):
        super().__init__()
        self.size = size

    def get_or_make(self, key, make):
        """The value at `key`, made by `make()` first if absent (an error stores nothing)."""
        if key not in self:
            self[key] = make()
            while len(self) > self.size:
                self.popitem(last=False)
        self.move_to_end(key)
        return self[key]


class Engine:
    """A run's model and tokenizers, and a translator per decode setting in use.

    The translators share the model and their search graphs: a graph is traced per search
    strategy and beam size (the length penalty and the n-best size are its inputs), so a request
    can cause at most `max_beam_size` traces in the server's life, however its settings vary.
    Calls are serialised: TensorFlow runs one batch at a time here, using every core.

    Args:
        translator: the run's translator, with its own decode settings (the default).
    """

    def __init__(self, translator: Translator):
        self.default = translator
        self._translators = Lru(SETTINGS_CACHED)
        self._settings = Lru(SETTINGS_CACHED)
        self._lock = threading.Lock()
        self.has_attention = translator.has_attention  # only TensorFlow's decoder returns it
        model = getattr(translator, "model", None)
        self.attention_shape = (getattr(model, "num_layers", 0), getattr(model, "num_heads", 0))

    def settings(self, overrides: dict) -> DictConfig:
        """The run's decode settings with a request's `overrides`: a beam size above 1 or an
        n-best list searches with beam search (a beam at least as wide as the list unless the
        request sets one), a beam size of 1 greedily. A ValueError names a setting DecodeConfig
        refuses. Read-only, and the same object for the same overrides: merging and checking
        take milliseconds of the event loop's time, which a crowd of requests cannot spare."""
        key = tuple(sorted(overrides.items()))
        return self._settings.get_or_make(key, lambda: self._merge(overrides))

    def _merge(self, overrides: dict) -> DictConfig:
        merged = OmegaConf.merge(self.default.decode, overrides)
        if overrides.get("beam_size", 1) > 1 or overrides.get("n_best", 1) > 1:
            merged.strategy = "beam"
        if "n_best" in overrides and "beam_size" not in overrides:
            merged.beam_size = max(merged.beam_size, merged.n_best)  # room for the list
        if overrides.get("beam_size") == 1:
            merged.strategy = "greedy"
        if merged.strategy == "greedy":  # settings greedy search does not use: one graph
            merged.beam_size = merged.n_best = 1
            merged.length_penalty = self.default.decode.length_penalty
        OmegaConf.to_object(OmegaConf.merge(OmegaConf.structured(DecodeConfig), merged))
        OmegaConf.set_readonly(merged, True)
        return merged

    def translator(self, decode: DictConfig) -> Translator:
        if decode == self.default.decode:
            return self.default
        key = tuple(sorted(OmegaConf.to_container(decode).items()))
        return self._translators.get_or_make(key, lambda: self.default.with_decode(decode))

    def translate(self, sentences: list[str], decode: DictConfig, attention: bool,
                  prefixes: list[str] | None = None, alignment: int | None = None,
                  constraints: list[list[str]] | None = None) -> list[Translation]:  # fmt: skip
        given = {"prefixes": prefixes} if prefixes else {}
        if alignment is not None:
            given["alignment"] = alignment
        if constraints:
            given["constraints"] = constraints
        with self._lock:
            return self.translator(decode).translate_detailed(sentences, attention=attention,
                                                              **given)  # fmt: skip
