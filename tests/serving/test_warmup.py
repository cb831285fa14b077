"""Start-up: the server is ready only after one sentence and a full batch have been decoded."""

import asyncio

from omegaconf import OmegaConf

from translator.inference.translator import Translation
from translator.serving.app import WARMUP_LONG, Server


class ScriptedTranslator:
    """Echoes its input and records the batches it was asked to translate, and the status then."""

    has_attention = True
    run = None
    decode = OmegaConf.create({"strategy": "beam", "beam_size": 5})

    def __init__(self):
        self.server = None
        self.calls: list[tuple[int, bool, str]] = []

    def translate_detailed(self, sentences, attention=False):
        self.calls.append((len(sentences), attention, self.server.status))
        return [Translation(source=s, text=s, score=0.0) for s in sentences]


def test_ready_only_after_one_sentence_with_attention_and_a_full_batch():
    cfg = OmegaConf.create({"max_batch_size": 12, "max_wait_ms": 5, "decoders_cached": 2})
    translator = ScriptedTranslator()
    server = Server(cfg, lambda: translator)
    translator.server = server
    asyncio.run(server.load())
    assert translator.calls == [(1, True, "loading"), (12, False, "loading")]
    assert server.status == "ready"
    assert len(WARMUP_LONG.split()) >= 25  # as long as a long request
