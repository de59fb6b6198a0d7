"""A Playbook for enforcement layers, after mitmproxy's `test/mitmproxy/proxy/tutils.py`.

    assert (
        Playbook(layer)
        >> ClientData(b"GET / HTTP/1.1\\r\\nHost: a\\r\\n\\r\\n")
        << Verdict_(lambda v: v.flow.verdict == FORWARDED)
        << OpenServer(("10.0.0.2", 80))
    )

`>>` feeds an event (at the playbook's clock), `<<` expects the next command it produced, in
order; every command of an event must be expected before the next `>>`. `Placeholder`
matches a command by type (and an optional predicate) and remembers it. `Log` commands are
skipped unless asked for. `.at(t)` moves the clock; `.timer()` calls `handle_timer(now)`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from netstrata.proxy.layers import Log


@dataclass
class Placeholder:
    """Matches any command of `kind` for which `check` holds; `()` gives the match."""

    kind: type
    check: Callable[[Any], bool] = field(default=lambda _: True)
    value: Any = None

    def matches(self, cmd: Any) -> bool:
        if isinstance(cmd, self.kind) and self.check(cmd):
            self.value = cmd
            return True
        return False

    def __call__(self) -> Any:
        assert self.value is not None, f"placeholder for {self.kind.__name__} never matched"
        return self.value


class Playbook:
    """Events in, expected commands out; `bool(playbook)` runs it."""

    def __init__(self, layer: Any, *, now: float = 1_000.0, logs: bool = False) -> None:
        self.layer = layer
        self.now = now
        self.logs = logs
        self.steps: list[tuple[str, Any]] = []
        self.transcript: list[str] = []

    def __rshift__(self, event: Any) -> Playbook:
        self.steps.append((">>", event))
        return self

    def __lshift__(self, cmd: Any) -> Playbook:
        self.steps.append(("<<", cmd))
        return self

    def at(self, now: float) -> Playbook:
        self.steps.append(("at", now))
        return self

    def timer(self) -> Playbook:
        self.steps.append(("timer", None))
        return self

    def _produced(self, cmds: list[Any]) -> list[Any]:
        return [c for c in cmds if self.logs or not isinstance(c, Log)]

    def __bool__(self) -> bool:
        queue: list[Any] = []
        for kind, item in self.steps:
            if kind in (">>", "timer"):
                if queue:
                    self._fail(f"unexpected commands before {item!r}: {queue!r}")
                cmds = (self.layer.handle(item, self.now) if kind == ">>"
                        else self.layer.handle_timer(self.now))
                self.transcript.append(f"{kind} {item!r}")
                queue = self._produced(cmds)
            elif kind == "at":
                self.now = item
            else:
                if not queue:
                    self._fail(f"expected {item!r}, got nothing")
                actual = queue.pop(0)
                ok = item.matches(actual) if isinstance(item, Placeholder) else item == actual
                if not ok:
                    self._fail(f"expected {item!r}\n     got {actual!r}")
                self.transcript.append(f"<< {actual!r}")
        if queue:
            self._fail(f"unexpected commands at the end: {queue!r}")
        self.steps.clear()
        return True

    def _fail(self, message: str) -> None:
        history = "\n".join(self.transcript[-12:])
        raise AssertionError(f"{message}\n--- transcript ---\n{history}")
