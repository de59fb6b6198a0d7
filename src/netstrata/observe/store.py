"""A bounded ring of flows (Hubble's ring buffer), follow-mode subscriptions, JSON-lines files.

`FlowStore` keeps the newest `capacity` flows; older ones are overwritten and counted. Queries
(`last`, `first`, `between`, `query`) never block. `subscribe()` gives a follower a bounded
queue; a follower that falls behind loses the *oldest* unread flows, and the loss is counted
and reported to it (Hubble sends a `lost_events` response in that case). `wait_new()` is the
only coroutine in this module.

Threading: `add()` wakes waiting followers through an `asyncio.Event`, so call it from the
event loop's thread (the ring-buffer reader runs there).

Files: `FlowLogWriter` appends one `hubble observe -o json` line per flow and rotates by size
(`flows.jsonl` -> `.1` -> `.2` ..., oldest dropped), like Hubble's flow exporter;
`read_flow_log` reads such a set back oldest-first, and also reads files `hubble observe -o
json` wrote, skipping non-flow responses.
"""

from __future__ import annotations

import asyncio
import heapq
import json
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeAlias

from netstrata.observe.filters import FlowFilter, compile_filters
from netstrata.observe.flow import Flow, dumps, from_json_dict, to_json_dict

RawRecord: TypeAlias = tuple[Any, ...]
"""A record the store's owner turns into a Flow only when a reader asks (`add_raw`)."""
Materialize: TypeAlias = Callable[[RawRecord], Flow]

DEFAULT_CAPACITY: Final = 4095
"""Hubble's default `hubble-event-buffer-capacity` (a power of two minus one)."""
DEFAULT_FOLLOW_QUEUE: Final = 1024
"""Per-follower backlog. Bounded so a stalled client costs memory it can name (STYLE.md:
queues between stages are bounded); the loss shows up as a counted lost-events notice."""


class SubscriptionClosed(Exception):
    """The subscription was closed (by its owner or the store) while waiting."""


@dataclass(frozen=True, slots=True)
class FollowBatch:
    """What one `wait_new()` returns: new flows in arrival order, and how many were lost."""

    flows: tuple[Flow, ...]
    lost: int = 0
    """Flows dropped from this follower's queue since the previous batch."""


@dataclass(frozen=True, slots=True)
class StoreStatistics:
    capacity: int
    size: int
    seen: int
    """Flows ever added."""
    overwritten: int
    """Flows pushed out of the ring by newer ones."""
    lost_to_followers: int
    """Flows dropped from followers' queues because they were full (all followers)."""
    followers: int


class Subscription:
    """A bounded, asyncio.Queue-like feed of new flows for one follower."""

    def __init__(self, store: FlowStore, maxsize: int) -> None:
        if maxsize < 1:
            raise ValueError("maxsize must be at least 1")
        self.maxsize = maxsize
        self._store = store
        self._items: deque[Flow | RawRecord] = deque()
        self._lost = 0
        self._closed = False
        self._event = asyncio.Event()

    def _offer(self, flow: Flow) -> int:
        """Queue a flow; returns how many were dropped to make room (0 or 1)."""
        dropped = 0
        if len(self._items) >= self.maxsize:
            self._items.popleft()
            self._lost += 1
            dropped = 1
        self._items.append(flow)
        self._event.set()
        return dropped

    def _offer_many(self, items: Sequence[Flow | RawRecord]) -> int:
        """Queue a batch; returns how many (oldest first) were dropped to make room."""
        self._items.extend(items)
        dropped = len(self._items) - self.maxsize
        if dropped <= 0:
            dropped = 0
        elif dropped >= len(self._items) // 2:
            self._items = deque(list(self._items)[dropped:])
        else:
            for _ in range(dropped):
                self._items.popleft()
        self._lost += dropped
        if items:
            self._event.set()
        return dropped

    def qsize(self) -> int:
        return len(self._items)

    def empty(self) -> bool:
        return not self._items

    def full(self) -> bool:
        return len(self._items) >= self.maxsize

    @property
    def closed(self) -> bool:
        return self._closed

    def get_nowait(self) -> Flow:
        """The oldest queued flow. Raises asyncio.QueueEmpty when there is none."""
        if not self._items:
            raise asyncio.QueueEmpty
        return self._store._flow(self._items.popleft())

    def take_nowait(self) -> FollowBatch:
        """Everything queued now, plus the loss count, without waiting."""
        batch = FollowBatch(tuple(self._store._flows(self._items)), self._lost)
        self._items.clear()
        self._lost = 0
        return batch

    async def wait_new(self) -> FollowBatch:
        """Wait until at least one flow (or a loss) is queued, then take everything.

        Raises:
            SubscriptionClosed: closed before anything arrived.
        """
        while not self._items and not self._lost:
            if self._closed:
                raise SubscriptionClosed
            self._event.clear()
            await self._event.wait()
        return self.take_nowait()

    def close(self) -> None:
        """Stop receiving flows and wake a waiting `wait_new()`."""
        if not self._closed:
            self._closed = True
            self._store._unsubscribe(self)
            self._event.set()


class FlowStore:
    """The newest `capacity` flows, in arrival order."""

    def __init__(self, capacity: int = DEFAULT_CAPACITY,
                 on_lost: Callable[[str, int], None] | None = None,
                 materialize: Materialize | None = None) -> None:
        """`on_lost(source, n)` is told about losses (e.g. `Metrics.lost_events`);
        `materialize` builds the Flow of a record given to `add_raw` (the same record must
        always give an equal Flow: records are built again for each reader)."""
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self.capacity = capacity
        self._ring: deque[Flow | RawRecord] = deque(maxlen=capacity)
        self._materialize = materialize
        self._seen = 0
        self._overwritten = 0
        self._lost_to_followers = 0
        self._subs: list[Subscription] = []
        self._on_lost = on_lost

    def add(self, flow: Flow) -> None:
        """Append a flow, overwriting the oldest when full, and feed every follower."""
        if len(self._ring) == self.capacity:
            self._overwritten += 1
        self._ring.append(flow)
        self._seen += 1
        lost = sum(sub._offer(flow) for sub in self._subs)
        if lost:
            self._lost_to_followers += lost
            if self._on_lost:
                self._on_lost("hubble_ring_buffer", lost)

    def add_raw(self, records: list[RawRecord]) -> None:
        """Append raw records (built into flows by `materialize` when read), overwriting the
        oldest when full, and feed every follower: one call per batch, nothing per record
        beyond the ring append, so the kernel's event rate is not bound by Flow building."""
        if not records:
            return
        if self._materialize is None:
            raise ValueError("this store has no materialize function for raw records")
        over = len(self._ring) + len(records) - self.capacity
        if over > 0:
            self._overwritten += over
        self._ring.extend(records)
        self._seen += len(records)
        lost = sum(sub._offer_many(records) for sub in self._subs)
        if lost:
            self._lost_to_followers += lost
            if self._on_lost:
                self._on_lost("hubble_ring_buffer", lost)

    def _flow(self, item: Flow | RawRecord) -> Flow:
        if type(item) is tuple:
            assert self._materialize is not None
            return self._materialize(item)
        return item  # type: ignore[return-value]

    def _flows(self, items: Iterable[Flow | RawRecord]) -> list[Flow]:
        return [self._flow(i) for i in items]

    def _built(self) -> list[Flow]:
        """The ring as flows; built records replace their raw form, so each is built once
        for all ring readers (followers build their own copies, equal by construction)."""
        flows = self._flows(self._ring)
        if len(flows) == len(self._ring):
            self._ring = deque(flows, maxlen=self.capacity)
        return flows

    def extend(self, flows: Iterable[Flow]) -> None:
        for flow in flows:
            self.add(flow)

    def __len__(self) -> int:
        return len(self._ring)

    def __iter__(self) -> Iterator[Flow]:
        return iter(self._built())

    def last(self, n: int) -> list[Flow]:
        """The newest `n` flows, oldest first (`hubble observe --last n`)."""
        return self._flows(list(self._ring)[-n:]) if n > 0 else []

    def first(self, n: int) -> list[Flow]:
        """The oldest `n` flows still held (`hubble observe --first n`)."""
        return self._flows(list(self._ring)[:n]) if n > 0 else []

    def between(self, since_ns: int | None = None, until_ns: int | None = None) -> list[Flow]:
        """Flows with since <= time <= until (either bound optional), in arrival order."""
        return [f for f in self._built() if (since_ns is None or f.time_ns >= since_ns)
                and (until_ns is None or f.time_ns <= until_ns)]

    def query(self, allow: Iterable[FlowFilter] = (), deny: Iterable[FlowFilter] = (),
              *, first: int = 0, last: int = 0) -> list[Flow]:
        """Matching flows; at most the `first` or `last` n of them (0 = no limit)."""
        if first and last:
            raise ValueError("cannot set both --first and --last")
        match = compile_filters(allow, deny)
        hits = [f for f in self._built() if match(f)]
        if first:
            return hits[:first]
        return hits[-last:] if last else hits

    def subscribe(self, maxsize: int = DEFAULT_FOLLOW_QUEUE) -> Subscription:
        """A follower's feed of flows added from now on (`hubble observe -f`)."""
        sub = Subscription(self, maxsize)
        self._subs.append(sub)
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)

    def close(self) -> None:
        """Close every subscription (their waiters raise SubscriptionClosed)."""
        for sub in list(self._subs):
            sub.close()

    def statistics(self) -> StoreStatistics:
        return StoreStatistics(self.capacity, len(self._ring), self._seen, self._overwritten,
                               self._lost_to_followers, len(self._subs))


def merge_flows(*sources: Iterable[Flow]) -> list[Flow]:
    """Flows of several stores (nodes) in one time order; ties keep source order (Hubble Relay
    sorts by time the same way)."""
    return list(heapq.merge(*(sorted(s, key=lambda f: f.time_ns) for s in sources),
                            key=lambda f: f.time_ns))


# --- JSON lines --------------------------------------------------------------------------------


def rotated_paths(path: Path, backups: int) -> list[Path]:
    """`path.N` ... `path.1`, `path`: the files of a rotated set, oldest first."""
    return [path.with_name(f"{path.name}.{i}") for i in range(backups, 0, -1)] + [path]


class FlowLogWriter:
    """Append flows as JSON lines; rotate before a line would push the file past `max_bytes`."""

    def __init__(self, path: str | os.PathLike[str], max_bytes: int = 10 * 1024 * 1024,
                 backups: int = 5) -> None:
        if max_bytes < 1 or backups < 0:
            raise ValueError("max_bytes must be positive and backups non-negative")
        self.path = Path(path)
        self.max_bytes = max_bytes
        self.backups = backups
        self._fh = self.path.open("a", encoding="utf-8")
        self._size = self.path.stat().st_size

    def write(self, flow: Flow) -> None:
        line = dumps(to_json_dict(flow)) + "\n"
        size = len(line.encode("utf-8"))
        if self._size and self._size + size > self.max_bytes:
            self._rotate()
        self._fh.write(line)
        self._size += size

    def _rotate(self) -> None:
        self._fh.close()
        if self.backups == 0:
            self.path.unlink(missing_ok=True)
        else:
            names = rotated_paths(self.path, self.backups)
            names[0].unlink(missing_ok=True)
            for older, newer in zip(names, names[1:], strict=False):
                if newer.exists():
                    newer.rename(older)
        self._fh = self.path.open("a", encoding="utf-8")
        self._size = 0

    def flush(self) -> None:
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> FlowLogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_flows(path: str | os.PathLike[str]) -> Iterator[Flow]:
    """Flows of one JSON-lines file; blank lines and non-flow responses are skipped.

    Raises:
        ValueError: a line is not JSON or not a well-formed flow (names file and line).
    """
    with Path(path).open(encoding="utf-8") as fh:
        for number, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                data = json.loads(line)
                if "flow" not in data and ("lost_events" in data or "node_status" in data):
                    continue
                yield from_json_dict(data)
            except (ValueError, TypeError, KeyError) as exc:
                raise ValueError(f"{path}:{number}: not a flow record: {exc}") from exc


def read_flow_log(path: str | os.PathLike[str], backups: int = 5) -> list[Flow]:
    """A rotated set written by `FlowLogWriter`, oldest file first."""
    out: list[Flow] = []
    for p in rotated_paths(Path(path), backups):
        if p.exists():
            out.extend(read_flows(p))
    return out


__all__ = [
    "DEFAULT_CAPACITY",
    "DEFAULT_FOLLOW_QUEUE",
    "FlowLogWriter",
    "FlowStore",
    "FollowBatch",
    "StoreStatistics",
    "Materialize",
    "RawRecord",
    "Subscription",
    "SubscriptionClosed",
    "merge_flows",
    "read_flow_log",
    "read_flows",
    "rotated_paths",
]
