"""The ASGI app: `POST /translate`, `GET /health`, `GET /metrics` and the page at `GET /`.

Errors are JSON objects with one line, `{"error": "..."}`, and a 4xx status for anything a client
sent; the model loads and warms up in the background, and `/health` says `ready` only after.
"""

from __future__ import annotations

import asyncio
import logging
import time
from contextlib import asynccontextmanager
from pathlib import Path

from omegaconf import DictConfig
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from translator.errors import first_line
from translator.inference.engines import engine_name
from translator.serving.batcher import Batcher
from translator.serving.engine import Engine
from translator.serving.metrics import ServerMetrics
from translator.serving.requests import BadRequest, parse_body
from translator.visualization.attention import HEATMAP_JS, attention_data

log = logging.getLogger(__name__)

PAGE = (Path(__file__).parent / "page.html").read_text(encoding="utf-8")
WARMUP_SENTENCE = "Hello."
# A full batch of this decoded at start-up sets aside the memory a crowd of long requests needs
# (TensorFlow's allocator keeps what it grew to), before the first client rather than under it.
WARMUP_LONG = (
    "Hello, this sentence warms the server up: it is about as long as a long request, so that a "
    "full batch of it needs about as much memory as the crowds the server will decode later."
)


class Server:
    """The app's state: settings, metrics, and once loaded, the engine and its batcher."""

    def __init__(self, cfg: DictConfig, load_translator):
        self.cfg = cfg
        self.load_translator = load_translator  # () -> Translator, run on a worker thread
        self.metrics = ServerMetrics()
        self.status = "loading"
        self.batcher: Batcher | None = None
        self.run_dir = None

    async def load(self) -> None:
        try:
            translator = await asyncio.to_thread(self.load_translator)
            engine = Engine(translator, self.cfg.decoders_cached)
            warm = (engine.translate, [WARMUP_SENTENCE], translator.decode, engine.has_attention)
            await asyncio.to_thread(*warm)
            full = [WARMUP_LONG] * self.cfg.max_batch_size
            await asyncio.to_thread(engine.translate, full, translator.decode, False)
        except Exception as error:  # reported by /health; the process stays up to say so
            self.status = f"failed: {first_line(error)}"
            log.error("loading the run failed: %s", first_line(error))
            return
        self.run_dir = str(translator.run) if translator.run else None
        self.batcher = Batcher(engine, self.metrics, self.cfg.max_batch_size, self.cfg.max_wait_ms)
        self.batcher.start(on_failure=self.worker_failed)
        self.status = "ready"
        log.info("ready: %s", self.run_dir)

    def worker_failed(self, error: BaseException) -> None:
        self.status = f"failed: the batch worker stopped: {first_line(error)}"
        log.error(self.status)


def create_app(cfg: DictConfig, load_translator) -> Starlette:
    """The app for the serve config `cfg`; `load_translator()` returns the run's Translator."""
    server = Server(cfg, load_translator)

    @asynccontextmanager
    async def lifespan(app):
        loading = asyncio.create_task(server.load())
        yield
        loading.cancel()
        if server.batcher is not None:
            await server.batcher.stop()

    async def translate(request: Request) -> Response:
        return await timed(server, lambda: answer_translate(server, request))

    async def health(request: Request) -> Response:
        ready = server.status == "ready"
        body = {"status": server.status, "run_dir": server.run_dir,
                "engine": engine_name(server.cfg.get("engine"))}  # fmt: skip
        return JSONResponse(body, status_code=200 if ready else 503)

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(server.metrics.render(), media_type="text/plain; version=0.0.4")

    async def page(request: Request) -> Response:
        return HTMLResponse(PAGE.replace("/*__HEATMAP_JS__*/", HEATMAP_JS))

    async def http_error(request: Request, error: HTTPException) -> Response:
        server.metrics.request_done(error.status_code)  # no route: not timed
        return JSONResponse(
            {"error": error.detail}, status_code=error.status_code, headers=error.headers
        )

    routes = [
        Route("/", page, methods=["GET"]),
        Route("/translate", translate, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error}
    )
    app.state.server = server
    return app


async def timed(server: Server, handler) -> Response:
    """The handler's response, or the JSON error of a BadRequest; counted in the metrics."""
    start = time.perf_counter()
    try:
        response = await handler()
    except BadRequest as error:
        response = JSONResponse({"error": str(error)}, status_code=error.status)
    except ClientDisconnect:  # gone while sending its body: nobody reads an answer
        response = Response(status_code=499)
    except Exception as error:  # a bug or a failed batch: still one JSON line, and counted
        log.exception("translation failed")
        response = JSONResponse({"error": f"internal error: {first_line(error)}"}, status_code=500)
    server.metrics.request_done(response.status_code, time.perf_counter() - start)
    return response


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"the body has {declared} bytes; the limit is {limit}")
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise BadRequest(413, f"the body is over the limit of {limit} bytes")
    return body


async def answer_translate(server: Server, request: Request) -> Response:
    cfg = server.cfg
    if server.batcher is None:
        raise BadRequest(503, f"not ready: the model is {server.status}")
    parsed = parse_body(await read_body(request, cfg.max_body_bytes), cfg)
    try:
        decode = server.batcher.engine.settings(parsed.decode)
    except ValueError as error:
        raise BadRequest(422, first_line(error)) from None
    attention = parsed.attention and server.batcher.engine.has_attention
    start = time.perf_counter()
    job = asyncio.ensure_future(server.batcher.translate(parsed.sentences, decode, attention))
    if not await finished_unless_gone(job, request, cfg.request_timeout_s):
        return Response(status_code=499)  # the client has gone; nobody reads this
    results = job.result()
    body = {
        "translations": [translation_json(t, decode.n_best, attention) for t in results],
        "decode": {k: decode[k] for k in ("strategy", "beam_size", "length_penalty", "n_best")},
        "timing": {"queue_and_decode_ms": round(1000 * (time.perf_counter() - start), 1)},
    }
    if parsed.attention and not attention:
        body["warning"] = "no attention weights: they need engine=tensorflow"
    if parsed.single:
        body.update(body.pop("translations")[0])
    return JSONResponse(body)


async def finished_unless_gone(job: asyncio.Future, request: Request, timeout: float) -> bool:
    """Wait for `job`; cancel it when the client disconnects (False) or time runs out (503).
    Nothing polls: a crowd of waiting requests costs the event loop nothing until one ends."""
    gone = asyncio.ensure_future(disconnected(request))
    try:
        first = asyncio.FIRST_COMPLETED
        done, _ = await asyncio.wait({job, gone}, timeout=timeout, return_when=first)
    finally:
        gone.cancel()
    if job in done:
        return True
    job.cancel()
    if gone in done:
        return False
    raise BadRequest(503, f"no translation within {timeout:g} s; try again later")


async def disconnected(request: Request) -> None:
    """Returns when the client has gone (its body already read, the server's next message is
    the disconnect)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def translation_json(translation, n_best: int, attention: bool) -> dict:
    result = {"text": translation.text, "score": round(translation.score, 4)}
    if n_best > 1:
        result["n_best"] = [{"text": t, "score": round(s, 4)} for t, s in translation.n_best]
    if attention and translation.attention is not None:
        result["attention"] = attention_data(translation)
    if translation.truncated:
        result["truncated"] = True
    return result
