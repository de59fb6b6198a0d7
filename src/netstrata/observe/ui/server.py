"""The service-map web server: one page, its assets, and a small JSON/SSE API over a FlowStore.

Routes (GET and HEAD only; everything is read-only):

* `/`                      the page (`static/index.html`), `/static/<file>` its JS and CSS;
* `/api/map?FILTERS`       the service map of the matching flows (`servicemap.ServiceMap`);
* `/api/flows?FILTERS`     the newest matching flows as table rows (`last`, default 200);
* `/api/stream?FILTERS`    server-sent events: an `update` (map + rows) at once, then again
                           whenever matching flows arrive, at most every `COALESCE_S`;
* `/api/status`            store statistics and the source description.

FILTERS are `observe` flags (see `query.py`); a bad one is a 400 with observe's message.

Plain asyncio streams and a deliberately small HTTP/1.1 subset (one request per connection,
`Connection: close`): the page needs no more, and no web framework is needed for it. It binds
to loopback by default; it has no authentication, like `hubble ui` port-forwarded locally.
"""

from __future__ import annotations

import asyncio
import json
import logging
import mimetypes
import time
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Final
from urllib.parse import unquote, urlsplit

from netstrata.observe.servicemap import service_map
from netstrata.observe.store import FlowStore, SubscriptionClosed
from netstrata.observe.ui.query import FlowQuery, flow_row, parse_query, select

log = logging.getLogger(__name__)

MAX_HEAD: Final = 16 * 1024
"""Request line plus headers; a browser's GET is well under 4 KiB, and a cap keeps a client
that never ends its headers from growing our buffer (h11 caps incomplete events the same way)."""
COALESCE_S: Final = 0.25
"""New flows arriving within this window go out as one update: live within ~1 s, and a burst
of thousands of flows costs a few updates, not thousands."""
KEEPALIVE_S: Final = 15.0
"""An SSE comment this often lets us notice a browser that went away."""
ASSETS: Final = ("index.html", "app.js", "style.css", "favicon.svg")


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"


_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
}


def _json(status: int, data: object) -> Response:
    return Response(status, json.dumps(data, separators=(",", ":")).encode())


def _load_assets() -> dict[str, tuple[bytes, str]]:
    root = resources.files("netstrata.observe.ui") / "static"
    out: dict[str, tuple[bytes, str]] = {}
    for name in ASSETS:
        ctype = mimetypes.guess_type(name)[0] or "application/octet-stream"
        if ctype.startswith("text/") or ctype.endswith("javascript"):
            ctype += "; charset=utf-8"
        out[name] = ((root / name).read_bytes(), ctype)
    return out


class UIServer:
    """Serve the page for the flows of `store`. `source` is shown in the header."""

    def __init__(
        self, store: FlowStore, source: str = "", clock: Callable[[], int] = time.time_ns
    ) -> None:
        self.store = store
        self.source = source
        self.clock = clock
        self.assets = _load_assets()
        self._routes: dict[str, Callable[[FlowQuery], Response]] = {
            "/api/map": self._map,
            "/api/flows": self._flows,
            "/api/status": self._status,
        }

    # ---------------------------------------------------------------- views (no I/O)

    def update(self, query: FlowQuery) -> dict[str, object]:
        """The map and the newest rows for one query (what `/api/stream` sends)."""
        flows = select(list(self.store), query, self.clock())
        rows = [flow_row(f) for f in reversed(flows[-query.last :])]
        return {
            "map": service_map(flows).to_json(),
            "rows": rows,
            "matched": len(flows),
            "total": len(self.store),
        }

    def _map(self, query: FlowQuery) -> Response:
        flows = select(list(self.store), query, self.clock())
        return _json(200, service_map(flows).to_json())

    def _flows(self, query: FlowQuery) -> Response:
        flows = select(list(self.store), query, self.clock())
        return _json(
            200,
            {
                "rows": [flow_row(f) for f in reversed(flows[-query.last :])],
                "matched": len(flows),
                "total": len(self.store),
            },
        )

    def _status(self, _query: FlowQuery) -> Response:
        stats = self.store.statistics()
        return _json(
            200,
            {
                "source": self.source,
                "capacity": stats.capacity,
                "flows": stats.size,
                "seen": stats.seen,
                "overwritten": stats.overwritten,
                "followers": stats.followers,
            },
        )

    def respond(self, method: str, target: str) -> Response | FlowQuery:
        """The response to a request, or the query of a stream request (the caller streams)."""
        if method not in ("GET", "HEAD"):
            return _json(405, {"error": f"{method}: this page is read-only (GET, HEAD)"})
        url = urlsplit(target)
        path = unquote(url.path)
        if path == "/":
            path = "/static/index.html"
        if path.startswith("/static/"):
            asset = self.assets.get(path.removeprefix("/static/"))
            if asset is None:
                return _json(404, {"error": f"{path}: no such file"})
            return Response(200, asset[0], asset[1])
        handler = self._routes.get(path)
        if handler is None and path != "/api/stream":
            return _json(404, {"error": f"{path}: no such page"})
        try:
            query = parse_query(url.query)
            if handler is None:
                select([], query, self.clock())  # reject bad filters before streaming
                return query
            return handler(query)
        except ValueError as exc:
            return _json(400, {"error": str(exc)})

    # ------------------------------------------------------------------ connection

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """One connection: one request, one response (or one event stream)."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            await _send(writer, "GET", _json(431, {"error": "request head too large"}))
            return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()
            return
        request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
        parts = request_line.split(" ")
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            await _send(writer, "GET", _json(400, {"error": "not an HTTP/1.x request line"}))
            return
        method, target = parts[0], parts[1]
        result = self.respond(method, target)
        if isinstance(result, Response):
            await _send(writer, method, result)
            return
        await self._stream(writer, result)

    async def _stream(self, writer: asyncio.StreamWriter, query: FlowQuery) -> None:
        sub = self.store.subscribe()
        try:
            writer.write(
                b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                b"Cache-Control: no-store\r\nConnection: close\r\n\r\n"
            )
            await self._send_update(writer, query)
            while True:
                try:
                    async with asyncio.timeout(KEEPALIVE_S):
                        await sub.wait_new()
                except TimeoutError:
                    writer.write(b": keepalive\n\n")
                    await writer.drain()
                    continue
                await asyncio.sleep(COALESCE_S)
                sub.take_nowait()
                await self._send_update(writer, query)
        except (ConnectionError, SubscriptionClosed, ValueError):
            pass  # the browser left, the store closed, or the filters went bad (a `since`)
        finally:
            sub.close()
            writer.close()

    async def _send_update(self, writer: asyncio.StreamWriter, query: FlowQuery) -> None:
        data = json.dumps(self.update(query), separators=(",", ":"))
        writer.write(f"event: update\ndata: {data}\n\n".encode())
        await writer.drain()

    async def start(self, host: str, port: int) -> asyncio.Server:
        """Bind and start accepting (`serve_forever()` on the result keeps it running).

        Raises:
            OSError: the address cannot be bound (in use, not ours, bad host).
        """
        server = await asyncio.start_server(self._guarded, host, port, limit=MAX_HEAD)
        bound = server.sockets[0].getsockname()
        log.info("service map on http://%s:%d/", bound[0], bound[1])
        return server

    async def _guarded(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # The connection edge: a bug in one request is logged and that connection closed; the
        # server and every other page stay up.
        try:
            await self.handle(reader, writer)
        except Exception:
            log.exception("request failed")
            writer.close()


async def _send(writer: asyncio.StreamWriter, method: str, response: Response) -> None:
    head = (
        f"HTTP/1.1 {response.status} {_REASONS.get(response.status, 'Error')}\r\n"
        f"Content-Type: {response.content_type}\r\n"
        f"Content-Length: {len(response.body)}\r\n"
        "Cache-Control: no-store\r\nX-Content-Type-Options: nosniff\r\n"
        "Connection: close\r\n\r\n"
    )
    writer.write(head.encode("latin-1") + (b"" if method == "HEAD" else response.body))
    try:
        await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


__all__ = ["COALESCE_S", "MAX_HEAD", "Response", "UIServer"]
