"""Helpers for the proxy core tests: feed a parser whole, byte by byte, or with trailing bytes
(h11's `test_io.py` discipline), and drain its events."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

from netstrata.proxy.http1_events import Data
from netstrata.proxy.sansio import NEED_DATA, PAUSED

FUZZ_EXAMPLES = 2000 if os.environ.get("NETSTRATA_HYPOTHESIS") == "deep" else 150
"""Hypothesis examples per fuzz test: `fast` by default, `deep` when the env var says so."""

SPLITS = ("whole", "bytewise", "halves")


def chunks(data: bytes, how: str) -> Iterable[bytes]:
    """`data` cut the way `how` says."""
    if how == "whole":
        yield data
    elif how == "bytewise":
        for i in range(len(data)):
            yield data[i : i + 1]
    elif how == "halves":
        yield data[: len(data) // 2]
        yield data[len(data) // 2 :]
    else:
        raise ValueError(how)


def drain(parser: Any) -> list[Any]:
    """Events until NEED_DATA or PAUSED (the sentinel is not included)."""
    out: list[Any] = []
    while True:
        event = parser.next_event()
        if event is NEED_DATA or event is PAUSED:
            return out
        out.append(event)
        if type(event).__name__ == "ConnectionClosed":
            return out


def feed(parser: Any, data: bytes, how: str = "whole", *, eof: bool = False) -> list[Any]:
    """Feed `data` cut as `how` says, draining after each piece; coalesce Data events."""
    events: list[Any] = []
    for piece in chunks(data, how):
        parser.receive_data(piece)
        events.extend(drain(parser))
    if eof:
        parser.receive_data(b"")
        events.extend(drain(parser))
    return coalesce(events)


def coalesce(events: list[Any]) -> list[Any]:
    """Merge consecutive Data events, so byte-by-byte feeding compares equal to whole."""
    out: list[Any] = []
    for event in events:
        if isinstance(event, Data) and out and isinstance(out[-1], Data):
            out[-1] = Data(out[-1].data + event.data)
        else:
            out.append(event)
    return out


def every_split(make: Callable[[], Any], data: bytes, **kwargs: Any) -> list[Any]:
    """Feed fresh parsers every way; assert they agree and return the events."""
    results = [feed(make(), data, how, **kwargs) for how in SPLITS]
    assert results[0] == results[1] == results[2], results
    return results[0]
