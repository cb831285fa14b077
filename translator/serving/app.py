"""The ASGI app: `POST /translate`, `GET /health`, `GET /metrics` and the page at `GET /`.

Errors are JSON objects with one line, `{"error": "..."}`, and a 4xx status for anything a client
sent; a failure of the server's own is a 500 naming a request id, its details only in the log.
Foreign Host names and foreign pages are refused (`guard.py`). The model loads and warms up in
the background, and `/health` says `ready` only after.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from contextlib import asynccontextmanager
from pathlib import Path

from omegaconf import DictConfig
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from translator.errors import TranslatorError, first_line
from translator.inference.engines import engine_name
from translator.inference.paragraphs import (
    per_sentence,
    rejoin,
    segment_texts,
    segmenter_for,
)
from translator.serving.answers import (
    attention_size,
    check_attention,
    encode,
    select_attention_of,
    translation_json,
)
from translator.serving.batcher import Batcher
from translator.serving.engine import Engine
from translator.serving.guard import GuardMiddleware, server_names
from translator.serving.metrics import ServerMetrics
from translator.serving.requests import BadRequest, parse_body
from translator.visualization.attention import HEATMAP_JS

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
        self.preparing: asyncio.Task | None = None
        self.segmenter = None  # the run's source language's, once loaded

    async def load(self) -> None:
        try:
            translator = await asyncio.to_thread(self.load_translator)
            engine = Engine(translator)
            warm = (engine.translate, [WARMUP_SENTENCE], translator.decode, engine.has_attention)
            await asyncio.to_thread(*warm)
            full = [WARMUP_LONG] * self.cfg.max_batch_size
            await asyncio.to_thread(engine.translate, full, translator.decode, False)
        except Exception as error:  # reported by /health; the process stays up to say so
            self.status = f"failed: {first_line(error)}"
            log.error("loading the run failed: %s", first_line(error))
            return
        self.run_dir = translator.run.path.name if translator.run else None  # no local paths
        self.segmenter = segmenter_for(translator, True)
        self.batcher = Batcher(engine, self.metrics, self.cfg.max_batch_size, self.cfg.max_wait_ms)
        self.batcher.start(on_failure=self.worker_failed)
        self.status = "ready"
        log.info("ready: %s", self.run_dir)
        self.preparing = asyncio.create_task(self.prepare_searches(engine))

    async def prepare_searches(self, engine: Engine) -> None:
        """Trace the search of every beam size a request may ask for, one at a time while no
        request is waiting, so that requests rarely pay for a trace (seconds each)."""
        for beam_size in range(1, self.cfg.max_beam_size + 1):
            settings = engine.settings({"beam_size": beam_size})
            await self.batcher.when_idle(lambda s=settings: engine.translate(
                [WARMUP_SENTENCE], s, False))  # fmt: skip
        log.info("searches ready for beam sizes 1 to %d", self.cfg.max_beam_size)

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
        if server.preparing is not None:
            server.preparing.cancel()
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
    names = server_names(cfg.host, cfg.get("allowed_hosts") or [])
    origins = list(cfg.get("allowed_origins") or [])
    middleware = [
        Middleware(GuardMiddleware, names=names, origins=origins,
                   refused=server.metrics.request_done),
        Middleware(CORSMiddleware, allow_origins=origins, allow_methods=["GET", "POST"],
                   allow_headers=["Content-Type"]),
    ]  # fmt: skip
    app = Starlette(routes=routes, lifespan=lifespan, middleware=middleware,
                    exception_handlers={HTTPException: http_error})  # fmt: skip
    app.state.server = server
    return app


async def timed(server: Server, handler) -> Response:
    """The handler's response, or the JSON error of a BadRequest; counted in the metrics."""
    start = time.perf_counter()
    try:
        response = await handler()
    except BadRequest as error:
        # A body not read in full (too slow, too large) leaves the connection unusable: close it.
        close = {"Connection": "close"} if error.status in (408, 413) else None
        response = JSONResponse({"error": str(error)}, status_code=error.status, headers=close)
    except ClientDisconnect:  # gone while sending its body: nobody reads an answer
        response = Response(status_code=499)
    except Exception:  # a bug or a failed batch: one JSON line, details only in the log
        request_id = secrets.token_hex(6)
        log.exception("request %s failed", request_id)
        message = f"internal error (request id {request_id}); the server log has the details"
        response = JSONResponse({"error": message, "request_id": request_id}, status_code=500)
    server.metrics.request_done(response.status_code, time.perf_counter() - start)
    return response


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The request's JSON body: at most `limit` bytes, received within `timeout` seconds."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type != "application/json":
        raise BadRequest(415, f"Content-Type must be application/json, not {media_type!r}")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise BadRequest(413, f"the body has {declared} bytes; the limit is {limit}")
    body = b""
    try:
        async with asyncio.timeout(timeout):
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise BadRequest(413, f"the body is over the limit of {limit} bytes")
    except TimeoutError:
        raise BadRequest(408, f"the body did not arrive within {timeout:g} s") from None
    return body


async def answer_translate(server: Server, request: Request) -> Response:
    cfg = server.cfg
    if server.batcher is None:
        raise BadRequest(503, f"not ready: the model is {server.status}")
    parsed = parse_body(await read_body(request, cfg.max_body_bytes, cfg.read_timeout_s), cfg)
    engine = server.batcher.engine
    try:
        decode = engine.settings(parsed.decode)
    except ValueError as error:
        raise BadRequest(422, first_line(error)) from None
    attention = parsed.attention if engine.has_attention else None
    if attention is not None:
        check_attention(attention, *engine.attention_shape)
    start = time.perf_counter()
    segmenter = server.segmenter if parsed.segment else None
    cut, sentences = None, parsed.sentences
    prefixes, constraints = parsed.prefixes, parsed.constraints
    if segmenter:  # the sentences of every text are translated together, then rejoined
        whole = [bool(p) for p in prefixes or [""] * len(sentences)]  # given a prefix or
        whole = [
            w or bool(c) for w, c in zip(whole, constraints or [[]] * len(sentences), strict=True)
        ]  # constraints: they stay whole
        cut, sentences = await asyncio.to_thread(segment_texts, parsed.sentences, segmenter,
                                                 whole)  # fmt: skip
        if len(sentences) > cfg.max_segments:
            raise BadRequest(413, f"the texts hold {len(sentences)} sentences; the limit is "
                                  f"{cfg.max_segments} (max_segments)")  # fmt: skip
        prefixes = per_sentence(cut, prefixes) if prefixes and any(prefixes) else None
        constraints = per_sentence(cut, constraints) if constraints else None
    done = []
    if sentences:  # (blank texts only: nothing to decode)
        job = asyncio.ensure_future(
            server.batcher.translate(
                sentences,
                decode,
                attention is not None,
                prefixes,
                cfg.alignment_layer if parsed.alignment else None,
                constraints,
            )
        )
        if not await finished_unless_gone(job, request, cfg.request_timeout_s):
            return Response(status_code=499)  # the client has gone; nobody reads this
        try:
            done = job.result()
        except TranslatorError as error:  # the request's own input: a prefix without room
            raise BadRequest(422, first_line(error)) from None
    results = done if cut is None else rejoin(cut, done)
    selected = [None] * len(results)
    if attention is not None:
        selected = [select_attention_of(t, attention) for t in results]
        size = attention_size(selected)
        if size > cfg.max_attention_weights:
            raise BadRequest(413, f"the attention asked for holds {size} weights; the limit is "
                                  f"{cfg.max_attention_weights} (max_attention_weights): ask for "
                                  'fewer kinds, layers or heads, or "heads": "mean"')  # fmt: skip
    body = {
        "translations": [
            translation_json(t, decode.n_best, a, cut is not None)
            for t, a in zip(results, selected, strict=True)
        ],
        "decode": {k: decode[k] for k in ("strategy", "beam_size", "length_penalty", "n_best")},
        "timing": {"queue_and_decode_ms": round(1000 * (time.perf_counter() - start), 1)},
    }
    if parsed.attention and attention is None:
        body["warning"] = "no attention weights: they need engine=tensorflow"
    if parsed.single:
        body.update(body.pop("translations")[0])
    if attention is None:
        return JSONResponse(body)
    content = await asyncio.to_thread(encode, body)  # large: serialised off the event loop
    return Response(content, media_type="application/json")


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
