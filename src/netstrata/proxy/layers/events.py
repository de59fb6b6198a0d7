"""Events an enforcement layer receives from its adapter (after mitmproxy's `proxy/events.py`).

A layer is fed one event at a time, with the current time passed in beside it; it answers with
commands (`commands.py`). The adapter owns the sockets and the clock: it turns reads, EOFs and
connect results into these events and never interprets the bytes itself.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Start:
    """The client connection was accepted and identified; timers start now."""


@dataclass(frozen=True, slots=True)
class ClientData:
    """Bytes from the client."""

    data: bytes
    """Never empty (EOF is `ClientEof`)."""


@dataclass(frozen=True, slots=True)
class ClientEof:
    """The client closed its sending side (or the connection)."""


@dataclass(frozen=True, slots=True)
class ServerOpened:
    """The upstream connection asked for by `OpenServer` is up."""


@dataclass(frozen=True, slots=True)
class ServerOpenFailed:
    """The upstream connection could not be made."""

    reason: str
    """Human-readable cause (`connection refused`, `timed out`)."""


@dataclass(frozen=True, slots=True)
class ServerData:
    """Bytes from the upstream server."""

    data: bytes
    """Never empty (EOF is `ServerEof`)."""


@dataclass(frozen=True, slots=True)
class ServerEof:
    """The upstream server closed its sending side (or the connection)."""


Event = Start | ClientData | ClientEof | ServerOpened | ServerOpenFailed | ServerData | ServerEof

__all__ = [
    "ClientData",
    "ClientEof",
    "Event",
    "ServerData",
    "ServerEof",
    "ServerOpenFailed",
    "ServerOpened",
    "Start",
]
