"""Commands an enforcement layer yields to its adapter (after mitmproxy's `proxy/commands.py`).

Everything a layer wants done is a command, verdicts and log lines included, so a test can see
that one input produced exactly these effects (the Playbook tests). The adapter executes them in
order: writes are queued on the transport before the next command runs, so the bytes of one
answer never interleave with anything else.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from netstrata.observe.flow import Flow, L7FlowType
from netstrata.observe.flow import Verdict as FlowVerdict
from netstrata.proxy.policy_source import Address


@dataclass(frozen=True, slots=True)
class SendToClient:
    """Write bytes to the client."""

    data: bytes
    """Bytes to write (never empty)."""


@dataclass(frozen=True, slots=True)
class SendToServer:
    """Write bytes to the upstream server (only after `ServerOpened`)."""

    data: bytes
    """Bytes to write (never empty)."""


@dataclass(frozen=True, slots=True)
class OpenServer:
    """Connect to the upstream; the adapter answers `ServerOpened` or `ServerOpenFailed`."""

    address: Address
    """Always the connection's original destination."""


@dataclass(frozen=True, slots=True)
class Close:
    """Close one side. Closing the client ends the whole proxied connection (the upstream too);
    bytes already sent are flushed first."""

    side: Literal["client", "server"]
    """Which connection."""


class Verdict:
    """Emit an L7 flow record (a request's verdict or a response's outcome).

    Either the flow itself, or (`Verdict.lazy`) what the proxy's counters need plus a function
    that builds the flow: a layer on the per-request path then builds the Hubble-shaped record
    only when something reads `flow` (the adapter does when a flow consumer is attached), not
    for every request of a proxy nobody observes.
    """

    __slots__ = ("_build", "_flow", "is_request", "verdict")

    def __init__(self, flow: Flow) -> None:
        self._flow: Flow | None = flow
        self._build: Callable[[], Flow] | None = None
        self.is_request = flow.l7 is not None and flow.l7.type == L7FlowType.REQUEST
        """A REQUEST record (what the proxy's forwarded/denied counters count)."""
        self.verdict = flow.verdict
        """The flow's verdict."""

    @classmethod
    def lazy(cls, is_request: bool, verdict: FlowVerdict, build: Callable[[], Flow]) -> Verdict:
        """A verdict whose flow `build()` makes on first use; `build` must only read values
        fixed when the verdict was made (it may run later, or never)."""
        self = cls.__new__(cls)
        self._flow, self._build = None, build
        self.is_request, self.verdict = is_request, verdict
        return self

    @property
    def flow(self) -> Flow:
        """The Hubble flow, built by `observe.builders` (once)."""
        flow = self._flow
        if flow is None:
            assert self._build is not None
            flow = self._flow = self._build()
            self._build = None
        return flow

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Verdict) and self.flow == other.flow

    __hash__ = None  # type: ignore[assignment]  # like the dataclass commands: eq, no hash

    def __repr__(self) -> str:
        return f"Verdict(is_request={self.is_request}, verdict={self.verdict.name})"


@dataclass(frozen=True, slots=True)
class Log:
    """A line for the proxy's log (explains the system; flows explain the traffic)."""

    message: str
    """What happened; never a header value, token or key."""
    level: int = logging.DEBUG
    """A `logging` level."""


Command = SendToClient | SendToServer | OpenServer | Close | Verdict | Log

__all__ = ["Close", "Command", "Log", "OpenServer", "SendToClient", "SendToServer", "Verdict"]
