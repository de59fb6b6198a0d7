"""Named, owned asyncio tasks: the one sanctioned way to start one (`create_task` is banned).

A task nobody references can be garbage-collected mid-flight, and an anonymous one is
impossible to find in a dump; `spawn()` names every task and keeps a strong reference until
it finishes (mitmproxy's `asyncio_utils.create_task` does the same). An exception that ends a
task is logged with the task's name the moment it happens, not when someone awaits it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

_running: set[asyncio.Task[Any]] = set()


def spawn(coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
    """Start `coro` as a task called `name` and keep it alive until it finishes."""
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _running.add(task)
    task.add_done_callback(_finished)
    return task


def _finished(task: asyncio.Task[Any]) -> None:
    _running.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.error("task %s failed", task.get_name(), exc_info=task.exception())


def running() -> list[str]:
    """Names of the tasks spawned and not finished yet (for status and tests)."""
    return sorted(t.get_name() for t in _running)
