"""Decoding batches side by side: results in order, at most `workers` at once, errors surface."""

import threading
import time

import pytest

from translator.inference.parallel import in_order


def test_results_come_in_the_items_order_with_at_most_workers_running():
    running, most, lock = 0, 0, threading.Lock()

    def work(item):
        nonlocal running, most
        with lock:
            running += 1
            most = max(most, running)
        time.sleep(0.05 if item % 3 == 0 else 0.01)  # later items often finish first
        with lock:
            running -= 1
        return item * item

    assert list(in_order(work, range(10), workers=2)) == [i * i for i in range(10)]
    assert most == 2


def test_one_worker_runs_on_the_callers_thread():
    threads = set(in_order(lambda _: threading.get_ident(), range(3), workers=1))
    assert threads == {threading.get_ident()}


def test_an_error_surfaces_and_the_items_not_started_never_run():
    started = []

    def work(item):
        started.append(item)
        if item == 1:
            raise ValueError("item 1 failed")
        time.sleep(0.05)
        return item

    with pytest.raises(ValueError, match="item 1 failed"):
        list(in_order(work, range(20), workers=2))
    assert max(started) <= 2  # two running, the third submitted when the first was taken
