"""Pieces every sans-IO protocol core in `proxy/` shares: the sentinels and the EOF event.

`next_event()` of each core returns an event, `NEED_DATA` (feed more bytes) or, for cores that
pause, `PAUSED` (act before reading on). `ConnectionClosed` reports the peer's EOF at a message
boundary; EOF anywhere else is a `RemoteProtocolError`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, final


@final
class Sentinel:
    """A named singleton returned instead of an event."""

    __slots__ = ("_name",)

    def __init__(self, name: str) -> None:
        self._name = name

    def __repr__(self) -> str:
        return self._name


NEED_DATA: Final = Sentinel("NEED_DATA")
"""`next_event()` cannot make progress until `receive_data()` brings more bytes."""
PAUSED: Final = Sentinel("PAUSED")
"""`next_event()` will not read further until the caller acts (see the core's docstring)."""


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed its sending side at a message boundary."""


__all__ = ["NEED_DATA", "PAUSED", "ConnectionClosed", "Sentinel"]
