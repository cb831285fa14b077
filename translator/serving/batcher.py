"""Dynamic batching: requests that arrive together are decoded as one batch.

Requests wait in a queue. A worker takes the oldest, then, for up to `max_wait_ms`, every
waiting request with the same decode settings until the batch holds `max_batch_size` sentences,
and decodes them in one call on a worker thread (the event loop keeps answering). A batch that
fails on one request's input (a TranslatorError) is decoded again request by request, so only
that request fails. It waits only
when there is company to wait for (other requests queued, or several in the last batch): a lone
client's request is decoded at once. The wait starts when the oldest request arrived or, if the
worker was busy then, when it became free: clients answered by the last batch send their next
requests a few milliseconds later, and a request that arrived during that decode waits for them
rather than leaving alone (with 32 clients, batches of 31 and 1 would take turns). Each
request's future gets its own translations, in its own order. A request whose client has gone
(its future cancelled) is dropped before decoding and costs nothing.
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cached_property, partial

from omegaconf import DictConfig

from translator.errors import TranslatorError
from translator.inference.translator import Translation
from translator.serving.engine import Engine
from translator.serving.metrics import ServerMetrics


@dataclass
class Job:
    sentences: list[str]
    decode: DictConfig
    attention: bool
    future: asyncio.Future
    prefixes: list[str] | None = None  # per sentence, its translation's forced start
    alignment: int | None = None  # the layer whose cross-attention links words; None: none
    constraints: list[list[str]] | None = None  # per sentence, phrases it must contain
    arrived: float = field(default_factory=time.perf_counter)

    @cached_property
    def key(self) -> tuple:
        """What a batch's jobs share (read many times while a batch is collected): constrained
        jobs take the constrained search, so they batch apart."""
        constrained = bool(self.constraints and any(self.constraints))
        return (tuple(sorted(self.decode.items())), self.attention, self.alignment, constrained)


class Batcher:
    """Collects jobs into batches and runs them on one worker thread.

    Args:
        engine: what translates a batch.
        metrics: where batch sizes and the queue depth are counted.
        max_batch_size: sentences per batch (a larger request is decoded alone).
        max_wait_ms: how long the oldest request waits for others to join its batch.
    """

    def __init__(self, engine: Engine, metrics: ServerMetrics, max_batch_size: int,
                 max_wait_ms: float):  # fmt: skip
        self.engine, self.metrics = engine, metrics
        self.max_batch_size = max_batch_size
        self.max_wait = max_wait_ms / 1000
        self.pending: list[Job] = []
        self.wakeup = asyncio.Event()
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decode")
        self.worker: asyncio.Task | None = None
        self.last_batch_jobs = 0
        self.free_since = 0.0  # when the worker finished its last batch
        self.decoding = False

    def start(self, on_failure=None) -> None:
        """Start the worker; `on_failure(error)` is called if it ever stops on an error."""
        self.worker = asyncio.get_running_loop().create_task(self._run())
        if on_failure is not None:
            self.worker.add_done_callback(
                lambda task: None if task.cancelled() or task.exception() is None
                else on_failure(task.exception())
            )  # fmt: skip

    async def stop(self) -> None:
        if self.worker is not None:
            self.worker.cancel()
        self.executor.shutdown(wait=False, cancel_futures=True)

    async def translate(self, sentences: list[str], decode: DictConfig, attention: bool,
                        prefixes: list[str] | None = None, alignment: int | None = None,
                        constraints: list[list[str]] | None = None
                        ) -> list[Translation]:  # fmt: skip
        """The translations of one request, once its batch has been decoded."""
        future = asyncio.get_running_loop().create_future()
        job = Job(sentences, decode, attention, future, prefixes, alignment, constraints)
        self.pending.append(job)
        self.metrics.queue_depth = len(self.pending)
        self.wakeup.set()
        return await job.future

    async def when_idle(self, work) -> None:
        """Run `work()` on the decode thread once no request is queued or decoding: start-up
        work that should not keep requests waiting (a request arriving meanwhile waits for it)."""
        while self.pending or self.decoding:
            await asyncio.sleep(0.05)
        self.decoding = True
        try:
            await asyncio.get_running_loop().run_in_executor(self.executor, work)
        finally:
            self.decoding = False

    async def _run(self) -> None:
        while True:
            await self.wakeup.wait()
            self.wakeup.clear()
            while self.pending:
                batch = await self._collect()
                if batch:
                    await self._decode(batch)

    async def _collect(self) -> list[Job]:
        """The oldest live job and those that can join it, waiting up to max_wait for more."""
        self._drop_gone()
        if not self.pending:
            return []
        company = len(self.pending) > 1 or self.last_batch_jobs > 1
        opened = max(self.pending[0].arrived, self.free_since)
        deadline = opened + (self.max_wait if company else 0.0)
        while (
            time.perf_counter() < deadline
            and self._sentences(self._joinable()) < self.max_batch_size
        ):
            await asyncio.sleep(min(0.002, max(0.0, deadline - time.perf_counter())))
        batch = self._joinable()
        taken = set(map(id, batch))
        self.pending = [job for job in self.pending if id(job) not in taken]
        self._drop_gone()
        return batch

    def _drop_gone(self) -> None:
        """Forget requests whose future is done: cancelled (client gone, timed out)."""
        self.pending = [job for job in self.pending if not job.future.done()]
        self.metrics.queue_depth = len(self.pending)

    def _joinable(self) -> list[Job]:
        live = [job for job in self.pending if not job.future.done()]
        if not live:
            return []
        first, batch, size = live[0], [live[0]], len(live[0].sentences)
        for job in live[1:]:
            if job.key == first.key and size + len(job.sentences) <= self.max_batch_size:
                batch.append(job)
                size += len(job.sentences)
        return batch

    @staticmethod
    def _sentences(jobs: list[Job]) -> int:
        return sum(len(job.sentences) for job in jobs)

    async def _decode(self, batch: list[Job]) -> None:
        self.decoding = True
        try:
            results = await self._translate(batch)
        except Exception as error:  # a failed batch fails its requests, not the server
            results = error
        finally:
            self.free_since = time.perf_counter()
            self.decoding = False
        if not isinstance(results, Exception):
            self._answer(batch, results)
        elif len(batch) > 1 and isinstance(results, TranslatorError):
            for job in batch:  # one request's bad input (a prefix too long) fails only it
                await self._decode([job])
        else:
            for job in batch:
                if not job.future.done():
                    job.future.set_exception(results)

    def _answer(self, batch: list[Job], results: list[Translation]) -> None:
        """Each job's future gets its own translations."""
        self.last_batch_jobs = len(batch)
        self.metrics.batch_done(len(batch), len(results))
        start = 0
        for job in batch:
            end = start + len(job.sentences)
            if not job.future.done():
                job.future.set_result(results[start:end])
            start = end

    async def _translate(self, batch: list[Job]) -> list[Translation]:
        """The batch's sentences translated on the decode thread (with their jobs' prefixes)."""
        sentences = [s for job in batch for s in job.sentences]
        prefixes = [p for job in batch for p in (job.prefixes or [""] * len(job.sentences))]
        first = batch[0]
        given = {"prefixes": prefixes} if any(prefixes) else {}
        if first.alignment is not None:
            given["alignment"] = first.alignment
        if first.key[-1]:  # constrained: every job of the batch is
            given["constraints"] = [
                c for job in batch for c in (job.constraints or [[]] * len(job.sentences))
            ]
        work = partial(self.engine.translate, sentences, first.decode, first.attention, **given)
        return await asyncio.get_running_loop().run_in_executor(self.executor, work)
