"""A client of the agent's local API (`agent/api.py`) over its unix socket.

`get()` fetches a whole answer; `stream_lines()` yields the NDJSON lines of a follow-mode
answer as their chunks arrive. Both speak just enough HTTP/1.1 for our own server (one request
per connection, `Content-Length`, chunked or close-delimited bodies).
"""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlencode

from netstrata.errors import NetstrataError

MAX_LINE: Final = 4 << 20
"""Largest single flow line accepted (a flow with many headers is a few KiB)."""


class AgentUnreachable(NetstrataError):
    """The agent's socket is missing or refuses connections (agent not running?)."""


class AgentRequestError(NetstrataError):
    """The agent answered with an error status; the message is its explanation."""


def flows_query(params: list[tuple[str, str]]) -> str:
    return urlencode(params)


async def _request(
    path: Path, target: str
) -> tuple[int, dict[str, str], asyncio.StreamReader, asyncio.StreamWriter]:
    try:
        reader, writer = await asyncio.open_unix_connection(os.fspath(path), limit=MAX_LINE)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise AgentUnreachable(
            f"agent API {path}: {exc.strerror or exc}; is the agent "
            "running? (`netstrata lab status`)"
        ) from exc
    writer.write(f"GET {target} HTTP/1.1\r\nHost: agent\r\nAccept: */*\r\n\r\n".encode())
    await writer.drain()
    head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
    lines = head.split("\r\n")
    status = int(lines[0].split(" ")[1])
    headers = {}
    for line in lines[1:]:
        key, sep, value = line.partition(":")
        if sep:
            headers[key.strip().lower()] = value.strip()
    return status, headers, reader, writer


async def _body_chunks(
    headers: dict[str, str], reader: asyncio.StreamReader
) -> AsyncIterator[bytes]:
    if headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            if size == 0:
                return
            data = await reader.readexactly(size)
            await reader.readexactly(2)
            yield data
    elif "content-length" in headers:
        yield await reader.readexactly(int(headers["content-length"]))
    else:
        yield await reader.read()


async def get(path: Path, target: str) -> bytes:
    """The whole body of `GET target`. Raises AgentRequestError on a non-200 answer."""
    status, headers, reader, writer = await _request(path, target)
    try:
        body = b"".join([c async for c in _body_chunks(headers, reader)])
    finally:
        writer.close()
    if status != 200:
        raise AgentRequestError(_error_text(path, status, body))
    return body


async def get_json(path: Path, target: str) -> dict[str, Any]:
    data = json.loads(await get(path, target))
    if not isinstance(data, dict):
        raise AgentRequestError(f"agent API {path}{target}: expected a JSON object")
    return data


async def stream_lines(path: Path, target: str) -> AsyncIterator[dict[str, Any]]:
    """Each NDJSON object of a (follow-mode) answer as soon as its chunk arrives."""
    status, headers, reader, writer = await _request(path, target)
    try:
        if status != 200:
            body = b"".join([c async for c in _body_chunks(headers, reader)])
            raise AgentRequestError(_error_text(path, status, body))
        pending = b""
        async for chunk in _body_chunks(headers, reader):
            pending += chunk
            *complete, pending = pending.split(b"\n")
            for line in complete:
                if line.strip():
                    yield json.loads(line)
    finally:
        writer.close()


def _error_text(path: Path, status: int, body: bytes) -> str:
    try:
        message = json.loads(body).get("error", "")
    except ValueError:
        message = body.decode(errors="replace").strip()
    return f"agent {path.stem}: {message or f'HTTP {status}'}"


__all__ = [
    "AgentRequestError",
    "AgentUnreachable",
    "flows_query",
    "get",
    "get_json",
    "stream_lines",
]
