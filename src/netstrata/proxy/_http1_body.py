"""HTTP/1.1 body readers and writers (RFC 9112 §6-7), for `proxy/http1.py`.

A reader consumes bytes from the connection's receive buffer and returns one `Data` or
`EndOfMessage` at a time, or None when it needs more bytes. Body bytes are handed out as soon as
they arrive, so a reader never holds more than one incomplete chunk-size line or trailer section
(both capped); the body itself is never buffered. A writer frames outgoing body bytes the way
the head it belongs to announced (Content-Length, chunked, or close-delimited).
"""

from __future__ import annotations

import re
from typing import Final, Protocol

from netstrata.proxy._http1_head import BLANK_LINE_RE, check_crlf, is_valid_field, parse_fields
from netstrata.proxy.errors import LocalProtocolError, RemoteProtocolError
from netstrata.proxy.http1_events import Data, EndOfMessage, Headers

_TOKEN: Final = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED: Final = rb'"(?:[\t\x20\x21\x23-\x5b\x5d-\x7e\x80-\xff]|\\[\t\x20-\x7e\x80-\xff])*"'
# chunk = chunk-size [ chunk-ext ] CRLF; chunk-ext = *( BWS ";" BWS name [ BWS "=" BWS val ] )
_CHUNK_LINE_RE: Final = re.compile(
    rb"([0-9A-Fa-f]{1,16})(?:[ \t]*;[ \t]*"
    + _TOKEN
    + rb"(?:[ \t]*=[ \t]*(?:"
    + _TOKEN
    + rb"|"
    + _QUOTED
    + rb"))?)*\Z"
)


class BodyReader(Protocol):
    def read(self, buf: bytearray, eof: bool) -> Data | EndOfMessage | None: ...


class BodyWriter(Protocol):
    def write(self, data: bytes) -> bytes: ...

    def finish(self, trailers: Headers) -> bytes: ...


def _take(buf: bytearray, n: int) -> bytes:
    out = bytes(buf[:n])
    del buf[:n]
    return out


class LengthReader:
    """Content-Length body (also the empty body of a bodiless message: length 0)."""

    def __init__(self, length: int, status: int) -> None:
        self._remaining = length
        self._status = status

    def read(self, buf: bytearray, eof: bool) -> Data | EndOfMessage | None:
        if self._remaining == 0:
            return EndOfMessage()
        if not buf:
            if eof:
                raise RemoteProtocolError("connection closed inside a body", hint=self._status)
            return None
        data = _take(buf, min(len(buf), self._remaining))
        self._remaining -= len(data)
        return Data(data)


class CloseReader:
    """A response body delimited by the server closing the connection (RFC 9112 §6.3 item 8)."""

    def read(self, buf: bytearray, eof: bool) -> Data | EndOfMessage | None:
        if buf:
            return Data(_take(buf, len(buf)))
        return EndOfMessage() if eof else None


class ChunkedReader:
    """Chunked transfer coding: size line, data, CRLF ... `0` line, trailer section."""

    def __init__(
        self, *, max_line: int, max_trailer: int, max_fields: int, max_body: int | None, status: int
    ) -> None:
        self._max_line = max_line
        self._max_trailer = max_trailer
        self._max_fields = max_fields
        self._max_body = max_body
        self._status = status
        self._state = "size"
        self._remaining = 0
        self._total = 0

    def read(self, buf: bytearray, eof: bool) -> Data | EndOfMessage | None:
        # each step returns an event, True (state advanced: go on) or False (needs more bytes)
        while True:
            result = _CHUNK_STEPS[self._state](self, buf)
            if result is True:
                continue
            if result is False:
                if eof:
                    raise RemoteProtocolError(
                        "connection closed inside a chunked body", hint=self._status
                    )
                return None
            return result

    def _step_size(self, buf: bytearray) -> bool:
        newline = buf.find(b"\n")
        if newline < 0:
            if len(buf) > self._max_line:
                raise RemoteProtocolError(
                    f"chunk-size line over {self._max_line} bytes", hint=self._status
                )
            return False
        if newline + 1 > self._max_line:
            raise RemoteProtocolError(
                f"chunk-size line over {self._max_line} bytes", hint=self._status
            )
        line = _take(buf, newline + 1)
        check_crlf(line, self._status)
        match = _CHUNK_LINE_RE.match(line[:-2])
        if not match:
            raise RemoteProtocolError(f"malformed chunk-size line {line[:40]!r}", hint=self._status)
        size = int(match.group(1), 16)
        if size == 0:
            self._state = "trailer"
            return True
        self._total += size
        if self._max_body is not None and self._total > self._max_body:
            raise RemoteProtocolError(f"body larger than {self._max_body} bytes", hint=413)
        self._remaining = size
        self._state = "data"
        return True

    def _step_data(self, buf: bytearray) -> Data | bool:
        if not buf:
            return False
        data = _take(buf, min(len(buf), self._remaining))
        self._remaining -= len(data)
        if self._remaining == 0:
            self._state = "data_crlf"
        return Data(data)

    def _step_data_crlf(self, buf: bytearray) -> bool:
        if len(buf) < 2:
            if bytes(buf[:1]) not in (b"", b"\r"):
                raise RemoteProtocolError("chunk data not followed by CRLF", hint=self._status)
            return False
        if _take(buf, 2) != b"\r\n":
            raise RemoteProtocolError("chunk data not followed by CRLF", hint=self._status)
        self._state = "size"
        return True

    def _step_trailer(self, buf: bytearray) -> EndOfMessage | bool:
        if buf[:2] == b"\r\n":
            del buf[:2]
            self._state = "done"
            return EndOfMessage()
        if buf[:1] == b"\n":
            raise RemoteProtocolError("bare LF line ending after last chunk", hint=self._status)
        match = BLANK_LINE_RE.search(buf)
        end = match.end() if match else -1
        if (end < 0 and len(buf) > self._max_trailer) or end > self._max_trailer:
            raise RemoteProtocolError(f"trailer section over {self._max_trailer} bytes", hint=431)
        if end < 0:
            return False
        section = _take(buf, end)
        check_crlf(section, self._status)
        lines = section[:-4].split(b"\r\n")
        trailers = parse_fields(lines, max_count=self._max_fields, status=self._status)
        self._state = "done"
        return EndOfMessage(trailers=trailers)

    def _step_done(self, buf: bytearray) -> EndOfMessage:
        return EndOfMessage()


_CHUNK_STEPS: Final = {
    "size": ChunkedReader._step_size,
    "data": ChunkedReader._step_data,
    "data_crlf": ChunkedReader._step_data_crlf,
    "trailer": ChunkedReader._step_trailer,
    "done": ChunkedReader._step_done,
}


def encode_fields(headers: Headers) -> bytes:
    """Field lines, each ending in CRLF. Raises LocalProtocolError on an unwritable field."""
    out = bytearray()
    for name, value in headers:
        if not is_valid_field(name, value):
            raise LocalProtocolError(f"refusing to write invalid header {name[:40]!r}")
        out += name.encode("ascii") + b": " + value.encode("latin-1") + b"\r\n"
    return bytes(out)


class LengthWriter:
    """Writes exactly the announced Content-Length (0 for bodiless messages)."""

    def __init__(self, length: int) -> None:
        self._remaining = length

    def write(self, data: bytes) -> bytes:
        if len(data) > self._remaining:
            raise LocalProtocolError("body longer than the announced Content-Length")
        self._remaining -= len(data)
        return data

    def finish(self, trailers: Headers) -> bytes:
        if self._remaining:
            raise LocalProtocolError(f"body {self._remaining} bytes short of its Content-Length")
        if trailers:
            raise LocalProtocolError("trailers need the chunked transfer coding")
        return b""


class ChunkedWriter:
    """Re-frames body bytes as chunks; empty writes produce nothing (a 0 chunk would end it)."""

    def write(self, data: bytes) -> bytes:
        if not data:
            return b""
        return b"%x\r\n" % len(data) + data + b"\r\n"

    def finish(self, trailers: Headers) -> bytes:
        return b"0\r\n" + encode_fields(trailers) + b"\r\n"


class CloseWriter:
    """A response body that ends when we close the connection."""

    def write(self, data: bytes) -> bytes:
        return data

    def finish(self, trailers: Headers) -> bytes:
        if trailers:
            raise LocalProtocolError("trailers need the chunked transfer coding")
        return b""


__all__ = [
    "BodyReader",
    "BodyWriter",
    "ChunkedReader",
    "ChunkedWriter",
    "CloseReader",
    "CloseWriter",
    "LengthReader",
    "LengthWriter",
    "encode_fields",
]
