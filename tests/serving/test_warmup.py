"""Start-up: the server is ready only after one sentence and a full batch have been decoded."""

import asyncio

from omegaconf import OmegaConf

from tests.serving.test_engine import RUN_DECODE
from translator.inference.translator import Translation
from translator.serving.app import WARMUP_LONG, Server


class ScriptedTranslator:
    """Echoes its input and records the batches it was asked to translate, and the status then."""

    has_attention = True
    run = None
    decode = OmegaConf.create(RUN_DECODE)

    def __init__(self):
        self.server = None
        self.calls: list[tuple[int, bool, str]] = []

    def with_decode(self, decode):
        return self  # one scripted translator for every setting

    def translate_detailed(self, sentences, attention=False):
        self.calls.append((len(sentences), attention, self.server.status))
        return [Translation(source=s, text=s, score=0.0) for s in sentences]


def test_ready_only_after_one_sentence_with_attention_and_a_full_batch():
    cfg = OmegaConf.create({"max_batch_size": 12, "max_wait_ms": 5, "max_beam_size": 8})
    translator = ScriptedTranslator()
    server = Server(cfg, lambda: translator)
    translator.server = server
    asyncio.run(server.load())
    loading = [call for call in translator.calls if call[2] == "loading"]
    assert loading == [(1, True, "loading"), (12, False, "loading")]  # then searches get ready
    assert server.status == "ready"
    assert len(WARMUP_LONG.split()) >= 25  # as long as a long request


def test_every_beam_size_is_prepared_while_no_request_waits():
    """After start-up, one sentence per beam size a request may choose, each decoded only when
    no batch is queued or decoding."""
    cfg = OmegaConf.create({"max_batch_size": 4, "max_wait_ms": 5, "max_beam_size": 3})
    translator = ScriptedTranslator()
    server = Server(cfg, lambda: translator)
    translator.server = server
    seen = []
    translator.translate_detailed = lambda sentences, attention=False: (
        seen.append((len(sentences), server.batcher and server.batcher.decoding))
        or [Translation(source=s, text=s, score=0.0) for s in sentences]
    )

    async def serve():
        await server.load()
        await server.batcher.translate(["a", "b"], server.batcher.engine.settings({}), False)
        await server.preparing
        await server.batcher.stop()

    asyncio.run(serve())
    assert seen[:2] == [(1, None), (4, None)]  # the warm-up, before the batcher exists
    assert [n for n, _ in seen[2:]] == [2, 1, 1, 1] or [n for n, _ in seen[2:]] == [1, 2, 1, 1]
    assert all(decoding for _, decoding in seen[2:])  # each alone on the decode thread
