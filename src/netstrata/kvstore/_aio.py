"""The asyncio adapter for watches: an async iterator that never blocks the loop.

The backend calls the watch's `notify` hook from whatever thread committed the change; the hook
only schedules `Event.set` on the loop, and the iterator drains the queue without blocking.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from netstrata.kvstore._interface import KVStore
from netstrata.kvstore._watch import DEFAULT_MAX_PENDING
from netstrata.kvstore.types import KVEvent


async def watch_events(store: KVStore, prefix: str, *, include_existing: bool = False,
                       max_pending: int = DEFAULT_MAX_PENDING) -> AsyncIterator[KVEvent]:
    """Yield every change under `prefix` until the watch or the store is closed.

    Raises:
        KVStoreUnavailable: the consumer fell behind and the watch was cut off.
    """
    loop = asyncio.get_running_loop()
    wakeup = asyncio.Event()

    def notify() -> None:
        loop.call_soon_threadsafe(wakeup.set)

    watch = store.watch_prefix(prefix, include_existing=include_existing,
                               max_pending=max_pending, notify=notify)
    try:
        while True:
            wakeup.clear()
            events = watch.drain()
            for event in events:
                yield event
            if not events:
                if watch.closed:
                    return
                await wakeup.wait()
    finally:
        watch.close()
