"""Events of the HTTP/1.1 core (`proxy/http1.py`): what `next_event()` returns, what `send()` takes.

A message is always `RequestHead`/`ResponseHead`, then zero or more `Data`, then one
`EndOfMessage`. Interim 1xx responses arrive as `InformationalResponse` before the final head.
`NEED_DATA` and `PAUSED` are sentinels, not events (h11's design); they and `ConnectionClosed`
come from `proxy/sansio.py` and are re-exported here.

Header names keep their case and order as they came off the wire; values are the field value
with surrounding whitespace removed, decoded as ISO-8859-1 so that every byte maps to one
character and `value.encode("latin-1")` restores the wire bytes exactly. Lookups by name are
case-insensitive (RFC 9110 §5.1).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from netstrata.proxy.sansio import NEED_DATA, PAUSED, ConnectionClosed

Headers = tuple[tuple[str, str], ...]
"""(name, value) pairs in wire order, names in their original case."""


def get_header(headers: Headers, name: str) -> str | None:
    """The first value of `name` (case-insensitive), or None."""
    wanted = name.lower()
    for key, value in headers:
        if key.lower() == wanted:
            return value
    return None


def get_all_headers(headers: Headers, name: str) -> tuple[str, ...]:
    """Every value of `name` (case-insensitive), in wire order."""
    wanted = name.lower()
    return tuple(value for key, value in headers if key.lower() == wanted)


@dataclass(frozen=True, slots=True)
class RequestHead:
    """The request line and header section of one request."""

    method: str
    """Method token exactly as sent (case-sensitive, RFC 9110 §9.1)."""
    target: str
    """Request-target as on the wire, query included (RFC 9112 §3.2)."""
    version: str
    """`"1.1"` or `"1.0"`."""
    headers: Headers
    """Header fields in wire order."""
    host: str | None
    """Authority of the request: the absolute-form target's authority, else the Host header;
    None only for an HTTP/1.0 request without Host."""
    keep_alive: bool = True
    """False when this is the last request the connection may carry (RFC 9112 §9.3)."""
    content_length: int | None = None
    """Declared body length, or None when the body is chunked or absent."""
    chunked: bool = False
    """True when the body uses the chunked transfer coding."""

    @property
    def path(self) -> str:
        """What Envoy calls `:path`: the target for origin-form, the path-and-query of an
        absolute-form target, `*` for asterisk-form and `""` for CONNECT's authority-form."""
        if self.target.startswith("/") or self.target == "*":
            return self.target
        if self.method == "CONNECT":
            return ""
        after_scheme = self.target.split("://", 1)[1] if "://" in self.target else self.target
        slash = after_scheme.find("/")
        query = after_scheme.find("?")
        if slash == -1 or (query != -1 and query < slash):
            return "/" + (after_scheme[query:] if query != -1 else "")
        return after_scheme[slash:]

    def header(self, name: str) -> str | None:
        """First value of header `name` (case-insensitive), or None."""
        return get_header(self.headers, name)


@dataclass(frozen=True, slots=True)
class ResponseHead:
    """The status line and header section of one final (non-1xx) response."""

    status: int
    """Three-digit status code."""
    reason: str = ""
    """Reason phrase (informational only, may be empty)."""
    version: str = "1.1"
    """`"1.1"` or `"1.0"`."""
    headers: Headers = ()
    """Header fields in wire order."""
    keep_alive: bool = True
    """False when the connection closes after this response."""

    def header(self, name: str) -> str | None:
        """First value of header `name` (case-insensitive), or None."""
        return get_header(self.headers, name)


@dataclass(frozen=True, slots=True)
class InformationalResponse:
    """An interim 1xx response (100 Continue, 103 Early Hints); 101 ends HTTP on the connection."""

    status: int
    """100-199."""
    reason: str = ""
    """Reason phrase."""
    headers: Headers = ()
    """Header fields in wire order."""


@dataclass(frozen=True, slots=True)
class Data:
    """A piece of message body, transfer coding removed."""

    data: bytes
    """Body bytes (never empty when produced by the parser)."""


@dataclass(frozen=True, slots=True)
class EndOfMessage:
    """The message body is complete."""

    trailers: Headers = field(default=())
    """Trailer fields of a chunked body, in wire order."""


Event = RequestHead | ResponseHead | InformationalResponse | Data | EndOfMessage | ConnectionClosed

__all__ = [
    "NEED_DATA",
    "PAUSED",
    "ConnectionClosed",
    "Data",
    "EndOfMessage",
    "Event",
    "Headers",
    "InformationalResponse",
    "RequestHead",
    "ResponseHead",
    "get_all_headers",
    "get_header",
]
