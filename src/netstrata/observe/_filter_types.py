"""`FlowFilter`: Hubble's `flow.FlowFilter` message, for the fields our flows carry.

Every field is a list; a filter matches a flow when *every* non-empty field matches, and a field
matches when *any* of its values does (Cilium `pkg/hubble/filters`). The JSON form is the one
`hubble observe --allowlist/--denylist` accepts and `--print-raw-filters` prints: proto field
names, enums by name. Decoding also accepts protojson's lowerCamelCase names.

`since_ns`/`until_ns` are netstrata extensions: Hubble puts the time window on the request, not
on the filter; carrying it here lets one `matches()` answer a whole `observe` query. They never
appear in the JSON.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from netstrata.datapath.drop_reasons import DropReason
from netstrata.observe.flow import (
    HTTPHeader,
    IPVersion,
    TCPFlags,
    TrafficDirection,
    Verdict,
    Workload,
)


@dataclass(frozen=True, slots=True)
class EventTypeFilter:
    """Match `event_type.type` (0 = any) and, when `match_sub_type`, its `sub_type`."""

    type: int = 0
    match_sub_type: bool = False
    sub_type: int = 0


@dataclass(frozen=True, slots=True, repr=False)
class FlowFilter:
    """One Hubble FlowFilter; fields are AND-ed, values within a field OR-ed."""

    uuid: tuple[str, ...] = ()
    source_ip: tuple[str, ...] = ()
    source_ip_xlated: tuple[str, ...] = ()
    source_pod: tuple[str, ...] = ()
    source_fqdn: tuple[str, ...] = ()
    source_label: tuple[str, ...] = ()
    source_service: tuple[str, ...] = ()
    source_workload: tuple[Workload, ...] = ()
    source_cluster_name: tuple[str, ...] = ()
    destination_ip: tuple[str, ...] = ()
    destination_pod: tuple[str, ...] = ()
    destination_fqdn: tuple[str, ...] = ()
    destination_label: tuple[str, ...] = ()
    destination_service: tuple[str, ...] = ()
    destination_workload: tuple[Workload, ...] = ()
    destination_cluster_name: tuple[str, ...] = ()
    traffic_direction: tuple[TrafficDirection, ...] = ()
    verdict: tuple[Verdict, ...] = ()
    drop_reason_desc: tuple[int, ...] = ()
    """Drop reason codes (the JSON carries `DropReason` names)."""
    event_type: tuple[EventTypeFilter, ...] = ()
    http_status_code: tuple[str, ...] = ()
    protocol: tuple[str, ...] = ()
    source_port: tuple[str, ...] = ()
    destination_port: tuple[str, ...] = ()
    reply: tuple[bool, ...] = ()
    dns_query: tuple[str, ...] = ()
    source_identity: tuple[int, ...] = ()
    destination_identity: tuple[int, ...] = ()
    http_method: tuple[str, ...] = ()
    http_path: tuple[str, ...] = ()
    http_url: tuple[str, ...] = ()
    http_header: tuple[HTTPHeader, ...] = ()
    tcp_flags: tuple[TCPFlags, ...] = ()
    node_name: tuple[str, ...] = ()
    node_labels: tuple[str, ...] = ()
    ip_version: tuple[IPVersion, ...] = ()
    encrypted: tuple[bool, ...] = ()
    since_ns: int | None = None
    """Extension: only flows at or after this time (epoch ns)."""
    until_ns: int | None = None
    """Extension: only flows at or before this time (epoch ns)."""

    def __repr__(self) -> str:
        # Only the set fields: forty empty tuples would bury the one that matters.
        set_fields = [f"{f.name}={getattr(self, f.name)!r}" for f in fields(self)
                      if getattr(self, f.name) not in ((), None)]
        return f"FlowFilter({', '.join(set_fields)})"


_ENUM_FIELDS: dict[str, Any] = {
    "traffic_direction": TrafficDirection,
    "verdict": Verdict,
    "ip_version": IPVersion,
}
_MESSAGE_FIELDS: dict[str, Any] = {
    "source_workload": Workload,
    "destination_workload": Workload,
    "event_type": EventTypeFilter,
    "http_header": HTTPHeader,
    "tcp_flags": TCPFlags,
}
_EXTENSIONS = ("since_ns", "until_ns")


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(p.title() for p in rest)


def _message_to_json(msg: Any) -> dict[str, Any]:
    return {f.name: getattr(msg, f.name) for f in fields(msg) if getattr(msg, f.name)}


def filter_to_json_dict(ff: FlowFilter) -> dict[str, Any]:
    """The protojson form of a filter (empty fields omitted, extensions dropped)."""
    out: dict[str, Any] = {}
    for f in fields(ff):
        value = getattr(ff, f.name)
        if f.name in _EXTENSIONS or not value:
            continue
        if f.name in _ENUM_FIELDS:
            out[f.name] = [v.name for v in value]
        elif f.name == "drop_reason_desc":
            out[f.name] = [DropReason(v).name if v in DropReason._value2member_map_ else v
                           for v in value]
        elif f.name in _MESSAGE_FIELDS:
            out[f.name] = [_message_to_json(v) for v in value]
        else:
            out[f.name] = list(value)
    return out


def _enum_value(enum_cls: Any, value: Any) -> Any:
    if isinstance(value, str):
        if value not in enum_cls.__members__:
            raise ValueError(f"unknown {enum_cls.__name__} {value!r}")
        return enum_cls[value]
    return enum_cls(int(value))


def _message_value(cls: Any, value: Any) -> Any:
    if not isinstance(value, dict):
        raise ValueError(f"expected an object for {cls.__name__}, found {value!r}")
    names: set[str] = {f.name for f in fields(cls)}
    camel = {_camel(n): n for n in names}
    kwargs: dict[str, Any] = {camel.get(str(k), str(k)): v for k, v in value.items()}
    unknown = set(kwargs) - names
    if unknown:
        raise ValueError(f"unknown {cls.__name__} field(s): {', '.join(sorted(unknown))}")
    return cls(**kwargs)


def _drop_reason_value(value: Any) -> int:
    if isinstance(value, str):
        if value not in DropReason.__members__:
            raise ValueError(f"unknown drop reason {value!r}")
        return int(DropReason[value])
    return int(value)


def filter_from_json_dict(data: dict[str, Any]) -> FlowFilter:
    """Parse one JSON FlowFilter (`{"source_pod": ["default/"]}`), as `--allowlist` takes it.

    Raises:
        ValueError: unknown field, or a value of the wrong kind.
    """
    names = {f.name for f in fields(FlowFilter)} - set(_EXTENSIONS)
    camel = {_camel(n): n for n in names}
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        name = key if key in names else camel.get(key)
        if name is None:
            raise ValueError(f"unknown FlowFilter field {key!r}")
        if not isinstance(value, list):
            raise ValueError(f"FlowFilter field {key!r} must be a list")
        if name in _ENUM_FIELDS:
            kwargs[name] = tuple(_enum_value(_ENUM_FIELDS[name], v) for v in value)
        elif name == "drop_reason_desc":
            kwargs[name] = tuple(_drop_reason_value(v) for v in value)
        elif name in _MESSAGE_FIELDS:
            kwargs[name] = tuple(_message_value(_MESSAGE_FIELDS[name], v) for v in value)
        elif name in ("source_identity", "destination_identity"):
            kwargs[name] = tuple(int(v) for v in value)
        elif name in ("reply", "encrypted"):
            kwargs[name] = tuple(bool(v) for v in value)
        else:
            kwargs[name] = tuple(str(v) for v in value)
    return FlowFilter(**kwargs)
