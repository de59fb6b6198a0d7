"""A watch: a bounded, thread-safe queue of `KVEvent`s for one key prefix.

A backend pushes events while it commits, in commit order, so a consumer that drains a watch sees
every change under its prefix exactly once and in revision order. The queue is bounded: a consumer
that falls more than `max_pending` events behind is cut off (`lagged`), and its next read raises
`KVStoreUnavailable`, because silently dropping events would leave it with a wrong picture of
the store. The cure is the one etcd prescribes after a compaction: list again, then watch again.

Reads never block except `wait_event`, which is meant for a worker thread; the async adapter
(`netstrata.kvstore.watch_events`) uses the `notify` hook instead of blocking the loop.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator

from netstrata.errors import KVStoreUnavailable
from netstrata.kvstore.types import KVEvent

DEFAULT_MAX_PENDING = 65_536
"""Events a watch may hold before it is cut off. One full cluster's identity range (2^16) fits,
so a consumer that re-lists after an allocation storm is not cut off by that storm alone."""


class Watch:
    """Events under `prefix`, in revision order. Created by `KVStore.watch_prefix`."""

    def __init__(self, prefix: str, *, max_pending: int = DEFAULT_MAX_PENDING,
                 notify: Callable[[], None] | None = None,
                 on_close: Callable[[Watch], None] | None = None) -> None:
        if max_pending < 1:
            raise ValueError("max_pending must be at least 1")
        self.prefix = prefix
        self._max_pending = max_pending
        self._notify = notify
        self._on_close = on_close
        self._events: deque[KVEvent] = deque()
        self._cond = threading.Condition(threading.Lock())
        self._closed = False
        self._lagged = False

    # -- producer side (the backend, holding its own lock) -----------------------------------

    def matches(self, key: str) -> bool:
        return key.startswith(self.prefix)

    def push(self, event: KVEvent) -> None:
        """Queue one event; cuts the watch off instead of growing past `max_pending`."""
        with self._cond:
            if self._closed:
                return
            if len(self._events) >= self._max_pending:
                self._lagged = True
                self._closed = True
                self._events.clear()
            else:
                self._events.append(event)
            self._cond.notify_all()
        if self._notify is not None:
            # Must not block: typically `loop.call_soon_threadsafe(flag.set)`.
            self._notify()

    # -- consumer side ------------------------------------------------------------------------

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def lagged(self) -> bool:
        """True once the watch was cut off for falling behind (see module docstring)."""
        return self._lagged

    def pending(self) -> int:
        with self._cond:
            return len(self._events)

    def _check_lag_locked(self) -> None:
        # caller holds self._cond
        if self._lagged:
            raise KVStoreUnavailable(
                f"watch on prefix {self.prefix!r} fell more than {self._max_pending} events "
                "behind and was cut off; list the prefix again and open a new watch"
            )

    def get_nowait(self) -> KVEvent | None:
        """The next event, or None when none is queued.

        Raises:
            KVStoreUnavailable: the watch was cut off for lagging.
        """
        with self._cond:
            self._check_lag_locked()
            return self._events.popleft() if self._events else None

    def drain(self) -> list[KVEvent]:
        """Every queued event, oldest first (possibly empty).

        Raises:
            KVStoreUnavailable: the watch was cut off for lagging.
        """
        with self._cond:
            self._check_lag_locked()
            out = list(self._events)
            self._events.clear()
            return out

    def wait_event(self, timeout: float | None = None) -> KVEvent | None:
        """Block (a worker thread, never the event loop) until an event, close or timeout.

        Returns:
            The next event, or None on timeout or when the watch is closed and empty.
        """
        with self._cond:
            self._cond.wait_for(lambda: bool(self._events) or self._closed, timeout)
            self._check_lag_locked()
            return self._events.popleft() if self._events else None

    def __iter__(self) -> Iterator[KVEvent]:
        """Iterate over the events queued now; never blocks."""
        return iter(self.drain())

    def close(self) -> None:
        """Stop receiving events; idempotent. Queued events stay readable."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        if self._on_close is not None:
            self._on_close(self)
        if self._notify is not None:
            self._notify()

    def __enter__(self) -> Watch:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
