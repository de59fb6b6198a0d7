"""The agent's local API: HTTP/1.1 + JSON on a unix socket and on TCP :9962 (docs/observe.md).

    GET /v1/status             the agent's status (JSON object)
    GET /v1/flows?FLAGS        matching flows as `hubble observe -o json` lines (NDJSON);
                               `follow=true` keeps the response open (chunked) and streams
    GET /metrics               Prometheus text exposition

Query parameters of `/v1/flows` are `observe` flags without their dashes, in order; the
agent parses them with the same code as the CLI (`observe.parse_observe_args`) and filters
before anything is sent.

One request per connection (`Connection: close`): the clients are curl, Prometheus, the CLI
and the service-map page, none of which needs keep-alive against a local agent, and it keeps
this server small. Request heads are capped at `MAX_HEAD` bytes (a local API has no reason to
accept more; a peer that sends more is answered 431 and dropped).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Final
from urllib.parse import parse_qsl, urlsplit

from netstrata.agent.flowhub import FlowHub
from netstrata.agent.tasks import spawn
from netstrata.observe import Flow, ObserveArgs, compile_filters, parse_observe_args
from netstrata.observe.flow import dumps, lost_events_dict, to_json_dict
from netstrata.observe.store import SubscriptionClosed

log = logging.getLogger(__name__)

METRICS_PORT: Final = 9962
"""Cilium's agent metrics port; inside the lab each agent has its node's namespace to itself."""
MAX_HEAD: Final = 16 * 1024
NDJSON: Final = "application/x-ndjson"
PROMETHEUS: Final = "text/plain; version=0.0.4; charset=utf-8"
_REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    404: "Not Found",
    405: "Method Not Allowed",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
}


class BadRequest(ValueError):
    """The client's request cannot be answered (status 400, message for the client)."""


def observe_argv(query: str) -> list[str]:
    """`from-pod=a&verdict=DROPPED&not=` -> `["--from-pod=a", "--verdict=DROPPED", "--not"]`."""
    argv = []
    for name, value in parse_qsl(query, keep_blank_values=True):
        if not name or name.startswith("-"):
            raise BadRequest(f"bad query parameter {name!r}: use flag names without dashes")
        argv.append(f"--{name}={value}" if value != "" else f"--{name}")
    return argv


def parse_flows_query(query: str, now_ns: int) -> ObserveArgs:
    try:
        return parse_observe_args(observe_argv(query), now_ns)
    except ValueError as exc:
        raise BadRequest(str(exc)) from exc


def select_history(hub: FlowHub, args: ObserveArgs) -> list[Flow]:
    """What a request gets before (or, without follow, instead of) streaming."""
    windowed = any(f.since_ns is not None for f in args.allow)
    if args.follow and not (args.last or args.first or args.everything or windowed):
        return []  # follow alone starts at "now", as `hubble observe -f` does
    return hub.store.query(args.allow, args.deny, first=args.first, last=args.last)


def _line(obj: dict[str, Any]) -> bytes:
    return (dumps(obj) + "\n").encode()


class AgentAPI:
    """Serves one agent's flows, status and metrics."""

    def __init__(self, hub: FlowHub, status: Callable[[], dict[str, Any]]) -> None:
        self.hub = hub
        self._status = status
        self._servers: list[asyncio.Server] = []
        self.unix_path: Path | None = None
        self.tcp_address: tuple[str, int] | None = None

    async def start_unix(self, path: Path) -> None:
        await asyncio.to_thread(_prepare_socket_path, path)
        server = await asyncio.start_unix_server(self._serve, path=os.fspath(path), limit=MAX_HEAD)
        os.chmod(path, 0o660)
        self._servers.append(server)
        self.unix_path = path

    async def start_tcp(self, host: str = "0.0.0.0", port: int = METRICS_PORT) -> None:
        server = await asyncio.start_server(
            self._serve, host, port, limit=MAX_HEAD, reuse_address=True
        )
        self._servers.append(server)
        sockname = server.sockets[0].getsockname()
        self.tcp_address = (sockname[0], sockname[1])

    async def close(self) -> None:
        for server in self._servers:
            server.close()
        for server in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(server.wait_closed(), 1.0)
        self._servers.clear()
        if self.unix_path is not None:
            self.unix_path.unlink(missing_ok=True)

    def listen_status(self) -> dict[str, str | None]:
        tcp = f"{self.tcp_address[0]}:{self.tcp_address[1]}" if self.tcp_address else None
        return {"unix": os.fspath(self.unix_path) if self.unix_path else None, "tcp": tcp}

    # ------------------------------------------------------------------------------ HTTP

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve_one(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass  # the client went away; nothing to tell it
        except Exception:
            log.exception("agent API: request failed")
            with contextlib.suppress(Exception):
                await self._send(
                    writer,
                    500,
                    "application/json",
                    _line({"error": "internal error; see the agent's log"}),
                )
        finally:
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _serve_one(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            await self._send(writer, 431, "application/json", _line({"error": "head too large"}))
            return
        method, target = _request_line(head)
        if method is None:
            await self._error(writer, 400, "malformed request line")
            return
        url = urlsplit(target)
        handler = _ROUTES.get(url.path)
        if handler is None:
            await self._error(
                writer, 404, f"no such path {url.path!r}; try /v1/flows, /v1/status or /metrics"
            )
            return
        if method not in ("GET", "HEAD"):
            await self._error(writer, 405, f"{method} not allowed; use GET")
            return
        try:
            await handler(self, url.query, reader, writer)
        except BadRequest as exc:
            await self._error(writer, 400, str(exc))

    async def _send(
        self, writer: asyncio.StreamWriter, status: int, ctype: str, body: bytes
    ) -> None:
        writer.write(_head(status, ctype, {"Content-Length": str(len(body))}) + body)
        await writer.drain()

    async def _error(self, writer: asyncio.StreamWriter, status: int, message: str) -> None:
        await self._send(writer, status, "application/json", _line({"error": message}))

    # --------------------------------------------------------------------------- routes

    async def _status_route(
        self, query: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        body = json.dumps(self._status(), default=str).encode() + b"\n"
        await self._send(writer, 200, "application/json", body)

    async def _metrics_route(
        self, query: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        await self._send(writer, 200, PROMETHEUS, self.hub.metrics.exposition())

    async def _flows_route(
        self, query: str, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        args = parse_flows_query(query, time.time_ns())
        if not args.follow:
            body = b"".join(_line(to_json_dict(f)) for f in select_history(self.hub, args))
            await self._send(writer, 200, NDJSON, body)
            return
        # Subscribe before reading the history, with no await between: nothing recorded in
        # between is missed or sent twice.
        sub = self.hub.store.subscribe()
        history = select_history(self.hub, args)
        watcher = spawn(_close_on_eof(reader, sub.close), name="agent API follower EOF")
        try:
            writer.write(_head(200, NDJSON, {"Transfer-Encoding": "chunked"}))
            await _chunk(writer, b"".join(_line(to_json_dict(f)) for f in history))
            match = compile_filters(args.allow, args.deny)
            while True:
                try:
                    batch = await sub.wait_new()
                except SubscriptionClosed:
                    break
                data = b""
                if batch.lost:
                    data += _line(
                        lost_events_dict(
                            batch.lost, "HUBBLE_RING_BUFFER", self.hub.node_name, time.time_ns()
                        )
                    )
                data += b"".join(_line(to_json_dict(f)) for f in batch.flows if match(f))
                await _chunk(writer, data)
            with contextlib.suppress(ConnectionError):
                writer.write(b"0\r\n\r\n")
                await writer.drain()
        finally:
            sub.close()
            watcher.cancel()


_ROUTES: Final = {
    "/v1/flows": AgentAPI._flows_route,
    "/v1/status": AgentAPI._status_route,
    "/metrics": AgentAPI._metrics_route,
}


def _prepare_socket_path(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # a previous agent of this node (kill -9) left it


def _request_line(head: bytes) -> tuple[str | None, str]:
    line = head.split(b"\r\n", 1)[0].decode("latin-1")
    parts = line.split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
        return None, ""
    return parts[0], parts[1]


def _head(status: int, ctype: str, extra: dict[str, str]) -> bytes:
    lines = [
        f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}",
        f"Content-Type: {ctype}",
        "Connection: close",
        "Cache-Control: no-store",
        *(f"{k}: {v}" for k, v in extra.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _chunk(writer: asyncio.StreamWriter, data: bytes) -> None:
    if data:
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        await writer.drain()


async def _close_on_eof(reader: asyncio.StreamReader, close: Callable[[], None]) -> None:
    """A follower sends nothing after its request; EOF means it hung up."""
    with contextlib.suppress(ConnectionError):
        while await reader.read(1024):
            pass
    close()


__all__ = [
    "METRICS_PORT",
    "AgentAPI",
    "BadRequest",
    "observe_argv",
    "parse_flows_query",
    "select_history",
]
