"""Which requests the server answers at all, and how long it waits for one to arrive.

A web page the user visits may send requests to 127.0.0.1 too. Two checks keep such pages out:

- Host: DNS rebinding points a foreign name at this machine, so the page's requests carry that
  name in their Host header. Only the server's own names are answered: loopback names, the
  address it is bound to (with 0.0.0.0, this machine's names and addresses) and `allowed_hosts`.
- Origin: a browser names the page that sent a request. Only the server's own page (the same
  origin as the Host) and `allowed_origins` are answered; requests without Origin (curl,
  scripts) pass. Allowed origins get CORS headers from Starlette's CORSMiddleware.

Both refusals are 403 with a one-line JSON error. `DeadlineH11Protocol` closes connections
whose request headers do not arrive within the read deadline (uvicorn has no such limit: a
client sending a few bytes now and then could hold a connection forever).
"""

from __future__ import annotations

import json
import socket
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from uvicorn.protocols.http.h11_impl import H11Protocol

LOOPBACK_NAMES = {"localhost", "127.0.0.1", "::1"}
WILDCARDS = {"0.0.0.0", "::", ""}


def server_names(bind_host: str, allowed: Iterable[str]) -> set[str] | None:
    """The Host names to answer (lowercase, without port); None answers any ("*" allowed)."""
    allowed = {name.lower() for name in allowed}
    if "*" in allowed:
        return None
    names = LOOPBACK_NAMES | allowed | {bind_host.lower().strip("[]")}
    if bind_host in WILDCARDS:
        names |= own_names()
    return names - WILDCARDS


def own_names() -> set[str]:
    """This machine's host name, its fully qualified name and their addresses."""
    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    for name in list(names):
        try:
            names |= {info[4][0] for info in socket.getaddrinfo(name, None)}
        except OSError:
            continue
    return names


def host_name(host_header: str) -> str:
    """'Example.org:8000' -> 'example.org'; '[::1]:8000' -> '::1'."""
    host = host_header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    if host.count(":") == 1:
        return host.split(":")[0]
    return host


class GuardMiddleware:
    """ASGI middleware refusing (403) foreign Host names and foreign pages' requests.

    Args:
        app: the wrapped ASGI app.
        names: the Host names answered (`server_names`); None answers any.
        origins: origins besides the server's own allowed to call it ("*": any).
        refused: called with the status of each refused request (metrics).
    """

    def __init__(self, app, names: set[str] | None, origins: Iterable[str],
                 refused: Callable[[int], None] = lambda status: None):  # fmt: skip
        self.app = app
        self.names = names
        self.origins = {origin.lower().rstrip("/") for origin in origins}
        self.refused = refused

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        problem = self.problem(headers.get("host"), headers.get("origin"))
        if problem is None:
            return await self.app(scope, receive, send)
        self.refused(403)
        body = json.dumps({"error": problem}).encode()
        await send({"type": "http.response.start", "status": 403,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode())]})  # fmt: skip
        await send({"type": "http.response.body", "body": body})

    def problem(self, host: str | None, origin: str | None) -> str | None:
        """Why a request with these Host and Origin headers is refused, or None."""
        if host is not None and self.names is not None and host_name(host) not in self.names:
            return (f"Host {host_name(host)!r} is not one of this server's names; add it to "
                    "allowed_hosts in serve.yaml")  # fmt: skip
        if origin is None or "*" in self.origins or origin.lower().rstrip("/") in self.origins:
            return None
        if host is not None and urlsplit(origin.lower()).netloc == host.strip().lower():
            return None  # the server's own page
        return (f"requests from pages of {origin} are not allowed; add the origin to "
                "allowed_origins in serve.yaml")  # fmt: skip


class DeadlineH11Protocol(H11Protocol):
    """uvicorn's HTTP/1.1 protocol, closing a connection whose next request's headers have not
    all arrived `read_timeout_s` after it opened or after its first bytes (set by `serve`)."""

    read_timeout_s = 10.0

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._deadline = None
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is None or self.cycle.response_complete:
            self._arm()  # still waiting for a request's headers: the clock runs from the first
        elif self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None

    def connection_lost(self, exc) -> None:
        if self._deadline is not None:
            self._deadline.cancel()
        super().connection_lost(exc)

    def _arm(self) -> None:
        if self._deadline is None:
            self._deadline = self.loop.call_later(self.read_timeout_s, self._too_slow)

    def _too_slow(self) -> None:
        self._deadline = None
        waiting = self.cycle is None or self.cycle.response_complete
        if waiting and not self.transport.is_closing():
            self.transport.close()
