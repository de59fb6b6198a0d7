"""The proxies' L7 flows of one batch of lab probes, kept whole until the batch is judged.

`lab check` tells a Kafka request the proxy discards (CreateTopics: Cilium answers nothing)
from a kernel drop by the proxy's DROPPED flow for it, so every flow a batch makes must still
be there when the batch is judged. A bounded follower queue of the node's flow store is the
wrong tool for that: it drops the oldest flows when full, and a single client can fill it. In
seed-f, aiokafka's producer for a topic the proxy denies asks Metadata again after every
error-29 answer, ~2000 requests (4000 flows) in its 3 s wait, and a 4096-flow queue lost the
CreateTopics denial recorded at the start of the batch about half the time: the probe read
`dropped`. So the lab records each flow here as the proxy emits it (`record`, called beside
the node's `FlowHub.record`), and a drain takes the batch's flows with the count of any lost.

No I/O and no clock: the lab's event loop calls `record` and `drain`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from netstrata.observe import Flow

DEFAULT_CAP: Final = 32768
"""Flows held between two drains. The heaviest batch seen (seed-f) makes about 4000 on an idle
machine and a faster one makes more; 8x that leaves room, and the bound still caps what a
runaway client can make the lab hold (a flow is a few hundred bytes to a few kilobytes)."""


@dataclass(frozen=True, slots=True)
class L7Batch:
    """What a drain returns."""

    flows: tuple[Flow, ...]
    """The flows recorded since the last drain, oldest first."""
    lost: int
    """Flows recorded past the cap since the last drain, and so not in `flows`."""


class L7FlowLog:
    """Every L7 flow since the last drain, up to `cap`; the newest past the cap are counted,
    not kept (the early ones, such as a discard at the start of a batch, stay)."""

    def __init__(self, cap: int = DEFAULT_CAP) -> None:
        if cap < 1:
            raise ValueError("cap must be at least 1")
        self.cap = cap
        self._flows: list[Flow] = []
        self._lost = 0

    def record(self, flow: Flow) -> None:
        if len(self._flows) < self.cap:
            self._flows.append(flow)
        else:
            self._lost += 1

    def drain(self) -> L7Batch:
        batch = L7Batch(tuple(self._flows), self._lost)
        self._flows = []
        self._lost = 0
        return batch


__all__ = ["DEFAULT_CAP", "L7Batch", "L7FlowLog"]
