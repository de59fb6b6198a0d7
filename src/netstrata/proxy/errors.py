"""Errors of the proxy's sans-IO protocol cores (HTTP/1.1, Kafka, DNS).

Two kinds, named after who broke the conversation (STYLE.md, after h11 and trio):

* `RemoteProtocolError`: the peer sent bytes that violate the protocol. The adapter answers with
  `hint` where the protocol allows an answer (an HTTP status, a Kafka error code, a DNS RCODE)
  and then closes, or just closes.
* `LocalProtocolError`: our own caller misused a core (sent a response before any request, wrote
  more body than the Content-Length it announced). That is a bug in netstrata, never the peer's
  fault; `hint` is what a server should still tell the peer (HTTP 500 by default).

The hint's meaning depends on the protocol that raised it, which the raising module documents:
an HTTP status code (400, 413, 414, 431, 501, 505, 502 for an upstream's garbage), a Kafka error
code (42 INVALID_REQUEST), or a DNS RCODE (1 FORMERR).
"""

from __future__ import annotations

from netstrata.errors import NetstrataError


class ProtocolError(NetstrataError):
    """Base of both protocol error kinds; `str()` is the human-readable reason."""

    def __init__(self, message: str, *, hint: int) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        """The wire answer this error suggests: HTTP status, Kafka error code or DNS RCODE."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.message!r}, hint={self.hint})"


class RemoteProtocolError(ProtocolError):
    """The peer sent something the protocol forbids; answer with `hint` (if any) and close."""


class LocalProtocolError(ProtocolError):
    """Our caller misused a protocol core; a netstrata bug, not the peer's fault."""

    def __init__(self, message: str, *, hint: int = 500) -> None:
        super().__init__(message, hint=hint)


__all__ = ["LocalProtocolError", "ProtocolError", "RemoteProtocolError"]
