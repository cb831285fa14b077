"""Dynamic batching with a scripted engine: who waits for whom, and who gets which answer."""

import asyncio
import time

from omegaconf import OmegaConf

from translator.inference.translator import Translation
from translator.serving.batcher import Batcher, Job, share
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
    """Takes 0.3 s a batch and records when each ran."""

    def __init__(self):
        super().__init__()
        self.spans: list[tuple[float, float]] = []

    def translate(self, sentences, decode, attention):
        start = time.perf_counter()
        time.sleep(0.3)
        self.spans.append((start, time.perf_counter()))
        return super().translate(sentences, decode, attention)


async def crowd_with_two_workers():
    engine = SlowEngine()
    batcher = Batcher(engine, ServerMetrics(), max_batch_size=8, max_wait_ms=MAX_WAIT_MS,
                      parallel_batches=2)  # fmt: skip
    batcher.start()
    results = await asyncio.gather(*(batcher.translate([s], DECODE, False) for s in "abcdefgh"))
    lone = await batcher.translate(["i"], DECODE, False)  # both workers idle again
    await batcher.stop()
    return engine, [r[0].text for r in results], lone[0].text


def test_two_workers_share_a_crowd_and_decode_at_the_same_time():
    engine, texts, lone = asyncio.run(crowd_with_two_workers())
    assert sorted(engine.batches[:2]) == [list("abcd"), list("efgh")]
    assert texts == list("ABCDEFGH") and lone == "I"
    (start_1, end_1), (start_2, end_2) = engine.spans[:2]
    assert max(start_1, start_2) < min(end_1, end_2)  # the two batches overlapped
    assert engine.batches[2] == ["i"]


def job(sentences: int) -> Job:
    return Job(["x"] * sentences, DECODE, False, future=None)


def test_share_splits_by_sentences_without_splitting_a_request():
    sizes = lambda batches: [[len(j.sentences) for j in batch] for batch in batches]  # noqa: E731
    assert sizes(share([job(1)] * 32, 2)) == [[1] * 16, [1] * 16]
    assert sizes(share([job(1)] * 5, 2)) == [[1] * 3, [1] * 2]
    assert sizes(share([job(20), job(5), job(5)], 2)) == [[20], [5, 5]]
    assert sizes(share([job(32)], 2)) == [[32]]
    assert sizes(share([job(1), job(1)], 1)) == [[1, 1]]
    assert share([], 2) == []
