"""Decoding several batches at once.

One batch's search is a long chain of small operations that leaves part of a CPU's cores idle;
a second batch decoded beside it on another thread fills them (TensorFlow and CTranslate2 both
release the GIL while they compute).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Item, Result = TypeVar("Item"), TypeVar("Result")


def in_order(function: Callable[[Item], Result], items: Iterable[Item], workers: int
             ) -> Iterator[Result]:  # fmt: skip
    """`function(item)` for each item, at most `workers` at a time on threads, yielded in the
    items' order. Leaving early (an error, or the caller stops) cancels the ones not started."""
    if workers <= 1:
        yield from map(function, items)
        return
    with ThreadPoolExecutor(workers, thread_name_prefix="decode") as pool:
        running: deque = deque()
        try:
            for item in items:
                running.append(pool.submit(function, item))
                if len(running) >= workers:
                    yield running.popleft().result()
            while running:
                yield running.popleft().result()
        finally:
            for future in running:
                future.cancel()
