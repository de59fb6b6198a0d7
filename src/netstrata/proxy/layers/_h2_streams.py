"""Per-stream state of the HTTP/2 layer, its limits, and the replies the proxy makes itself.

Kept apart from `http2.py` so that the layer module holds only the event dispatch. Nothing here
touches h2's connection objects; this module knows the wire values (status codes, gRPC status
codes, RFC 9113 error codes) and the bookkeeping one proxied stream needs.

gRPC local replies (what a gRPC client sees when the proxy answers itself): Cilium's
`cilium.l7policy` filter denies with Envoy's `sendLocalReply(403, "Access denied\\r\\n")`, and
Envoy turns a local reply to a gRPC request (content-type `application/grpc*`) into a
*trailers-only* response: `:status 200`, `content-type: application/grpc`, `grpc-status` mapped
from the HTTP status by gRPC's HTTP-to-gRPC table (403 -> 7 PERMISSION_DENIED, 503 -> 14
UNAVAILABLE, ...) and the body as a percent-encoded `grpc-message`. A grpcio client therefore
raises `StatusCode.PERMISSION_DENIED` with details `Access denied\\r\\n`. (Cilium's old gRPC
guide shows `CANCELLED, Received http2 header with status: 403`: the behaviour of an Envoy and
grpcio from before both sides adopted the mapping. A modern grpcio maps a bare 403 to
PERMISSION_DENIED too, so both shapes end in the same status code.)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Final

from netstrata.observe.builders import PolicyRef

# RFC 9113 §7 error codes (h2's ErrorCodes carries the same values).
NO_ERROR: Final = 0x0
PROTOCOL_ERROR: Final = 0x1
INTERNAL_ERROR: Final = 0x2
CANCEL: Final = 0x8
REFUSED_STREAM: Final = 0x7
ENHANCE_YOUR_CALM: Final = 0xB

GRPC_OK: Final = 0
GRPC_PERMISSION_DENIED: Final = 7
GRPC_UNAVAILABLE: Final = 14

_GRPC_FROM_HTTP: Final = {
    400: 13,
    401: 16,
    403: GRPC_PERMISSION_DENIED,
    404: 12,
    429: 14,
    502: 14,
    503: GRPC_UNAVAILABLE,
    504: 14,
}
"""gRPC's `http-grpc-status-mapping.md` table, which Envoy's `httpToGrpcStatus` follows."""

H2Headers = list[tuple[bytes, bytes]]


def grpc_status_for(http_status: int) -> int:
    """The gRPC status a local reply with `http_status` carries (2 UNKNOWN when unmapped)."""
    return _GRPC_FROM_HTTP.get(http_status, 2)


def percent_encode(text: bytes) -> bytes:
    """gRPC's `grpc-message` encoding: printable ASCII except `%` as is, the rest as %XX."""
    return "".join(
        chr(b) if 0x20 <= b <= 0x7E and b != 0x25 else f"%{b:02X}" for b in text
    ).encode()


def local_reply_headers(
    status: int, body: bytes, *, grpc: bool, date: str
) -> tuple[H2Headers, bytes]:
    """Headers and body of a reply the proxy makes itself, shaped like Envoy's.

    A gRPC request gets a trailers-only response (see the module docstring) and no body.
    """
    if grpc:
        headers = [
            (b":status", b"200"),
            (b"content-type", b"application/grpc"),
            (b"grpc-status", str(grpc_status_for(status)).encode()),
        ]
        if body:
            headers.append((b"grpc-message", percent_encode(body)))
        headers += [(b"date", date.encode()), (b"server", b"envoy")]
        return headers, b""
    return (
        [
            (b":status", str(status).encode()),
            (b"content-length", str(len(body)).encode()),
            (b"content-type", b"text/plain"),
            (b"date", date.encode()),
            (b"server", b"envoy"),
        ],
        body,
    )


@dataclass(frozen=True, slots=True)
class H2Limits:
    """Per-connection HTTP/2 limits; each is a DoS defence with its precedent."""

    max_concurrent_streams: int = 100
    """SETTINGS_MAX_CONCURRENT_STREAMS we advertise and enforce (RFC 9113 §5.1.2 recommends
    at least 100; nginx's `http2_max_concurrent_streams` is 128, Go's server 250). A client
    that opens more gets GOAWAY PROTOCOL_ERROR (h2 treats it as a connection error)."""
    max_header_list_size: int = 64 * 1024
    """SETTINGS_MAX_HEADER_LIST_SIZE, enforced on the *decoded* header list, so an HPACK bomb
    (small frames that expand through the dynamic table) stops here; over it: GOAWAY
    ENHANCE_YOUR_CALM. Envoy's `max_request_headers_kb` is 60 KiB, the HTTP/1.1 core's head cap
    is the same order."""
    max_frame_size: int = 16_384
    """SETTINGS_MAX_FRAME_SIZE (RFC 9113's minimum and default); larger frames: FRAME_SIZE_ERROR."""
    abuse_burst: int = 200
    """Frames that cost work but carry no request (RST_STREAM from the client, PING, SETTINGS,
    PRIORITY, empty DATA) draw from a token bucket of this size ..."""
    abuse_rate: float = 100.0
    """... refilled at this many per second. An empty bucket is GOAWAY ENHANCE_YOUR_CALM: the
    rapid-reset attack (CVE-2023-44487) opens and resets streams in a loop, which the
    concurrency limit alone never sees. Envoy counts the same frames
    (`max_inbound_priority_frames_per_stream`, `max_consecutive_inbound_frames_with_empty_payload`,
    the premature-reset check)."""


DEFAULT_H2_LIMITS: Final = H2Limits()


@dataclass(slots=True)
class Pending:
    """Bytes, trailers and end-of-stream owed to one side of a stream, sent as its flow-control
    window opens (the peer's window is the only buffer bound we need: we never acknowledge
    bytes to the sender before the receiver has taken them)."""

    data: bytearray = field(default_factory=bytearray)
    trailers: H2Headers | None = None
    end: bool = False
    finished: bool = False
    """END_STREAM (or the trailers carrying it) has been sent."""

    @property
    def owes_end(self) -> bool:
        return not self.finished and (self.end or self.trailers is not None)


@dataclass(slots=True)
class H2Stream:
    """One client stream and, when forwarded, its upstream twin."""

    client_id: int
    method: str
    url: str
    started: float
    grpc: bool
    request_headers: tuple[tuple[str, str], ...]
    upstream_headers: H2Headers = field(default_factory=list)
    forward: bool = False
    """True while the request goes upstream."""
    up_id: int | None = None
    policies: tuple[PolicyRef, ...] = ()
    revision: int = 0
    to_up: Pending = field(default_factory=Pending)
    to_client: Pending = field(default_factory=Pending)
    request_done: bool = False
    """The client ended (or reset) its side."""
    request_sent_at: float | None = None
    response_started: bool = False
    reset: bool = False
    """The stream was reset by either side or by us; nothing more is sent on it."""

    @property
    def finished(self) -> bool:
        return self.reset or (self.request_done and self.to_client.finished)


@dataclass(slots=True)
class TokenBucket:
    """A refill-on-read token bucket (time passed in, as everywhere in the cores)."""

    burst: float
    rate: float
    tokens: float = -1.0
    stamp: float = 0.0

    def take(self, now: float) -> bool:
        """Spend one token; False when the bucket is empty."""
        if self.tokens < 0:
            self.tokens, self.stamp = self.burst, now
        self.tokens = min(self.burst, self.tokens + max(0.0, now - self.stamp) * self.rate)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


__all__ = [
    "CANCEL",
    "DEFAULT_H2_LIMITS",
    "ENHANCE_YOUR_CALM",
    "GRPC_OK",
    "GRPC_PERMISSION_DENIED",
    "GRPC_UNAVAILABLE",
    "INTERNAL_ERROR",
    "NO_ERROR",
    "PROTOCOL_ERROR",
    "REFUSED_STREAM",
    "H2Headers",
    "H2Limits",
    "H2Stream",
    "Pending",
    "TokenBucket",
    "grpc_status_for",
    "local_reply_headers",
    "percent_encode",
]
