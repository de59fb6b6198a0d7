"""Commands an enforcement layer yields to its adapter (after mitmproxy's `proxy/commands.py`).

Everything a layer wants done is a command, verdicts and log lines included, so a test can see
that one input produced exactly these effects (the Playbook tests). The adapter executes them in
order: writes are queued on the transport before the next command runs, so the bytes of one
answer never interleave with anything else.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Literal

from netstrata.observe.flow import Flow
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


@dataclass(frozen=True, slots=True)
class Verdict:
    """Emit an L7 flow record (a request's verdict or a response's outcome)."""

    flow: Flow = field(repr=False)
    """The Hubble flow, built by `observe.builders`."""


@dataclass(frozen=True, slots=True)
class Log:
    """A line for the proxy's log (explains the system; flows explain the traffic)."""

    message: str
    """What happened; never a header value, token or key."""
    level: int = logging.DEBUG
    """A `logging` level."""


Command = SendToClient | SendToServer | OpenServer | Close | Verdict | Log

__all__ = ["Close", "Command", "Log", "OpenServer", "SendToClient", "SendToServer", "Verdict"]
