"""Every struct and enum that crosses the kernel boundary, declared once for Python.

`bpf/netstrata_maps.h` is the source; this module mirrors it field by field under the C names,
in C order, with an `=`-prefixed `struct.Struct` format (native byte order, no hidden padding:
every pad byte of the C struct is an explicit `x` here). `tests/unit/datapath/test_layout.py`
compares sizes, field names, offsets and enum values with the BTF of a compiled probe, and the
loader refuses to attach when they disagree (`loader/_btfcheck.py`).

Byte order lives only in the codecs: a field whose C name ends in `_be` is in network order in
the kernel, and holds the natural value here (a port number, an `IPv4Address`); `encode_<x>` and
`decode_<x>` convert. Nothing here knows about bpf(2); it is bytes in, dataclasses out.
"""

from __future__ import annotations

import struct
import sys
from collections.abc import Callable
from dataclasses import dataclass, fields
from enum import IntEnum, IntFlag
from ipaddress import IPv4Address
from typing import Final, Generic, TypeVar, final

from netstrata.datapath.drop_reasons import DropReason
from netstrata.policy.types import Direction, MatchType

T = TypeVar("T")

# ----------------------------------------------------------------------------------- enums


class Verdict(IntEnum):
    """`enum nst_verdict`: Hubble's verdict numbers (reference §4.1)."""

    UNKNOWN = 0
    FORWARDED = 1
    DROPPED = 2
    ERROR = 3
    AUDIT = 4
    REDIRECTED = 5


class EventType(IntEnum):
    """`enum nst_event_type`: Cilium monitor event types (reference §4.3)."""

    DROP = 1
    DEBUG = 2
    CAPTURE = 3
    TRACE = 4
    POLICY_VERDICT = 5


class TracePoint(IntEnum):
    """`enum nst_trace_point`: the trace observation points the programs report."""

    TO_ENDPOINT = 0
    FROM_ENDPOINT = 5


class CtState(IntEnum):
    """`enum nst_ct_state`: a packet's conntrack class, Hubble's `trace_reason` numbers."""

    UNTRACKED = 0
    NEW = 1
    ESTABLISHED = 2
    REPLY = 3
    RELATED = 4


class EndpointFlag(IntFlag):
    """`enum nst_endpoint_flag`: `endpoint_info.flags`."""

    INGRESS_ENFORCED = 1
    EGRESS_ENFORCED = 2
    AUDIT = 4


class PolicyFlag(IntFlag):
    """`enum nst_policy_flag`: `policy_entry.flags`."""

    DENY = 1


class CtFlag(IntFlag):
    """`enum nst_ct_flag`: `ct_entry.flags`."""

    SEEN_REPLY = 1
    CLOSING = 2
    PROXY_REDIRECT = 4
    PROXY_UPSTREAM = 8
    """Opened by the node proxy: replies are handed to its socket."""


class EventFlag(IntFlag):
    """`enum nst_event_flag`: `flow_event.flags`."""

    AUDITED = 1
    IS_REPLY = 2
    FRAGMENT = 4


class PolicyPrefix(IntEnum):
    """`enum nst_policy_prefix`: policy-map LPM prefix lengths in bits."""

    EXACT = 72
    """endpoint_id + identity + direction, always matched exactly."""
    FULL = 96
    """+ proto + dport: the prefix of every lookup."""


class ProxyRedirect(IntEnum):
    """`enum nst_proxy`: marks, routing table and listener addresses of the transparent
    redirect (the C header explains each)."""

    MARK_MASK = 0x0F00
    MARK_TO_PROXY = 0x0200
    MARK_FROM_INGRESS_PROXY = 0x0A00
    MARK_FROM_EGRESS_PROXY = 0x0B00
    ROUTE_TABLE = 2004
    INGRESS_ADDR = 0x7F000001
    """127.0.0.1 (host order): where ingress listeners bind."""
    EGRESS_ADDR = 0x7F000002
    """127.0.0.2 (host order): where egress listeners bind."""


class MeshPort(IntEnum):
    """`enum nst_mesh_port`: the node proxy's mesh listeners (outbound on the egress address,
    inbound on the ingress address)."""

    OUTBOUND = 15001
    INBOUND = 15006


class MeshFlag(IntFlag):
    """`enum nst_mesh_flag`: `mesh_info.flags`."""

    ENROLLED = 1
    INBOUND_DEFAULT = 2
    OUTBOUND_DEFAULT = 4


class MeshPath(IntEnum):
    """`enum nst_mesh_path`: what a mesh port or range entry says."""

    BYPASS = 1
    CAPTURE = 2


@final
@dataclass(frozen=True, slots=True)
class EnumSpec:
    """A C enum and its Python mirror: C enumerator = `prefix` + Python member name."""

    c_name: str
    prefix: str
    py: type[IntEnum] | type[IntFlag]

    def expected(self) -> dict[str, int]:
        """C enumerator name -> value, as the header must declare them."""
        return {self.prefix + str(m.name): int(m.value) for m in self.py}


ENUMS: Final[tuple[EnumSpec, ...]] = (
    EnumSpec("nst_verdict", "NST_VERDICT_", Verdict),
    EnumSpec("nst_direction", "NST_DIR_", Direction),
    EnumSpec("nst_drop_reason", "NST_DROP_", DropReason),
    EnumSpec("nst_match_type", "NST_MATCH_", MatchType),
    EnumSpec("nst_event_type", "NST_EVENT_", EventType),
    EnumSpec("nst_trace_point", "NST_TRACE_", TracePoint),
    EnumSpec("nst_ct_state", "NST_CT_", CtState),
    EnumSpec("nst_endpoint_flag", "NST_EP_", EndpointFlag),
    EnumSpec("nst_policy_flag", "NST_POLICY_", PolicyFlag),
    EnumSpec("nst_ct_flag", "NST_CT_", CtFlag),
    EnumSpec("nst_event_flag", "NST_EVENT_", EventFlag),
    EnumSpec("nst_policy_prefix", "NST_POLICY_PREFIX_", PolicyPrefix),
    EnumSpec("nst_proxy", "NST_PROXY_", ProxyRedirect),
    EnumSpec("nst_mesh_port", "NST_MESH_PORT_", MeshPort),
    EnumSpec("nst_mesh_flag", "NST_MESH_FLAG_", MeshFlag),
    EnumSpec("nst_mesh_path", "NST_MESH_PATH_", MeshPath),
)

# --------------------------------------------------------------------------- struct specs


def _to_be16(value: int) -> int:
    return int.from_bytes(value.to_bytes(2, "big"), sys.byteorder)


def _from_be16(raw: int) -> int:
    return int.from_bytes(raw.to_bytes(2, sys.byteorder), "big")


def _to_be32(value: IPv4Address) -> int:
    return int.from_bytes(value.packed, sys.byteorder)


def _from_be32(raw: int) -> IPv4Address:
    return IPv4Address(raw.to_bytes(4, sys.byteorder))


_BE_CODECS: Final[dict[str, tuple[Callable[[object], int], Callable[[int], object]]]] = {
    "H": (_to_be16, _from_be16),  # type: ignore[dict-item]
    "I": (_to_be32, _from_be32),  # type: ignore[dict-item]
}


@final
@dataclass(frozen=True, slots=True)
class FieldSpec:
    """One C member: its name and its `struct` code (`3x` for a pad array)."""

    c_name: str
    fmt: str

    @property
    def is_pad(self) -> bool:
        return self.fmt.endswith("x")

    @property
    def size(self) -> int:
        return struct.calcsize("=" + self.fmt)


@final
class StructSpec(Generic[T]):
    """A C struct, its frozen dataclass, and the codec between them."""

    __slots__ = ("c_name", "cls", "fields", "format", "_struct", "_codecs")

    def __init__(self, c_name: str, cls: type[T], *members: tuple[str, str]) -> None:
        self.c_name = c_name
        self.cls = cls
        self.fields = tuple(FieldSpec(n, f) for n, f in members)
        self.format = "=" + "".join(f.fmt for f in self.fields)
        self._struct = struct.Struct(self.format)
        data = [f for f in self.fields if not f.is_pad]
        if [f.c_name for f in data] != [f.name for f in fields(cls)]:  # type: ignore[arg-type]
            raise TypeError(f"{cls.__name__} fields must be the C members of struct {c_name}")
        self._codecs = tuple(
            _BE_CODECS[f.fmt] if f.c_name.endswith("_be") else None for f in data
        )

    @property
    def size(self) -> int:
        return self._struct.size

    def offsets(self) -> dict[str, int]:
        """C member name -> byte offset, pads included."""
        out: dict[str, int] = {}
        off = 0
        for f in self.fields:
            out[f.c_name] = off
            off += f.size
        return out

    def encode(self, obj: T) -> bytes:
        values: list[object] = []
        for f, codec in zip((f for f in self.fields if not f.is_pad), self._codecs, strict=True):
            value = getattr(obj, f.c_name)
            values.append(codec[0](value) if codec else int(value))
        try:
            return self._struct.pack(*values)
        except struct.error as exc:
            raise ValueError(f"struct {self.c_name}: {exc} in {obj!r}") from exc

    def decode(self, raw: bytes) -> T:
        if len(raw) != self.size:
            raise ValueError(f"struct {self.c_name} is {self.size} bytes, got {len(raw)}")
        return self.from_values(self._struct.unpack(raw))

    @property
    def struct(self) -> struct.Struct:
        """The `struct.Struct` of the C layout: unpacking gives the raw values (network-order
        fields as the kernel stored them) in field order, for bulk readers."""
        return self._struct

    def index(self, c_name: str) -> int:
        """Position of member `c_name` in a raw values tuple (pads do not count)."""
        names = [f.c_name for f in self.fields if not f.is_pad]
        return names.index(c_name)

    def from_values(self, values: tuple[object, ...]) -> T:
        """The dataclass of one raw values tuple (as `struct` unpacked it)."""
        args = [codec[1](v) if codec else v  # type: ignore[arg-type]
                for v, codec in zip(values, self._codecs, strict=True)]
        return self.cls(*args)


# ------------------------------------------------------------------------------- structs


@dataclass(frozen=True, slots=True)
class EndpointKey:
    """`struct endpoint_key`: a local endpoint's address."""

    ip_be: IPv4Address


@dataclass(frozen=True, slots=True)
class EndpointInfo:
    """`struct endpoint_info`: who a local address belongs to and how it is enforced."""

    endpoint_id: int
    identity: int
    ifindex: int
    """The host-side veth (in the node's namespace) that the endpoint's packets use."""
    flags: int
    """`EndpointFlag` bits."""


@dataclass(frozen=True, slots=True)
class IpcacheKey:
    """`struct ipcache_key`: an IPv4 prefix (host bits zero)."""

    prefixlen: int
    ip_be: IPv4Address


@dataclass(frozen=True, slots=True)
class IpcacheInfo:
    """`struct ipcache_info`."""

    identity: int
    cluster_id: int = 0
    flags: int = 0


@dataclass(frozen=True, slots=True)
class PolicyKey:
    """`struct policy_key`. `dport_be` holds the port (or ICMP type << 8) as a number."""

    prefixlen: int
    endpoint_id: int
    identity: int
    direction: int
    proto: int
    dport_be: int


@dataclass(frozen=True, slots=True)
class PolicyExactKey:
    """`struct policy_exact_key`: a `policy_key` naming the protocol and the whole port (the
    entries of the hash `nst_policy_exact`). `dport_be` holds the port as a number."""

    endpoint_id: int
    identity: int
    direction: int
    proto: int
    dport_be: int


@dataclass(frozen=True, slots=True)
class PolicyEntry:
    """`struct policy_entry`."""

    proxy_port: int
    flags: int
    """`PolicyFlag` bits."""
    prefix_bits: int
    """Protocol + port bits of the key (0..24): the lookup's tie-breaker."""
    precedence: int
    cookie: int


@dataclass(frozen=True, slots=True)
class CtKey:
    """`struct ct_key`: a tuple as `endpoint_id` saw it in `direction`."""

    endpoint_id: int
    saddr_be: IPv4Address
    daddr_be: IPv4Address
    sport_be: int
    dport_be: int
    proto: int
    direction: int


@dataclass(frozen=True, slots=True)
class CtEntry:
    """`struct ct_entry`."""

    expires_ns: int
    """CLOCK_MONOTONIC deadline in nanoseconds."""
    packets: int
    bytes: int
    cookie: int
    proxy_port: int
    flags: int
    """`CtFlag` bits."""


@dataclass(frozen=True, slots=True)
class FlowEvent:
    """`struct flow_event`: one ring-buffer record (drop, policy verdict or trace)."""

    timestamp_ns: int
    """CLOCK_MONOTONIC nanoseconds."""
    type: int
    """`EventType`."""
    subtype: int
    """Drop: the drop reason; trace: the `TracePoint`; otherwise 0."""
    verdict: int
    """`Verdict`."""
    direction: int
    """`Direction` of the policy that applied."""
    match_type: int
    """`MatchType` of the deciding entry."""
    flags: int
    """`EventFlag` bits."""
    proto: int
    ct_state: int
    """`CtState`."""
    endpoint_id: int
    """The endpoint whose policy applied; 0 when none could be found."""
    src_identity: int
    dst_identity: int
    saddr_be: IPv4Address
    daddr_be: IPv4Address
    sport_be: int
    dport_be: int
    drop_reason: int
    """`DropReason` (also set on audited verdicts), else 0."""
    proxy_port: int
    cookie: int
    """The deciding rule's cookie (`ResolvedPolicy.cookies`)."""
    ifindex: int
    pkt_len: int
    icmp_type: int
    icmp_code: int
    tcp_flags: int
    lookup_step: int
    """The numbered step of `policy_lookup()` that decided (0: no lookup)."""


@dataclass(frozen=True, slots=True)
class EventsLost:
    """`struct events_lost`: one CPU's count of records the full ring buffer refused."""

    records: int


@dataclass(frozen=True, slots=True)
class MeshInfo:
    """`struct mesh_info`: a meshed workload's capture defaults."""

    flags: int
    """`MeshFlag` bits."""


@dataclass(frozen=True, slots=True)
class MeshPortKey:
    """`struct mesh_port_key`: a port a workload's capture annotations name."""

    ip_be: IPv4Address
    direction: int
    port_be: int


@dataclass(frozen=True, slots=True)
class MeshRangeKey:
    """`struct mesh_range_key`: a source's outbound destination range (prefixlen counts the
    32 bits of the source too)."""

    prefixlen: int
    ip_be: IPv4Address
    dst_be: IPv4Address


@dataclass(frozen=True, slots=True)
class MeshPathValue:
    """`struct mesh_path`: a `MeshPath`."""

    path: int


ENDPOINT_KEY: Final = StructSpec("endpoint_key", EndpointKey, ("ip_be", "I"))
ENDPOINT_INFO: Final = StructSpec(
    "endpoint_info", EndpointInfo,
    ("endpoint_id", "I"), ("identity", "I"), ("ifindex", "I"), ("flags", "B"), ("pad", "3x"),
)
IPCACHE_KEY: Final = StructSpec("ipcache_key", IpcacheKey, ("prefixlen", "I"), ("ip_be", "I"))
IPCACHE_INFO: Final = StructSpec(
    "ipcache_info", IpcacheInfo,
    ("identity", "I"), ("cluster_id", "H"), ("flags", "B"), ("pad", "x"),
)
POLICY_KEY: Final = StructSpec(
    "policy_key", PolicyKey,
    ("prefixlen", "I"), ("endpoint_id", "I"), ("identity", "I"), ("direction", "B"),
    ("proto", "B"), ("dport_be", "H"),
)
POLICY_EXACT_KEY: Final = StructSpec(
    "policy_exact_key", PolicyExactKey,
    ("endpoint_id", "I"), ("identity", "I"), ("direction", "B"), ("proto", "B"),
    ("dport_be", "H"),
)
POLICY_ENTRY: Final = StructSpec(
    "policy_entry", PolicyEntry,
    ("proxy_port", "H"), ("flags", "B"), ("prefix_bits", "B"), ("precedence", "I"),
    ("cookie", "I"),
)
CT_KEY: Final = StructSpec(
    "ct_key", CtKey,
    ("endpoint_id", "I"), ("saddr_be", "I"), ("daddr_be", "I"), ("sport_be", "H"),
    ("dport_be", "H"), ("proto", "B"), ("direction", "B"), ("pad", "2x"),
)
CT_ENTRY: Final = StructSpec(
    "ct_entry", CtEntry,
    ("expires_ns", "Q"), ("packets", "Q"), ("bytes", "Q"), ("cookie", "I"), ("proxy_port", "H"),
    ("flags", "B"), ("pad", "x"),
)
FLOW_EVENT: Final = StructSpec(
    "flow_event", FlowEvent,
    ("timestamp_ns", "Q"), ("type", "B"), ("subtype", "B"), ("verdict", "B"), ("direction", "B"),
    ("match_type", "B"), ("flags", "B"), ("proto", "B"), ("ct_state", "B"),
    ("endpoint_id", "I"), ("src_identity", "I"), ("dst_identity", "I"),
    ("saddr_be", "I"), ("daddr_be", "I"), ("sport_be", "H"), ("dport_be", "H"),
    ("drop_reason", "H"), ("proxy_port", "H"), ("cookie", "I"), ("ifindex", "I"),
    ("pkt_len", "I"), ("icmp_type", "B"), ("icmp_code", "B"), ("tcp_flags", "B"),
    ("lookup_step", "B"), ("pad", "4x"),
)
EVENTS_LOST: Final = StructSpec("events_lost", EventsLost, ("records", "Q"))
MESH_INFO: Final = StructSpec("mesh_info", MeshInfo, ("flags", "B"), ("pad", "3x"))
MESH_PORT_KEY: Final = StructSpec(
    "mesh_port_key", MeshPortKey,
    ("ip_be", "I"), ("direction", "B"), ("pad", "x"), ("port_be", "H"),
)
MESH_RANGE_KEY: Final = StructSpec(
    "mesh_range_key", MeshRangeKey, ("prefixlen", "I"), ("ip_be", "I"), ("dst_be", "I"),
)
MESH_PATH: Final = StructSpec("mesh_path", MeshPathValue, ("path", "B"), ("pad", "3x"))

STRUCTS: Final[tuple[StructSpec[object], ...]] = (
    ENDPOINT_KEY, ENDPOINT_INFO, IPCACHE_KEY, IPCACHE_INFO, POLICY_KEY, POLICY_EXACT_KEY,  # type: ignore[assignment]
    POLICY_ENTRY, CT_KEY, CT_ENTRY, FLOW_EVENT, EVENTS_LOST, MESH_INFO, MESH_PORT_KEY, MESH_RANGE_KEY,
    MESH_PATH,
)
"""Every struct of `netstrata_maps.h`, for the BTF checks."""

encode_endpoint_key: Final = ENDPOINT_KEY.encode
decode_endpoint_key: Final = ENDPOINT_KEY.decode
encode_endpoint_info: Final = ENDPOINT_INFO.encode
decode_endpoint_info: Final = ENDPOINT_INFO.decode
encode_ipcache_key: Final = IPCACHE_KEY.encode
decode_ipcache_key: Final = IPCACHE_KEY.decode
encode_ipcache_info: Final = IPCACHE_INFO.encode
decode_ipcache_info: Final = IPCACHE_INFO.decode
encode_policy_key: Final = POLICY_KEY.encode
decode_policy_key: Final = POLICY_KEY.decode
encode_policy_exact_key: Final = POLICY_EXACT_KEY.encode
decode_policy_exact_key: Final = POLICY_EXACT_KEY.decode
encode_policy_entry: Final = POLICY_ENTRY.encode
decode_policy_entry: Final = POLICY_ENTRY.decode
encode_ct_key: Final = CT_KEY.encode
decode_ct_key: Final = CT_KEY.decode
encode_ct_entry: Final = CT_ENTRY.encode
decode_ct_entry: Final = CT_ENTRY.decode
encode_flow_event: Final = FLOW_EVENT.encode
decode_flow_event: Final = FLOW_EVENT.decode


@final
@dataclass(frozen=True, slots=True)
class MapSpec:
    """One map of the object: its name and the structs of its key and value (None: ringbuf;
    a None key with a value: a per-CPU array indexed by a plain u32)."""

    name: str
    key: StructSpec[object] | None
    value: StructSpec[object] | None


MAPS: Final[tuple[MapSpec, ...]] = (
    MapSpec("nst_endpoints", ENDPOINT_KEY, ENDPOINT_INFO),  # type: ignore[arg-type]
    MapSpec("nst_ipcache", IPCACHE_KEY, IPCACHE_INFO),  # type: ignore[arg-type]
    MapSpec("nst_policy", POLICY_KEY, POLICY_ENTRY),  # type: ignore[arg-type]
    MapSpec("nst_policy_exact", POLICY_EXACT_KEY, POLICY_ENTRY),  # type: ignore[arg-type]
    MapSpec("nst_conntrack", CT_KEY, CT_ENTRY),  # type: ignore[arg-type]
    MapSpec("nst_events", None, None),
    MapSpec("nst_events_lost", None, EVENTS_LOST),  # type: ignore[arg-type]
    MapSpec("nst_mesh", ENDPOINT_KEY, MESH_INFO),  # type: ignore[arg-type]
    MapSpec("nst_mesh_ports", MESH_PORT_KEY, MESH_PATH),  # type: ignore[arg-type]
    MapSpec("nst_mesh_ranges", MESH_RANGE_KEY, MESH_PATH),  # type: ignore[arg-type]
)
"""The maps of `bpf/maps_def.h`; the loader checks their key/value sizes against these."""
