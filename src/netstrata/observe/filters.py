"""`hubble observe` filter flags -> allow/deny FlowFilter lists, and matching flows against them.

How the flags combine (reference §4.5; Hubble `cmd/observe/flows_filter.go`):

* Each flag lands in the allowlist unless the flag before it was `--not`, which sends that one
  flag to the denylist (`--not --not` and a trailing `--not` are errors).
* Within one list the flags fill two FlowFilters, *left* and *right*, and a flow matches the
  list when it matches left OR right. `--from-*`/`--to-*` and undirected-less flags (`--verdict`,
  `--type`, ...) set the same field in both; undirected flags (`--pod`, `--ip`, `--label`,
  `--identity`, `--port`, `--fqdn`, `--service`, `--workload`, `--cluster`) set the *source*
  field in left and the *destination* field in right. Identical left and right collapse to one.
* A repeated flag appends values, which OR; different flags fill different fields, which AND.
* `-n/--namespace` and friends are applied last, to the pod and service filters: `-n ns` adds
  `ns/` to left's source pods and right's destination pods (a bare `ns/` matches every pod of
  the namespace); `-A` uses the empty namespace (any).
* Final decision (`pkg/hubble/filters.Apply`): matches some allow filter (or there are none) AND
  matches no deny filter.

`--since`/`--until` accept what Hubble accepts (a Go duration back from `now`, or RFC 3339 and
the other layouts of `hubble/pkg/time`) and are folded into every allow filter.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from netstrata.datapath.drop_reasons import DropReason
from netstrata.observe._filter_types import (
    EventTypeFilter,
    FlowFilter,
    filter_from_json_dict,
    filter_to_json_dict,
)
from netstrata.observe._predicates import (
    Predicate,
    compile_filter,
    parse_label_selector,
    parse_namespaced_name,
)
from netstrata.observe.flow import (
    EVENT_KIND_NAMES,
    RESERVED_IDENTITY_NAMES,
    TRACE_SUBTYPE_NAMES,
    EventKind,
    Flow,
    HTTPHeader,
    IPVersion,
    TCPFlags,
    TrafficDirection,
    Verdict,
    Workload,
    parse_timestamp,
)

# --- value parsers (one per flag kind) ---------------------------------------------------------


def _verdict(v: str) -> Verdict:
    if v not in Verdict.__members__:
        raise ValueError(f"invalid --verdict value: {v}")
    return Verdict[v]


def _drop_reason(v: str) -> int:
    if v == "":
        raise ValueError("empty --drop-reason-desc value")
    if v not in DropReason.__members__:
        raise ValueError(f"invalid --drop-reason-desc value: {v}")
    return int(DropReason[v])


_AGENT_SUBTYPES: Final = {
    "unspecified": 0, "message": 1, "agent-started": 2, "policy-updated": 5,
    "policy-deleted": 6, "endpoint-regenerate-success": 3, "endpoint-regenerate-failure": 4,
    "endpoint-created": 7, "endpoint-deleted": 8, "ipcache-upserted": 9, "ipcache-deleted": 10,
}


def _event_type(v: str) -> EventTypeFilter:
    """`TYPE[:SUBTYPE]`: a name from `EVENT_KIND_NAMES` or a number; trace/agent sub-type names."""
    name, sep, sub = v.partition(":")
    if name in EVENT_KIND_NAMES:
        kind = int(EVENT_KIND_NAMES[name])
    elif name.isdigit():
        kind = int(name)
    else:
        raise ValueError(f"unable to parse type {name!r}, not a known type name and unable to "
                         "parse as numeric value")
    if not sep:
        return EventTypeFilter(type=kind)
    table: dict[str, int] = {}
    if kind == EventKind.TRACE:
        table = {n: k for k, n in TRACE_SUBTYPE_NAMES.items()}
    elif kind == EventKind.AGENT:
        table = _AGENT_SUBTYPES
    if sub in table:
        return EventTypeFilter(type=kind, match_sub_type=True, sub_type=table[sub])
    if not sub.isdigit():
        raise ValueError(f"unable to parse event sub-type {sub!r}, not a known sub-type name "
                         "and unable to parse as numeric value")
    return EventTypeFilter(type=kind, match_sub_type=True, sub_type=int(sub))


def _identity(v: str) -> int:
    """A reserved identity name (`world`, `host`, ...) or a number (Go `ParseUint(v, 0, 32)`)."""
    by_name = {n: i for i, n in RESERVED_IDENTITY_NAMES.items() if i}
    if v in by_name:
        return by_name[v]
    try:
        value = int(v, 0)
    except ValueError:
        value = -1
    if not 0 <= value < 2**32:
        names = ", ".join(sorted(by_name, key=by_name.__getitem__))
        raise ValueError(f"invalid security identity, expected one of [{names}] or a numeric value")
    return value


def _workload(v: str) -> Workload:
    kind, sep, name = v.partition("/")
    return Workload(name=name, kind=kind) if sep else Workload(name=v)


def _http_header(v: str) -> HTTPHeader:
    key, sep, value = v.partition(":")
    if not sep:
        raise ValueError(f"invalid http-header value {v!r}, expected name:value")
    return HTTPHeader(key=key, value=value)


def _tcp_flags(v: str) -> TCPFlags:
    flags: dict[str, bool] = {}
    for name in v.split(","):
        if name.upper() not in TCPFlags.__dataclass_fields__:
            raise ValueError(f"unknown tcp flag: {name}")
        flags[name.upper()] = True
    return TCPFlags(**flags)


def _traffic_direction(v: str) -> TrafficDirection:
    td = v.lower()
    if td not in ("ingress", "egress"):
        raise ValueError(f"{td}: invalid traffic direction, expected ingress or egress")
    return TrafficDirection[td.upper()]


def _ip_version(v: str) -> IPVersion:
    lowered = v.lower()
    if lowered in ("4", "v4", "ipv4", "ip4"):
        return IPVersion.IPv4
    if lowered in ("6", "v6", "ipv6", "ip6"):
        return IPVersion.IPv6
    return IPVersion.IP_NOT_USED


# --- the flag table ----------------------------------------------------------------------------

_Conv = Callable[[str], Any]

_BOTH: Final[dict[str, tuple[str, _Conv]]] = {
    "uuid": ("uuid", str),
    "from-fqdn": ("source_fqdn", str), "to-fqdn": ("destination_fqdn", str),
    "from-pod": ("source_pod", str), "to-pod": ("destination_pod", str),
    "from-ip": ("source_ip", str), "to-ip": ("destination_ip", str),
    "snat-ip": ("source_ip_xlated", str),
    "ipv4": ("ip_version", lambda _v: IPVersion.IPv4),
    "ipv6": ("ip_version", lambda _v: IPVersion.IPv6),
    "ip-version": ("ip_version", _ip_version),
    "from-label": ("source_label", str), "to-label": ("destination_label", str),
    "from-service": ("source_service", str), "to-service": ("destination_service", str),
    "from-port": ("source_port", str), "to-port": ("destination_port", str),
    "verdict": ("verdict", _verdict),
    "drop-reason-desc": ("drop_reason_desc", _drop_reason),
    "http-status": ("http_status_code", str),
    "http-method": ("http_method", str),
    "http-path": ("http_path", str),
    "http-url": ("http_url", str),
    "http-header": ("http_header", _http_header),
    "type": ("event_type", _event_type),
    "protocol": ("protocol", str),
    "from-workload": ("source_workload", _workload),
    "to-workload": ("destination_workload", _workload),
    "from-identity": ("source_identity", _identity),
    "to-identity": ("destination_identity", _identity),
    "node-name": ("node_name", str),
    "node-label": ("node_labels", str),
    "from-cluster": ("source_cluster_name", str),
    "to-cluster": ("destination_cluster_name", str),
    "tcp-flags": ("tcp_flags", _tcp_flags),
    "traffic-direction": ("traffic_direction", _traffic_direction),
    "encrypted": ("encrypted", lambda _v: True),
    "unencrypted": ("encrypted", lambda _v: False),
}
"""Flags that set the same field in left and right."""

_SPLIT: Final[dict[str, tuple[str, str, _Conv]]] = {
    "fqdn": ("source_fqdn", "destination_fqdn", str),
    "pod": ("source_pod", "destination_pod", str),
    "ip": ("source_ip", "destination_ip", str),
    "label": ("source_label", "destination_label", str),
    "service": ("source_service", "destination_service", str),
    "port": ("source_port", "destination_port", str),
    "workload": ("source_workload", "destination_workload", _workload),
    "identity": ("source_identity", "destination_identity", _identity),
    "cluster": ("source_cluster_name", "destination_cluster_name", str),
}
"""Undirected flags: source field in left, destination field in right."""

_NAMESPACE: Final[dict[str, tuple[str, str | None]]] = {
    "namespace": ("ns", None), "from-namespace": ("src_ns", None), "to-namespace": ("dst_ns", None),
    "all-namespaces": ("ns", ""), "from-all-namespaces": ("src_ns", ""),
    "to-all-namespaces": ("dst_ns", ""),
}

NO_VALUE_FLAGS: Final = frozenset({
    "not", "encrypted", "unencrypted", "all-namespaces", "from-all-namespaces",
    "to-all-namespaces", "ipv4", "ipv6",
})
"""Flags that never consume the next argument (pflag `NoOptDefVal`)."""

SHORT_FLAGS: Final = {"n": "namespace", "l": "label", "t": "type", "A": "all-namespaces",
                      "4": "ipv4", "6": "ipv6"}

FILTER_FLAGS: Final = frozenset(
    {"not", "since", "until", "allowlist", "denylist", *_BOTH, *_SPLIT, *_NAMESPACE})

_CONFLICTS: Final[tuple[tuple[str, ...], ...]] = (
    ("from-fqdn", "from-ip", "ip", "fqdn", "from-namespace", "namespace", "from-all-namespaces",
     "all-namespaces"),
    ("from-fqdn", "from-ip", "ip", "fqdn", "from-pod", "pod"),
    ("to-fqdn", "to-ip", "ip", "fqdn", "to-namespace", "namespace", "to-all-namespaces",
     "all-namespaces"),
    ("to-fqdn", "to-ip", "ip", "fqdn", "to-pod", "pod"),
    ("to-pod", "namespace", "all-namespaces"),
    ("from-pod", "namespace", "all-namespaces"),
    ("to-service", "namespace", "all-namespaces"),
    ("from-service", "namespace", "all-namespaces"),
    ("label", "from-label"), ("label", "to-label"),
    ("service", "from-service"), ("service", "to-service"),
    ("port", "to-port"), ("port", "from-port"),
    ("identity", "to-identity"), ("identity", "from-identity"),
    ("workload", "to-workload"), ("workload", "from-workload"),
    ("encrypted", "unencrypted"),
)
"""Flag pairs Hubble refuses to combine in one list (`filters --a and --b cannot be combined`)."""


# --- left/right tracker ------------------------------------------------------------------------


@dataclass
class _Tracker:
    """One list (allow or deny) under construction: Hubble's `filterTracker`."""

    left: dict[str, list[Any]] | None = None
    right: dict[str, list[Any]] | None = None
    ns: list[str] = field(default_factory=list)
    src_ns: list[str] = field(default_factory=list)
    dst_ns: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)

    def add(self, side: str, name: str, value: Any) -> None:
        if getattr(self, side) is None:
            setattr(self, side, {})
        getattr(self, side).setdefault(name, []).append(value)

    def check_conflicts(self) -> None:
        for group in _CONFLICTS:
            used = [f for f in group if f in self.changed]
            if len(used) > 1:
                raise ValueError(f"filters --{used[0]} and --{used[1]} cannot be combined")
        for side in (self.left, self.right):
            if side is not None:
                self._check_namespaces(side)

    def _check_namespaces(self, side: dict[str, list[Any]]) -> None:
        checks = ((self.ns, "source_pod"), (self.ns, "source_service"),
                  (self.ns, "destination_pod"), (self.ns, "destination_service"),
                  (self.src_ns, "source_pod"), (self.src_ns, "source_service"),
                  (self.dst_ns, "destination_pod"), (self.dst_ns, "destination_service"))
        for namespaces, key in checks:
            for ns in namespaces:
                for name in side.get(key, ()):
                    nn = name.split("/")[0] if "/" in name else ""
                    if nn and nn != ns:
                        raise ValueError(f"namespace conflict: {ns!r} does not contain {name!r}")

    def filters(self) -> list[FlowFilter]:
        if self.left is None and self.right is None and not (self.ns or self.src_ns or self.dst_ns):
            return []
        left, right = self.left or {}, self.right or {}
        if self.dst_ns:
            _apply_ns(left, self.dst_ns, "destination")
            _apply_ns(right, self.dst_ns, "destination")
        if self.src_ns:
            _apply_ns(left, self.src_ns, "source")
            _apply_ns(right, self.src_ns, "source")
        if self.ns:
            _apply_ns(left, self.ns, "source")
            _apply_ns(right, self.ns, "destination")
        lf = FlowFilter(**{k: tuple(v) for k, v in left.items()})  # type: ignore[arg-type]
        rf = FlowFilter(**{k: tuple(v) for k, v in right.items()})  # type: ignore[arg-type]
        return [lf] if lf == rf else [lf, rf]


def _apply_ns(ff: dict[str, list[Any]], namespaces: list[str], side: str) -> None:
    """Hubble's `namespaceModifier.applySrc/applyDest`: qualify bare pod/service names with
    every given namespace; with no pod or service filter, filter on the namespace alone."""
    pods, svcs = f"{side}_pod", f"{side}_service"
    if not ff.get(pods) and not ff.get(svcs):
        ff[pods] = [""]
    for key in (pods, svcs):
        qualified: list[str] = []
        for name in ff.get(key, ()):
            if "/" in name:
                qualified.append(name)
            else:
                qualified.extend(f"{ns}/{name}" for ns in namespaces)
        if qualified:
            ff[key] = qualified


# --- building ----------------------------------------------------------------------------------


class FilterBuilder:
    """Feed `hubble observe` filter flags one by one (`set("from-pod", "x")`), then `build()`."""

    def __init__(self) -> None:
        self._allow = _Tracker()
        self._deny: _Tracker | None = None
        self._negate_next = False
        self._raw_allow: list[FlowFilter] = []
        self._raw_deny: list[FlowFilter] = []
        self.since_ns: int | None = None
        self.until_ns: int | None = None

    def set(self, name: str, value: str = "") -> None:
        """Apply one flag (long name, no dashes). Raises ValueError naming what is wrong."""
        if name == "not":
            if self._negate_next:
                raise ValueError("consecutive --not statements")
            self._negate_next = True
            return
        if name in ("allowlist", "denylist"):
            (self._raw_allow if name == "allowlist" else self._raw_deny).extend(
                parse_raw_filters(value, name))
            return
        if self._negate_next:
            self._negate_next = False
            if self._deny is None:
                self._deny = _Tracker()
            tracker = self._deny
        else:
            tracker = self._allow
        _set(tracker, name, value)

    def build(self) -> tuple[list[FlowFilter], list[FlowFilter]]:
        """The (allow, deny) lists; every filter compiled once so bad values fail here."""
        if self._negate_next:
            raise ValueError("trailing --not found in the arguments")
        allow = self._allow.filters() + self._raw_allow
        deny = (self._deny.filters() if self._deny else []) + self._raw_deny
        if self.since_ns is not None or self.until_ns is not None:
            window = {"since_ns": self.since_ns, "until_ns": self.until_ns}
            allow = [FlowFilter(**{**_fields(ff), **window}) for ff in allow or [FlowFilter()]]
        for ff in (*allow, *deny):
            compile_filter(ff)
        return allow, deny


def _fields(ff: FlowFilter) -> dict[str, Any]:
    return {k: getattr(ff, k) for k in FlowFilter.__dataclass_fields__}


def _set(t: _Tracker, name: str, value: str) -> None:
    if name not in t.changed:
        t.changed.append(name)
    if name in _BOTH:
        key, conv = _BOTH[name]
        converted = conv(value)
        t.add("left", key, converted)
        t.add("right", key, converted)
    elif name in _SPLIT:
        src, dst, conv = _SPLIT[name]
        converted = conv(value)
        t.add("left", src, converted)
        t.add("right", dst, converted)
    elif name in _NAMESPACE:
        attr, fixed = _NAMESPACE[name]
        getattr(t, attr).append(value if fixed is None else fixed)
    else:
        raise ValueError(f"unknown filter flag --{name}")
    t.check_conflicts()


def parse_raw_filters(text: str, flag: str = "allowlist") -> list[FlowFilter]:
    """One or more concatenated JSON FlowFilters, as `--allowlist`/`--denylist` take them."""
    decoder, pos = json.JSONDecoder(), 0
    out: list[FlowFilter] = []
    while True:
        while pos < len(text) and text[pos].isspace():
            pos += 1
        if pos >= len(text):
            return out
        try:
            obj, pos = decoder.raw_decode(text, pos)
            if not isinstance(obj, dict):
                raise ValueError("a FlowFilter must be a JSON object")
            out.append(filter_from_json_dict(obj))
        except ValueError as exc:
            raise ValueError(f"invalid --{flag} flag: failed to decode {text!r}: {exc}") from exc


# --- time --------------------------------------------------------------------------------------

_DURATION_UNITS: Final = {"ns": 1, "us": 1_000, "µs": 1_000, "μs": 1_000, "ms": 1_000_000,
                          "s": 1_000_000_000, "m": 60_000_000_000, "h": 3_600_000_000_000}
_DURATION = re.compile(r"([0-9]*(?:\.[0-9]*)?)(ns|us|µs|μs|ms|s|m|h)")


def parse_go_duration(text: str) -> int | None:
    """Go `time.ParseDuration` in nanoseconds (`1h30m`, `300ms`, `-1.5h`), None if not one."""
    sign, body = (-1, text[1:]) if text.startswith("-") else (1, text.removeprefix("+"))
    if body == "0":
        return 0
    if not body:
        return None
    total, pos = 0.0, 0
    while pos < len(body):
        m = _DURATION.match(body, pos)
        if not m or m.group(1) in ("", "."):
            return None
        total += float(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    return sign * round(total)


_SHORT_LAYOUTS: Final = (
    (re.compile(r"^(\d{4})-(\d{2})-(\d{2})$"), "day"),
    (re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2})(Z|[+-]\d{2}:\d{2})$"), "hour"),
    (re.compile(r"^(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2})(Z|[+-]\d{2}:\d{2})$"), "minute"),
)


def parse_time(text: str, now_ns: int) -> int:
    """`--since`/`--until` (hubble `time.FromString`): a duration back from now, else a date.

    Accepts a Go duration, `2006-01-02`, `2006-01-02T15Z07:00`, `2006-01-02T15:04Z07:00`,
    RFC 3339 with up to 9 fractional digits, and RFC 1123 with a numeric zone. Returns epoch ns.
    """
    d = parse_go_duration(text)
    if d is not None:
        return now_ns - d
    for regex, kind in _SHORT_LAYOUTS:
        if m := regex.match(text):
            g = m.groups()
            if kind == "day":
                return parse_timestamp(f"{g[0]}-{g[1]}-{g[2]}T00:00:00Z")
            minute = g[4] if kind == "minute" else "00"
            return parse_timestamp(f"{g[0]}-{g[1]}-{g[2]}T{g[3]}:{minute}:00{g[-1]}")
    try:
        return parse_timestamp(text)
    except ValueError:
        pass
    try:
        dt = datetime.strptime(text, "%a, %d %b %Y %H:%M:%S %z")
    except ValueError:
        raise ValueError(f"failed to convert {text} to time") from None
    return int(dt.astimezone(UTC).timestamp()) * 1_000_000_000


# --- argv and matching -------------------------------------------------------------------------


def split_flag(argv: Sequence[str], i: int) -> tuple[str, str | None, int]:
    """Read the flag at argv[i]: (long name, inline value or None, index after the flag)."""
    arg = argv[i]
    if arg.startswith("--"):
        name, sep, value = arg[2:].partition("=")
        return name, (value if sep else None), i + 1
    if arg.startswith("-") and len(arg) >= 2:
        name = SHORT_FLAGS.get(arg[1], arg[1])
        rest = arg[2:].removeprefix("=")
        return name, (rest if rest else None), i + 1
    raise ValueError(f"unexpected argument {arg!r}")


def build_filters(argv: Sequence[str], now_ns: int | None = None,
                  ) -> tuple[list[FlowFilter], list[FlowFilter]]:
    """Turn `hubble observe` filter arguments into (allow, deny) FlowFilter lists.

    Args:
        argv: e.g. `["--from-pod", "shop/api", "--not", "--verdict", "FORWARDED"]`;
            `--flag=value`, `-n shop`, `-nshop`, `-A`, `-4`/`-6` all work.
        now_ns: the clock for relative `--since 5m`; required only when one is given.

    Raises:
        ValueError: unknown flag, missing value, a value Hubble would reject, or flags Hubble
            refuses to combine.
    """
    builder = FilterBuilder()
    i = 0
    while i < len(argv):
        name, value, i = split_flag(argv, i)
        if name not in FILTER_FLAGS:
            raise ValueError(f"unknown filter flag --{name}")
        if value is None and name not in NO_VALUE_FLAGS:
            if i >= len(argv):
                raise ValueError(f"flag needs an argument: --{name}")
            value, i = argv[i], i + 1
        apply_flag(builder, name, value or "", now_ns)
    return builder.build()


def apply_flag(builder: FilterBuilder, name: str, value: str, now_ns: int | None) -> None:
    """Apply one filter flag, resolving `--since`/`--until` against `now_ns`."""
    if name in ("since", "until"):
        if now_ns is None and parse_go_duration(value) is not None:
            raise ValueError(f"--{name} {value}: a relative time needs the current time")
        t = parse_time(value, now_ns or 0)
        if name == "since":
            builder.since_ns = t
        else:
            builder.until_ns = t
        return
    builder.set(name, value)


def compile_filters(allow: Iterable[FlowFilter], deny: Iterable[FlowFilter]) -> Predicate:
    """Hubble's `Apply`: (no allow filters, or any matches) and no deny filter matches."""
    allow_p = [compile_filter(ff) for ff in allow]
    deny_p = [compile_filter(ff) for ff in deny]

    def match(flow: Flow) -> bool:
        if allow_p and not any(p(flow) for p in allow_p):
            return False
        return not any(p(flow) for p in deny_p)

    return match


def matches(flow: Flow, allow: Iterable[FlowFilter], deny: Iterable[FlowFilter]) -> bool:
    """Does `flow` pass these lists? (Compile once with `compile_filters` for many flows.)"""
    return compile_filters(allow, deny)(flow)


__all__ = [
    "FILTER_FLAGS",
    "NO_VALUE_FLAGS",
    "SHORT_FLAGS",
    "EventTypeFilter",
    "FilterBuilder",
    "FlowFilter",
    "apply_flag",
    "build_filters",
    "compile_filters",
    "filter_from_json_dict",
    "filter_to_json_dict",
    "matches",
    "parse_go_duration",
    "parse_label_selector",
    "parse_namespaced_name",
    "parse_raw_filters",
    "parse_time",
    "split_flag",
]
