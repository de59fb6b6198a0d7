"""Kernel ring-buffer events as Hubble flows (a minimal form; the observability issue adds the
endpoint metadata and policy names Hubble shows).

The kernel stamps events with CLOCK_MONOTONIC; flows carry wall-clock time, so the agent
passes the offset between the two clocks, measured once when it starts reading.
"""

from __future__ import annotations

import time
from operator import itemgetter
from typing import Final
from uuid import UUID as _UUID

from netstrata.datapath.maps import FLOW_EVENT, EventFlag, EventType, FlowEvent, TracePoint
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


def flow_of(event: FlowEvent, node_name: str, offset_ns: int, *, uuid: str = "") -> Flow | None:
    """The Hubble flow of one kernel event; None for event types flows do not carry.
    `uuid` empty: a random one."""
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
        uuid=uuid or None,
    )


# ------------------------------------------------------------------- raw records, in bulk

_TYPE: Final = FLOW_EVENT.index("type")
_ENDPOINT: Final = FLOW_EVENT.index("endpoint_id")
_COOKIE: Final = FLOW_EVENT.index("cookie")
FLOW_TYPES: Final = frozenset(_KINDS)
"""Raw `type` values that become flows (`flow_of` returns None for the others)."""
METRIC_FIELDS: Final = tuple(FLOW_EVENT.index(name) for name in (
    "type", "subtype", "verdict", "direction", "match_type", "flags", "proto", "drop_reason",
    "proxy_port"))
"""The members a kernel flow's metric labels depend on (`Metrics.observe_flow`): records equal
on these count under the same labels, so a batch is counted once per distinct tuple."""
metric_key: Final = itemgetter(*METRIC_FIELDS)
_MASK64: Final = (1 << 64) - 1


def is_flow_record(values: tuple[object, ...]) -> bool:
    return values[_TYPE] in FLOW_TYPES


def record_uuid(values: tuple[object, ...], salt: int) -> str:
    """A UUID (v4 layout) that is a function of the record and the reader's salt: a record
    built into a flow lazily, once per reader, gets the same flow id every time. Two records
    agree only when every member does, kernel nanosecond timestamp included."""
    high = hash((salt, values)) & _MASK64
    low = hash((values, salt)) & _MASK64
    value = (high << 64) | low
    value = (value & ~(0xF000 << 64)) | (0x4000 << 64)  # version 4
    value = (value & ~(0xC << 60)) | (0x8 << 60)  # RFC 4122 variant
    return str(_UUID(int=value))


def flow_of_record(values: tuple[object, ...], node_name: str, offset_ns: int,
                   salt: int) -> Flow | None:
    """`flow_of` for one raw `struct flow_event` tuple (`KernelDatapath.read_raw_events`)."""
    return flow_of(FLOW_EVENT.from_values(values), node_name, offset_ns,
                   uuid=record_uuid(values, salt))


def rule_ref(values: tuple[object, ...]) -> tuple[int, int]:
    """(endpoint id, rule cookie) of a raw record, for the enricher."""
    return values[_ENDPOINT], values[_COOKIE]  # type: ignore[return-value]
