"""Dynamic batching with a scripted engine: who waits for whom, and who gets which answer."""

import asyncio
import time

from omegaconf import OmegaConf

from translator.inference.translator import Translation
from translator.serving.batcher import Batcher
from translator.serving.metrics import ServerMetrics

DECODE = OmegaConf.create({"strategy": "greedy", "beam_size": 1})
MAX_WAIT_MS = 1500  # long, so that waiting and not waiting cannot be confused


class RecordingEngine:
    """Upper-cases each sentence and records the batches it was given."""

    def __init__(self):
        self.batches: list[list[str]] = []

    def translate(self, sentences, decode, attention):
        self.batches.append(list(sentences))
        return [Translation(source=s, text=s.upper(), score=0.0) for s in sentences]


async def scenario():
    engine = RecordingEngine()
    batcher = Batcher(engine, ServerMetrics(), max_batch_size=8, max_wait_ms=MAX_WAIT_MS)
    batcher.start()

    async def timed(sentences):
        start = time.perf_counter()
        result = await batcher.translate(sentences, DECODE, False)
        return [t.text for t in result], time.perf_counter() - start

    lone = await timed(["a"])  # an idle server, one client
    together = await asyncio.gather(timed(["b", "c"]), timed(["d"]), timed(["e"]))
    after_company = await timed(["f"])  # the last batch held three requests: wait for others
    alone_again = await timed(["g"])  # the last batch held one
    await batcher.stop()
    return engine.batches, lone, together, after_company, alone_again


def test_a_lone_request_is_decoded_at_once_and_a_crowd_in_one_batch():
    batches, lone, together, after_company, alone_again = asyncio.run(scenario())
    assert batches == [["a"], ["b", "c", "d", "e"], ["f"], ["g"]]
    assert lone[0] == ["A"] and lone[1] < MAX_WAIT_MS / 1000 / 3
    assert [answer for answer, _ in together] == [["B", "C"], ["D"], ["E"]]  # each its own
    assert after_company[0] == ["F"] and after_company[1] >= MAX_WAIT_MS / 1000 * 0.9
    assert alone_again[0] == ["G"] and alone_again[1] < MAX_WAIT_MS / 1000 / 3


async def full_batch():
    engine = RecordingEngine()
    batcher = Batcher(engine, ServerMetrics(), max_batch_size=4, max_wait_ms=MAX_WAIT_MS)
    batcher.start()
    start = time.perf_counter()
    results = await asyncio.gather(*(batcher.translate([s], DECODE, False) for s in "pqrstu"))
    elapsed = time.perf_counter() - start
    await batcher.stop()
    return engine.batches, [r[0].text for r in results], elapsed


def test_a_full_batch_does_not_wait_and_the_rest_follow():
    batches, texts, elapsed = asyncio.run(full_batch())
    assert batches == [["p", "q", "r", "s"], ["t", "u"]]
    assert texts == list("PQRSTU")
    assert elapsed < MAX_WAIT_MS / 1000 * 2  # the first batch left full, the second waited once


class SlowEngine(RecordingEngine):
    """Takes `seconds` per batch, as a real decode does."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds

    def translate(self, sentences, decode, attention):
        time.sleep(self.seconds)
        return super().translate(sentences, decode, attention)


async def straggler():
    """Four clients' requests fill a batch; a fifth arrives while it decodes and its own wait
    runs out meanwhile; three of the four send their next requests just after their answers."""
    wait, decode = 0.3, 0.6
    engine = SlowEngine(decode)
    batcher = Batcher(engine, ServerMetrics(), max_batch_size=4, max_wait_ms=wait * 1000)
    batcher.start()
    crowd = [asyncio.ensure_future(batcher.translate([s], DECODE, False)) for s in "abcd"]
    await asyncio.sleep(0.1)
    late = asyncio.ensure_future(batcher.translate(["e"], DECODE, False))
    await asyncio.gather(*crowd)
    await asyncio.sleep(wait / 6)  # the crowd's clients read their answers and send again
    again = [batcher.translate([s], DECODE, False) for s in "fgh"]
    answers = await asyncio.gather(late, *again)
    await batcher.stop()
    return engine.batches, [a[0].text for a in answers]


def test_a_request_that_arrived_during_a_decode_waits_for_the_crowd_after_it():
    batches, texts = asyncio.run(straggler())
    assert batches == [["a", "b", "c", "d"], ["e", "f", "g", "h"]]  # not [e], then [f, g, h]
    assert texts == ["E", "F", "G", "H"]


class PrefixEngine(RecordingEngine):
    """Starts each translation with its prefix; refuses a prefix "!" as a translator refuses
    one with no room left in its sentence's length limit."""

    def translate(self, sentences, decode, attention, prefixes=None):
        from translator.errors import TranslatorError

        self.batches.append(list(zip(sentences, prefixes or [""] * len(sentences), strict=True)))
        prefixes = prefixes or [""] * len(sentences)
        if "!" in prefixes:
            raise TranslatorError("prefix '!' has 9 tokens: no room left")
        return [Translation(source=s, text=f"{p} {s.upper()}".strip(), score=0.0)
                for s, p in zip(sentences, prefixes, strict=True)]  # fmt: skip


async def prefixed_crowd():
    engine = PrefixEngine()
    batcher = Batcher(engine, ServerMetrics(), max_batch_size=8, max_wait_ms=200)
    batcher.start()
    await batcher.translate(["warm"], DECODE, False)  # so that the crowd below waits together
    calls = [batcher.translate(["a", "b"], DECODE, False, ["So", ""]),
             batcher.translate(["c"], DECODE, False),
             batcher.translate(["d"], DECODE, False, ["!"])]  # fmt: skip
    results = await asyncio.gather(*calls, return_exceptions=True)
    await batcher.stop()
    return engine.batches, results


def test_prefixes_travel_with_their_sentences_and_a_bad_one_fails_only_its_request():
    from translator.errors import TranslatorError

    batches, (first, second, third) = asyncio.run(prefixed_crowd())
    assert batches[1] == [("a", "So"), ("b", ""), ("c", ""), ("d", "!")]  # one batch, refused
    assert batches[2:] == [[("a", "So"), ("b", "")], [("c", "")], [("d", "!")]]  # one by one
    assert [t.text for t in first] == ["So A", "B"] and [t.text for t in second] == ["C"]
    assert isinstance(third, TranslatorError)
