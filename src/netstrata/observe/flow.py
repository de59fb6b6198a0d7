"""Flow records in Hubble's shape, and their JSON exactly as `hubble observe -o json` prints it.

A `Flow` mirrors `flow.Flow` of Cilium's `api/v1/flow/flow.proto` (reference §4.1-4.4) for the
fields netstrata produces. Python attribute names are snake_case; the JSON keys are the proto
field names verbatim (`IP`, `Type`, `Summary`, `ID`, `ipVersion`), as protojson writes them with
`UseProtoNames`. The codec follows protojson's rules, which is what makes the output
byte-compatible with Hubble tooling:

* keys appear in proto *declaration* order (not field-number order);
* scalars at their zero value, empty lists and unset messages are omitted; a set message whose
  fields are all zero is written as `{}`;
* enums are written as their names (a value outside the enum as its number);
* 64-bit integers (`latency_ns`, `revision`) are written as decimal strings;
* `google.protobuf.Timestamp` is RFC 3339 in UTC with 0, 3, 6 or 9 fractional digits;
* `google.protobuf.BoolValue` (`is_reply`) is a bare bool, present whenever it is set.

Hubble's printer then passes the result through Go's `json.Encoder`, which escapes `<`, `>`,
`&`, U+2028 and U+2029; `dumps` reproduces that. `Flow.drop_reason` holds the code; the JSON
carries it twice, as the deprecated number `drop_reason` and by name in `drop_reason_desc`; the
deprecated `reply` bool is written from `is_reply`, as Cilium's parsers fill both.

This module knows nothing of sockets, the kernel or asyncio; `builders.py` makes flows from
datapath and proxy decisions and `render.py` prints them.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field, fields, is_dataclass
from datetime import UTC, datetime
from enum import IntEnum
from typing import Any, Final, get_args, get_origin, get_type_hints

from netstrata.datapath.drop_reasons import DropReason

# --- enums (names and numbers are the proto's) -----------------------------------------------


class Verdict(IntEnum):
    VERDICT_UNKNOWN = 0
    FORWARDED = 1
    DROPPED = 2
    ERROR = 3
    AUDIT = 4
    REDIRECTED = 5
    TRACED = 6
    TRANSLATED = 7


class FlowType(IntEnum):
    UNKNOWN_TYPE = 0
    L3_L4 = 1
    L7 = 2
    SOCK = 3


class AuthType(IntEnum):
    DISABLED = 0
    SPIRE = 1
    TEST_ALWAYS_FAIL = 2


class TrafficDirection(IntEnum):
    TRAFFIC_DIRECTION_UNKNOWN = 0
    INGRESS = 1
    EGRESS = 2


class TraceObservationPoint(IntEnum):
    UNKNOWN_POINT = 0
    TO_PROXY = 1
    TO_HOST = 2
    TO_STACK = 3
    TO_OVERLAY = 4
    TO_ENDPOINT = 101
    FROM_ENDPOINT = 5
    FROM_PROXY = 6
    FROM_HOST = 7
    FROM_STACK = 8
    FROM_OVERLAY = 9
    FROM_NETWORK = 10
    TO_NETWORK = 11
    FROM_CRYPTO = 12
    TO_CRYPTO = 13


class TraceReason(IntEnum):
    TRACE_REASON_UNKNOWN = 0
    NEW = 1
    ESTABLISHED = 2
    REPLY = 3
    RELATED = 4
    REOPENED = 5
    SRV6_ENCAP = 6
    SRV6_DECAP = 7
    ENCRYPT_OVERLAY = 8


class IPVersion(IntEnum):
    IP_NOT_USED = 0
    IPv4 = 1
    IPv6 = 2


class L7FlowType(IntEnum):
    UNKNOWN_L7_TYPE = 0
    REQUEST = 1
    RESPONSE = 2
    SAMPLE = 3


class EventKind(IntEnum):
    """`event_type.type`: Cilium's monitor message types (reference §4.3)."""

    UNSPEC = 0
    DROP = 1
    DEBUG = 2
    CAPTURE = 3
    TRACE = 4
    POLICY_VERDICT = 5
    TRACE_SOCK = 7
    ACCESS_LOG = 129
    AGENT = 130


EVENT_KIND_NAMES: Final[dict[str, EventKind]] = {
    "drop": EventKind.DROP,
    "debug": EventKind.DEBUG,
    "capture": EventKind.CAPTURE,
    "trace": EventKind.TRACE,
    "l7": EventKind.ACCESS_LOG,
    "agent": EventKind.AGENT,
    "policy-verdict": EventKind.POLICY_VERDICT,
    "trace-sock": EventKind.TRACE_SOCK,
}
"""`hubble observe --type` names (Cilium `monitorAPI.MessageTypeNames`)."""

TRACE_SUBTYPE_NAMES: Final[dict[int, str]] = {
    0: "to-endpoint", 1: "to-proxy", 2: "to-host", 3: "to-stack", 4: "to-overlay",
    5: "from-endpoint", 6: "from-proxy", 7: "from-host", 8: "from-stack", 9: "from-overlay",
    10: "from-network", 11: "to-network", 12: "from-crypto", 13: "to-crypto",
}
"""Trace event sub_type -> name, as `hubble observe` prints and accepts them (reference §4.3)."""


def trace_subtype(point: TraceObservationPoint) -> int:
    """The trace event `sub_type` of an observation point: the proto numbers them alike except
    TO_ENDPOINT, which is 101 in the proto and 0 (`TRACE_TO_LXC`) on the wire."""
    return 0 if point == TraceObservationPoint.TO_ENDPOINT else int(point)


RESERVED_IDENTITY_NAMES: Final[dict[int, str]] = {
    0: "unknown", 1: "host", 2: "world", 3: "unmanaged", 4: "health", 5: "init",
    6: "remote-node", 7: "kube-apiserver", 8: "ingress", 9: "world-ipv4", 10: "world-ipv6",
}
"""Cilium's `reservedIdentityNames` (reference §2.2): what the compact printer shows as
`(world)` instead of `(ID:2)`. Identity 0 prints as `(unknown)`, as in Hubble."""

MATCH_TYPE_NAMES: Final[dict[int, str]] = {
    0: "none", 1: "L3-Only", 2: "L3-L4", 3: "L4-Only", 4: "all", 5: "L3-Proto", 6: "Proto-Only",
}
"""`policy_match_type` -> the text in `policy-verdict:<match> INGRESS` (Cilium `PolicyMatchType`)."""

DNS_RCODE_NAMES: Final[dict[int, str]] = {
    0: "No Error", 1: "Format Error", 2: "Server Failure", 3: "Non-Existent Domain",
    4: "Not Implemented", 5: "Query Refused", 6: "Name Exists when it should not",
    7: "RR Set Exists when it should not", 8: "RR Set that should exist does not",
    9: "Server Not Authoritative for zone", 10: "Name not contained in zone",
    16: "Bad OPT Version",
}
"""DNS RCODE texts as Hubble's summaries and DNS metrics print them (gopacket's names)."""


# --- messages ----------------------------------------------------------------------------------


def _u64(json_name: str | None = None) -> Any:
    """Field metadata: a proto uint64, which protojson writes as a decimal string."""
    return field(default=0, metadata={"u64": True, **({"json": json_name} if json_name else {})})


@dataclass(frozen=True, slots=True)
class Workload:
    name: str = ""
    kind: str = ""


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One side of a flow (reference §4.2). `labels` are `source:key=value` strings, sorted."""

    id: int = field(default=0, metadata={"json": "ID"})
    """Cilium endpoint id on its node; 0 for peers that are not local endpoints."""
    identity: int = 0
    """Numeric security identity (2/9/10 for world peers)."""
    cluster_name: str = ""
    namespace: str = ""
    labels: tuple[str, ...] = ()
    pod_name: str = ""
    workloads: tuple[Workload, ...] = ()


@dataclass(frozen=True, slots=True)
class Ethernet:
    source: str = ""
    destination: str = ""


@dataclass(frozen=True, slots=True)
class IP:
    source: str = ""
    source_xlated: str = ""
    destination: str = ""
    ip_version: IPVersion = field(default=IPVersion.IP_NOT_USED, metadata={"json": "ipVersion"})
    encrypted: bool = False


@dataclass(frozen=True, slots=True)
class TCPFlags:
    FIN: bool = False
    SYN: bool = False
    RST: bool = False
    PSH: bool = False
    ACK: bool = False
    URG: bool = False
    ECE: bool = False
    CWR: bool = False
    NS: bool = False

    def names(self) -> list[str]:
        """Set flags in the order Cilium's summary lists them (`TCP Flags: SYN, ACK`)."""
        order = ("SYN", "ACK", "RST", "FIN", "PSH", "URG", "ECE", "CWR", "NS")
        return [n for n in order if getattr(self, n)]


@dataclass(frozen=True, slots=True)
class TCP:
    source_port: int = 0
    destination_port: int = 0
    flags: TCPFlags | None = None


@dataclass(frozen=True, slots=True)
class UDP:
    source_port: int = 0
    destination_port: int = 0


@dataclass(frozen=True, slots=True)
class SCTP:
    source_port: int = 0
    destination_port: int = 0


@dataclass(frozen=True, slots=True)
class ICMPv4:
    type: int = 0
    code: int = 0


@dataclass(frozen=True, slots=True)
class ICMPv6:
    type: int = 0
    code: int = 0


Layer4 = TCP | UDP | ICMPv4 | ICMPv6 | SCTP
"""The `l4` oneof; the JSON key is the class name (`{"TCP": {...}}`)."""
_L4_TYPES: Final = {"TCP": TCP, "UDP": UDP, "ICMPv4": ICMPv4, "ICMPv6": ICMPv6, "SCTP": SCTP}


@dataclass(frozen=True, slots=True)
class HTTPHeader:
    key: str = ""
    value: str = ""


@dataclass(frozen=True, slots=True)
class HTTP:
    code: int = 0
    """Response status; Cilium leaves it 0 on request records."""
    method: str = ""
    url: str = ""
    protocol: str = ""
    headers: tuple[HTTPHeader, ...] = ()


@dataclass(frozen=True, slots=True)
class DNS:
    query: str = ""
    """Fully qualified, with the trailing dot (`example.com.`)."""
    ips: tuple[str, ...] = ()
    ttl: int = 0
    cnames: tuple[str, ...] = ()
    observation_source: str = ""
    rcode: int = 0
    qtypes: tuple[str, ...] = ()
    rrtypes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Kafka:
    error_code: int = 0
    api_version: int = 0
    api_key: str = ""
    correlation_id: int = 0
    topic: str = ""


L7Record = HTTP | DNS | Kafka
_L7_KEYS: Final = {"dns": DNS, "http": HTTP, "kafka": Kafka}


@dataclass(frozen=True, slots=True)
class Layer7:
    type: L7FlowType = L7FlowType.UNKNOWN_L7_TYPE
    latency_ns: int = _u64()
    record: L7Record | None = None
    """The `record` oneof: JSON key `dns`, `http` or `kafka`."""


@dataclass(frozen=True, slots=True)
class EventType:
    """`CiliumEventType`: the monitor message type and its sub-type (reference §4.3)."""

    type: int = 0
    sub_type: int = 0


@dataclass(frozen=True, slots=True)
class Service:
    name: str = ""
    namespace: str = ""


@dataclass(frozen=True, slots=True)
class Policy:
    """A policy that allowed or denied the flow (`*_allowed_by` / `*_denied_by`)."""

    name: str = ""
    namespace: str = ""
    labels: tuple[str, ...] = ()
    revision: int = _u64()
    kind: str = ""


@dataclass(frozen=True, slots=True)
class Flow:
    """One Hubble flow. Field order is the proto's declaration order (the JSON key order)."""

    time_ns: int = 0
    """Observation time, nanoseconds since the Unix epoch (UTC)."""
    uuid: str = ""
    verdict: Verdict = Verdict.VERDICT_UNKNOWN
    drop_reason: int = 0
    """Drop reason code (reference §4.3); JSON carries it twice: `drop_reason` and, by name,
    `drop_reason_desc`. 0 = not dropped by the datapath (L7 denials have none)."""
    auth_type: AuthType = AuthType.DISABLED
    ethernet: Ethernet | None = None
    ip: IP | None = None
    l4: Layer4 | None = None
    source: Endpoint | None = None
    destination: Endpoint | None = None
    type: FlowType = FlowType.UNKNOWN_TYPE
    node_name: str = ""
    """Observing node, `cluster/node` (Hubble's convention)."""
    node_labels: tuple[str, ...] = ()
    source_names: tuple[str, ...] = ()
    destination_names: tuple[str, ...] = ()
    l7: Layer7 | None = None
    event_type: EventType | None = None
    source_service: Service | None = None
    destination_service: Service | None = None
    traffic_direction: TrafficDirection = TrafficDirection.TRAFFIC_DIRECTION_UNKNOWN
    policy_match_type: int = 0
    """A `policy.types.MatchType` value; proto uint32, so JSON writes the number."""
    trace_observation_point: TraceObservationPoint = TraceObservationPoint.UNKNOWN_POINT
    trace_reason: TraceReason = TraceReason.TRACE_REASON_UNKNOWN
    is_reply: bool | None = None
    """None = unknown (drops and denied verdicts); the compact printer then draws `<>`."""
    proxy_port: int = 0
    summary: str = ""
    egress_allowed_by: tuple[Policy, ...] = ()
    ingress_allowed_by: tuple[Policy, ...] = ()
    egress_denied_by: tuple[Policy, ...] = ()
    ingress_denied_by: tuple[Policy, ...] = ()
    policy_log: tuple[str, ...] = ()

    @property
    def drop_reason_desc(self) -> str:
        """The proto `DropReason` name (`POLICY_DENIED`), or "" when not dropped."""
        return _drop_reason_name(self.drop_reason) if self.drop_reason else ""


def _drop_reason_name(code: int) -> str:
    try:
        return DropReason(code).name
    except ValueError:
        return str(code)


# --- time --------------------------------------------------------------------------------------

_RFC3339 = re.compile(
    r"^(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(Z|z|[+-]\d{2}:\d{2})$"
)


def format_timestamp(time_ns: int) -> str:
    """protojson's Timestamp text: UTC, `Z`, fractional seconds trimmed to 0, 3, 6 or 9 digits."""
    secs, nanos = divmod(time_ns, 1_000_000_000)
    base = datetime.fromtimestamp(secs, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if nanos == 0:
        return base + "Z"
    frac = f"{nanos:09d}"
    for _ in range(2):
        if frac.endswith("000"):
            frac = frac[:-3]
    return f"{base}.{frac}Z"


def parse_timestamp(text: str) -> int:
    """Parse an RFC 3339 timestamp (any offset, up to 9 fractional digits) into epoch ns."""
    m = _RFC3339.match(text)
    if not m:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    y, mo, d, h, mi, s, frac, off = m.groups()
    dt = datetime(int(y), int(mo), int(d), int(h), int(mi), int(s), tzinfo=UTC)
    secs = int(dt.timestamp())
    if off not in ("Z", "z"):
        sign = 1 if off[0] == "+" else -1
        secs -= sign * (int(off[1:3]) * 3600 + int(off[4:6]) * 60)
    return secs * 1_000_000_000 + int((frac or "0").ljust(9, "0"))


# --- JSON encoding -----------------------------------------------------------------------------


def _json_name(f: Any) -> str:
    return str(f.metadata.get("json", f.name))


def _enc_value(value: Any, u64: bool, hint: Any = None) -> Any:
    if isinstance(value, bool):
        return value
    if hint is int:
        # An int-typed proto field may be handed an IntEnum (MatchType, DropReason): the
        # proto says uint32, so protojson writes the number, never the name.
        value = int(value)
    if isinstance(value, IntEnum):
        return value.name
    if isinstance(value, int):
        return str(value) if u64 else value
    if is_dataclass(value):
        return _enc_message(value)
    return value


def _is_zero(value: Any) -> bool:
    return value is None or value == "" or value == () or (value == 0 and not is_dataclass(value))


def _enc_message(msg: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    hints = _hints(type(msg))
    for f in fields(msg):
        value = getattr(msg, f.name)
        if f.name == "record" and isinstance(msg, Layer7):
            if value is not None:
                key = next(k for k, t in _L7_KEYS.items() if isinstance(value, t))
                out[key] = _enc_message(value)
            continue
        if _is_zero(value) or value is False:
            continue
        u64 = bool(f.metadata.get("u64"))
        if isinstance(value, tuple):
            out[_json_name(f)] = [_enc_value(v, u64) for v in value]
        else:
            out[_json_name(f)] = _enc_value(value, u64, hints[f.name])
    return out


def flow_to_dict(flow: Flow) -> dict[str, Any]:
    """The inner `flow` object of Hubble's JSON, keys in proto declaration order."""
    out: dict[str, Any] = {"time": format_timestamp(flow.time_ns)}
    hints = _hints(Flow)
    for f in fields(flow):
        name, value = f.name, getattr(flow, f.name)
        if name == "time_ns":
            continue
        if name == "l4":
            if value is not None:
                out["l4"] = {type(value).__name__: _enc_message(value)}
            continue
        if name == "is_reply":
            # drop_reason_desc is declared just before is_reply in the proto.
            if flow.drop_reason:
                out["drop_reason_desc"] = _enc_drop_reason(flow.drop_reason)
            if value is not None:
                out["is_reply"] = value
            continue
        if name == "event_type" and flow.is_reply:
            out["reply"] = True  # deprecated twin of is_reply, declared before event_type
        if _is_zero(value) or value is False:
            continue
        key = {"ip": "IP", "type": "Type", "summary": "Summary"}.get(name, name)
        if isinstance(value, tuple):
            out[key] = [_enc_value(v, False) for v in value]
        else:
            out[key] = _enc_value(value, False, hints[name])
    return out


def _enc_drop_reason(code: int) -> str | int:
    try:
        return DropReason(code).name
    except ValueError:
        return code


def to_json_dict(flow: Flow) -> dict[str, Any]:
    """One `hubble observe -o json` line as a dict: `{"flow", "node_name", "time"}`."""
    out: dict[str, Any] = {"flow": flow_to_dict(flow)}
    if flow.node_name:
        out["node_name"] = flow.node_name
    out["time"] = format_timestamp(flow.time_ns)
    return out


def lost_events_dict(num_lost: int, source: str, node_name: str, time_ns: int) -> dict[str, Any]:
    """A `GetFlowsResponse` carrying `lost_events` (what a follower sees when it fell behind).

    `source` is a `LostEventSource` name, e.g. `HUBBLE_RING_BUFFER`.
    """
    lost: dict[str, Any] = {"source": source}
    if num_lost:
        lost["num_events_lost"] = str(num_lost)
    out: dict[str, Any] = {"lost_events": lost}
    if node_name:
        out["node_name"] = node_name
    out["time"] = format_timestamp(time_ns)
    return out


_GO_HTML_ESCAPES: Final = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026",
                           "\u2028": "\\u2028", "\u2029": "\\u2029"}
_GO_ESCAPE_RE: Final = re.compile("[<>&\u2028\u2029]")


def dumps(obj: Any) -> str:
    """Serialise like Go's `json.Encoder` over protojson: compact, UTF-8, HTML-escaped.

    No trailing newline. The escapes are safe to apply textually: in JSON these characters can
    only occur inside strings.
    """
    text = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    return _GO_ESCAPE_RE.sub(lambda m: _GO_HTML_ESCAPES[m.group(0)], text)


# --- JSON decoding -----------------------------------------------------------------------------

_HINTS: dict[type, dict[str, Any]] = {}


def _hints(cls: type) -> dict[str, Any]:
    if cls not in _HINTS:
        _HINTS[cls] = get_type_hints(cls)
    return _HINTS[cls]


def _dec_enum(enum_cls: type[IntEnum], value: Any) -> IntEnum:
    if isinstance(value, str):
        try:
            return enum_cls[value]
        except KeyError:
            raise ValueError(f"unknown {enum_cls.__name__} {value!r}") from None
    return enum_cls(int(value))


def _dec_value(tp: Any, value: Any) -> Any:
    origin = get_origin(tp)
    if origin is tuple:
        (item_tp, _ellipsis) = get_args(tp)
        return tuple(_dec_value(item_tp, v) for v in value)
    args = [a for a in get_args(tp) if a is not type(None)]
    if args and origin is not None:  # Optional[X]
        return _dec_value(args[0], value)
    if isinstance(tp, type) and issubclass(tp, IntEnum):
        return _dec_enum(tp, value)
    if tp is bool:
        return bool(value)
    if tp is int:
        return int(value)  # accepts protojson's quoted 64-bit integers
    if tp is str:
        return str(value)
    if is_dataclass(tp):
        return _dec_message(tp, value)
    raise TypeError(f"cannot decode {tp!r}")


def _dec_message(cls: Any, data: dict[str, Any]) -> Any:
    hints = _hints(cls)
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        if f.name == "record" and cls is Layer7:
            for key, rec_cls in _L7_KEYS.items():
                if key in data:
                    kwargs["record"] = _dec_message(rec_cls, data[key])
            continue
        name = _json_name(f)
        if name in data and data[name] is not None:
            kwargs[f.name] = _dec_value(hints[f.name], data[name])
    return cls(**kwargs)


_FLOW_KEYS: Final = {"IP": "ip", "Type": "type", "Summary": "summary"}


def flow_from_dict(data: dict[str, Any]) -> Flow:
    """Decode the inner `flow` object (inverse of `flow_to_dict`). Unknown keys are ignored."""
    hints = _hints(Flow)
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        if value is None:
            continue
        if key == "time":
            kwargs["time_ns"] = parse_timestamp(value)
        elif key == "l4":
            ((l4_name, l4_data),) = value.items()
            kwargs["l4"] = _dec_message(_L4_TYPES[l4_name], l4_data)
        elif key == "drop_reason_desc":
            if not data.get("drop_reason") and isinstance(value, str) and value in DropReason.__members__:
                kwargs["drop_reason"] = int(DropReason[value])
        elif key == "is_reply":
            kwargs["is_reply"] = bool(value)
        else:
            name = _FLOW_KEYS.get(key, key)
            if name in hints and name not in ("time_ns",):
                kwargs[name] = _dec_value(hints[name], value)
    return Flow(**kwargs)


def from_json_dict(data: dict[str, Any]) -> Flow:
    """Decode one `hubble observe -o json` object (or a bare flow object) into a Flow.

    Raises:
        ValueError: the object holds no flow (e.g. a `lost_events` or `node_status` response),
            or a field has a value of the wrong kind.
    """
    if "flow" in data:
        return flow_from_dict(data["flow"])
    if "lost_events" in data or "node_status" in data:
        raise ValueError("not a flow response")
    return flow_from_dict(data)


__all__ = [
    "DNS",
    "DNS_RCODE_NAMES",
    "EVENT_KIND_NAMES",
    "HTTP",
    "IP",
    "MATCH_TYPE_NAMES",
    "RESERVED_IDENTITY_NAMES",
    "SCTP",
    "TCP",
    "TRACE_SUBTYPE_NAMES",
    "UDP",
    "AuthType",
    "Endpoint",
    "Ethernet",
    "EventKind",
    "EventType",
    "Flow",
    "FlowType",
    "HTTPHeader",
    "ICMPv4",
    "ICMPv6",
    "IPVersion",
    "Kafka",
    "L7FlowType",
    "L7Record",
    "Layer4",
    "Layer7",
    "Policy",
    "Service",
    "TCPFlags",
    "TraceObservationPoint",
    "TraceReason",
    "TrafficDirection",
    "Verdict",
    "Workload",
    "dumps",
    "flow_from_dict",
    "flow_to_dict",
    "format_timestamp",
    "from_json_dict",
    "lost_events_dict",
    "parse_timestamp",
    "to_json_dict",
    "trace_subtype",
]
