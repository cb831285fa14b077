"""A request's wait for its batch: answered, abandoned by its client, or out of time."""

import asyncio

from translator.serving.app import finished_unless_gone
from translator.serving.requests import BadRequest


class Client:
    """An ASGI request whose client disconnects after `leaves_after` seconds (None: stays)."""

    def __init__(self, leaves_after: float | None):
        self.leaves_after = leaves_after

    async def receive(self):
        if self.leaves_after is None:
            await asyncio.Event().wait()
        await asyncio.sleep(self.leaves_after)
        return {"type": "http.disconnect"}


async def wait(job_seconds: float, leaves_after: float | None, timeout: float):
    job = asyncio.ensure_future(asyncio.sleep(job_seconds, result="translated"))
    try:
        answered = await finished_unless_gone(job, Client(leaves_after), timeout)
    except BadRequest as error:
        answered = error
    await asyncio.sleep(0)  # let a cancellation land
    return answered, job.cancelled(), len(asyncio.all_tasks()) - 1


def test_an_answer_that_comes_first_is_returned():
    answered, cancelled, others = asyncio.run(wait(0.05, leaves_after=None, timeout=5))
    assert answered is True and not cancelled and others == 0  # the watcher is gone too


def test_a_client_that_leaves_cancels_its_job():
    answered, cancelled, others = asyncio.run(wait(5, leaves_after=0.05, timeout=5))
    assert answered is False and cancelled and others == 0


def test_a_request_out_of_time_gets_503_and_its_job_is_cancelled():
    answered, cancelled, others = asyncio.run(wait(5, leaves_after=None, timeout=0.05))
    assert isinstance(answered, BadRequest) and answered.status == 503
    assert str(answered) == "no translation within 0.05 s; try again later"
    assert cancelled and others == 0
