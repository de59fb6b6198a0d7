"""Kernel ring-buffer events as Hubble flows (a minimal form; the observability issue adds the
endpoint metadata and policy names Hubble shows).

The kernel stamps events with CLOCK_MONOTONIC; flows carry wall-clock time, so the agent
passes the offset between the two clocks, measured once when it starts reading.
"""

from __future__ import annotations

import time
from typing import Final

from netstrata.datapath.maps import EventFlag, EventType, FlowEvent, TracePoint
from netstrata.observe import Endpoint, Flow, Packet, TraceObservationPoint, flow_from_l34
from netstrata.observe.builders import L34Event
from netstrata.observe.flow import TCPFlags
from netstrata.policy.types import Direction

_KINDS: Final[dict[int, L34Event]] = {EventType.DROP: "drop",
                                      EventType.POLICY_VERDICT: "policy-verdict",
                                      EventType.TRACE: "trace"}
_POINTS: Final[dict[int, TraceObservationPoint]] = {TracePoint.TO_ENDPOINT: TraceObservationPoint.TO_ENDPOINT,
                  TracePoint.FROM_ENDPOINT: TraceObservationPoint.FROM_ENDPOINT}
_TCP_BITS: Final = ("FIN", "SYN", "RST", "PSH", "ACK", "URG", "ECE", "CWR")


def monotonic_offset_ns() -> int:
    """Wall clock minus CLOCK_MONOTONIC, in nanoseconds."""
    return time.time_ns() - time.monotonic_ns()


def _tcp_flags_of(bits: int) -> TCPFlags:
    return TCPFlags(**{name: bool(bits & (1 << i)) for i, name in enumerate(_TCP_BITS)})


_TCP_FLAGS: Final = tuple(_tcp_flags_of(bits) for bits in range(256))
"""Every flag byte's TCPFlags, built once: they are frozen, so flows share them, and building one
per event was a tenth of `flow_of` (bench observe)."""


def _tcp_flags(bits: int) -> TCPFlags:
    return _TCP_FLAGS[bits & 0xFF]


def flow_of(event: FlowEvent, node_name: str, offset_ns: int) -> Flow | None:
    """The Hubble flow of one kernel event; None for event types flows do not carry."""
    kind = _KINDS.get(event.type)
    if kind is None:
        return None
    direction = Direction(event.direction)
    local = Endpoint(id=event.endpoint_id,
                     identity=event.src_identity if direction == Direction.EGRESS
                     else event.dst_identity)
    peer = Endpoint(identity=event.dst_identity if direction == Direction.EGRESS
                    else event.src_identity)
    src, dst = (local, peer) if direction == Direction.EGRESS else (peer, local)
    packet = Packet(str(event.saddr_be), str(event.daddr_be), event.proto, event.sport_be,
                    event.dport_be, _tcp_flags(event.tcp_flags) if event.proto == 6 else None,
                    event.icmp_type, event.icmp_code, src, dst)
    return flow_from_l34(
        packet, event=kind, direction=direction, time_ns=event.timestamp_ns + offset_ns,
        node_name=node_name, drop_reason=event.drop_reason or None,
        match_type=event.match_type, audited=bool(event.flags & EventFlag.AUDITED),
        proxy_port=event.proxy_port,
        observation_point=_POINTS.get(event.subtype, TraceObservationPoint.UNKNOWN_POINT)
        if kind == "trace" else TraceObservationPoint.TO_ENDPOINT,
        is_reply=bool(event.flags & EventFlag.IS_REPLY) if kind == "trace" else None,
    )
