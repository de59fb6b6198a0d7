"""`hubble observe -o compact|dict|json|jsonpb|table`, in Hubble's exact shapes.

Mirrors Hubble's printer (`hubble/pkg/printer/printer.go`):

* compact: `TIME [node]: SRC (ID) ARROW DST (ID) TYPE VERDICT (SUMMARY)`. The arrow is `->`,
  `<-` with source and destination swapped back for replies, `<>` when `is_reply` is unknown.
  Endpoints print as `ns/pod:port` (IP translation, the default) or `ip:port` (`--numeric`);
  identities as `(ID:n)`, reserved ones by name, `(world)`. TYPE is the L7 record kind
  (`http-request`, `dns-response proxy`), else by event type: the trace point (`to-endpoint`),
  the drop reason text (`Policy denied`), or `policy-verdict:L3-L4 INGRESS`. For policy-verdict
  events VERDICT reads `ALLOWED`/`DENIED`/`AUDITED`, and with `--print-policy-names` gains
  ` BY name (Kind), ...` from the `*_allowed_by`/`*_denied_by` list of the flow's direction.
* dict: `KEY: value` blocks separated by `------------`.
* table: tab-aligned columns (Go `tabwriter`, min width 2, padding 3), buffered until `close()`.
* json / jsonpb: one `GetFlowsResponse` object per line (`flow.to_json_dict`).

Times print in UTC in the `--time-format` layout (default `StampMilli`, `Jan _2 15:04:05.000`).
Text outputs neutralise terminal escapes as Hubble does (ESC -> `^[`, CR -> `\\r`).
The printer returns strings; writing them is the caller's business.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final, Literal

from netstrata.datapath.drop_reasons import DESCRIPTIONS, DropReason
from netstrata.observe.flow import (
    DNS,
    HTTP,
    MATCH_TYPE_NAMES,
    RESERVED_IDENTITY_NAMES,
    SCTP,
    TCP,
    TRACE_SUBTYPE_NAMES,
    UDP,
    AuthType,
    EventKind,
    Flow,
    Kafka,
    Policy,
    TrafficDirection,
    Verdict,
    dumps,
    to_json_dict,
)

Output = Literal["compact", "dict", "json", "jsonpb", "table"]
OUTPUTS: Final = ("compact", "dict", "json", "jsonpb", "table")

TIME_FORMATS: Final = ("StampMilli", "YearMonthDay", "YearMonthDayHour", "YearMonthDayHourMinute",
                       "RFC3339", "RFC3339Milli", "RFC3339Micro", "RFC3339Nano", "RFC1123Z")

_MONTHS: Final = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov",
                  "Dec")
_DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
DICT_SEPARATOR: Final = "------------"


@dataclass(frozen=True, slots=True)
class RenderOptions:
    """Output flags of `hubble observe`."""

    output: Output = "compact"
    time_format: str = "StampMilli"
    """A name from TIME_FORMATS, case-insensitive; unknown names fall back to StampMilli."""
    print_node_name: bool = False
    print_policy_names: bool = False
    ip_translation: bool = True
    """False with `--numeric`: show IPs instead of pod/service/DNS names."""


def format_time(time_ns: int, time_format: str = "StampMilli") -> str:
    """Go `time.Format` of the named hubble layout, in UTC; fractions truncate like Go's."""
    secs, nanos = divmod(time_ns, 1_000_000_000)
    t = datetime.fromtimestamp(secs, UTC)
    date, hms = t.strftime("%Y-%m-%d"), t.strftime("%H:%M:%S")
    name = time_format.lower()
    trimmed = {"rfc3339": 0, "rfc3339milli": 3, "rfc3339micro": 6, "rfc3339nano": 9}
    if name == "yearmonthday":
        return date
    if name == "yearmonthdayhour":
        return f"{date}T{t.hour:02d}Z"
    if name == "yearmonthdayhourminute":
        return f"{date}T{t.hour:02d}:{t.minute:02d}Z"
    if name in trimmed:
        # Go's `.999…` layouts drop trailing zeros, and the dot when nothing is left.
        frac = f"{nanos:09d}"[: trimmed[name]].rstrip("0")
        return f"{date}T{hms}{'.' + frac if frac else ''}Z"
    if name == "rfc1123z":
        return f"{_DAYS[t.weekday()]}, {t.day:02d} {_MONTHS[t.month - 1]} {t.year} {hms} +0000"
    return f"{_MONTHS[t.month - 1]} {t.day:>2} {hms}.{nanos // 1_000_000:03d}"


def identity_text(identity: int) -> str:
    """`(ID:48213)`, or `(world)`/`(host)`/... for reserved identities (0 is `(unknown)`)."""
    if identity in RESERVED_IDENTITY_NAMES:
        return f"({RESERVED_IDENTITY_NAMES[identity]})"
    return f"(ID:{identity})"


def _ports(flow: Flow) -> tuple[str, str]:
    if isinstance(flow.l4, TCP | UDP | SCTP):
        return str(flow.l4.source_port), str(flow.l4.destination_port)
    return "", ""


def _hostname(ip: str, port: str, ns: str, pod: str, svc: str, names: tuple[str, ...],
              translate: bool) -> str:
    host = ip
    if translate:
        if pod:
            host = f"{ns}/{pod}" if ns else pod
        elif svc:
            host = f"{ns}/{svc}" if ns else svc
        elif names:
            host = ",".join(names)
    if port and port != "0":
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return host


def host_names(flow: Flow, ip_translation: bool = True) -> tuple[str, str]:
    """Printed source and destination (Hubble `GetHostNames`)."""
    if flow.ip is None:
        if flow.ethernet is not None:
            return flow.ethernet.source, flow.ethernet.destination
        return "", ""
    src_ns = flow.source.namespace if flow.source else ""
    dst_ns = flow.destination.namespace if flow.destination else ""
    src_pod = flow.source.pod_name if flow.source else ""
    dst_pod = flow.destination.pod_name if flow.destination else ""
    src_svc = dst_svc = ""
    if flow.source_service:
        src_ns, src_svc = flow.source_service.namespace, flow.source_service.name
    if flow.destination_service:
        dst_ns, dst_svc = flow.destination_service.namespace, flow.destination_service.name
    sport, dport = _ports(flow)
    return (_hostname(flow.ip.source, sport, src_ns, src_pod, src_svc, flow.source_names,
                      ip_translation),
            _hostname(flow.ip.destination, dport, dst_ns, dst_pod, dst_svc,
                      flow.destination_names, ip_translation))


def _drop_reason_text(code: int) -> str:
    try:
        return DESCRIPTIONS[DropReason(code)]
    except ValueError:
        return f"{code}, 0"  # Cilium's DropReasonExt fallback for a code it has no text for


def flow_type_text(flow: Flow) -> str:
    """The TYPE column (Hubble `GetFlowType`)."""
    if flow.l7 is not None:
        kind = flow.l7.type.name.lower()
        rec = flow.l7.record
        if isinstance(rec, HTTP):
            return f"http-{kind}"
        if isinstance(rec, DNS):
            return f"dns-{kind} {rec.observation_source}"
        if isinstance(rec, Kafka):
            return f"kafka-{kind}"
        return f"l7-{kind}"
    ev = flow.event_type
    kind_num = ev.type if ev else 0
    sub = (ev.sub_type if ev else 0) & 0xFF  # Cilium casts the sub-type to uint8
    if kind_num == EventKind.TRACE:
        return TRACE_SUBTYPE_NAMES.get(sub, str(sub))
    if kind_num == EventKind.DROP:
        return _drop_reason_text(sub)
    if kind_num == EventKind.POLICY_VERDICT:
        match = MATCH_TYPE_NAMES.get(int(flow.policy_match_type), "unknown")
        return f"policy-verdict:{match} {flow.traffic_direction.name}"
    return "UNKNOWN"


def _policy_names(policies: tuple[Policy, ...]) -> str:
    named = [f"{p.name} ({p.kind})" for p in policies if p.kind and p.name]
    return " BY " + ", ".join(named) if named else ""


def verdict_text(flow: Flow, policy_names: bool = False) -> str:
    """The VERDICT column (Hubble `getVerdict`)."""
    is_pv = flow.event_type is not None and flow.event_type.type == EventKind.POLICY_VERDICT
    egress = flow.traffic_direction == TrafficDirection.EGRESS
    ingress = flow.traffic_direction == TrafficDirection.INGRESS
    if not is_pv:
        return flow.verdict.name
    if flow.verdict in (Verdict.FORWARDED, Verdict.REDIRECTED):
        by = flow.egress_allowed_by if egress else flow.ingress_allowed_by if ingress else ()
        return "ALLOWED" + (_policy_names(by) if policy_names else "")
    if flow.verdict in (Verdict.DROPPED, Verdict.ERROR):
        by = flow.egress_denied_by if egress else flow.ingress_denied_by if ingress else ()
        return "DENIED" + (_policy_names(by) if policy_names else "")
    if flow.verdict == Verdict.AUDIT:
        return "AUDITED"
    return flow.verdict.name


def summary_text(flow: Flow) -> str:
    """The SUMMARY column: the flow's Summary plus `; Auth: <type>` when auth is enabled."""
    if flow.auth_type != AuthType.DISABLED:
        return f"{flow.summary}; Auth: {flow.auth_type.name}"
    return flow.summary


def _escape(text: str) -> str:
    return text.replace("\x1b", "^[").replace("\r", "\\r")


def render_compact(flow: Flow, opts: RenderOptions = RenderOptions()) -> str:
    """One compact line, newline-terminated."""
    src, dst = host_names(flow, opts.ip_translation)
    src_id = identity_text(flow.source.identity if flow.source else 0)
    dst_id = identity_text(flow.destination.identity if flow.destination else 0)
    arrow = "->"
    if flow.is_reply is None:
        arrow = "<>"
    elif flow.is_reply:
        src, dst, src_id, dst_id, arrow = dst, src, dst_id, src_id, "<-"
    node = f" [{flow.node_name}]" if opts.print_node_name else ""
    line = (f"{format_time(flow.time_ns, opts.time_format)}{node}: {src} {src_id} {arrow} "
            f"{dst} {dst_id} {flow_type_text(flow)} "
            f"{verdict_text(flow, opts.print_policy_names)} ({summary_text(flow)})\n")
    return _escape(line)


def render_dict(flow: Flow, opts: RenderOptions = RenderOptions(), first: bool = True) -> str:
    """One dict block; every block after the first starts with the separator line."""
    src, dst = host_names(flow, opts.ip_translation)
    lines = [] if first else [DICT_SEPARATOR]
    lines.append(f"  TIMESTAMP: {format_time(flow.time_ns, opts.time_format)}")
    if opts.print_node_name:
        lines.append(f"       NODE: {flow.node_name}")
    lines += [f"     SOURCE: {src}", f"DESTINATION: {dst}", f"       TYPE: {flow_type_text(flow)}",
              f"    VERDICT: {verdict_text(flow, opts.print_policy_names)}",
              f"    SUMMARY: {summary_text(flow)}"]
    return _escape("\n".join(lines) + "\n")


def render_json(flow: Flow) -> str:
    """One `-o json`/`-o jsonpb` line, newline-terminated."""
    return dumps(to_json_dict(flow)) + "\n"


def _table_row(flow: Flow, opts: RenderOptions) -> list[str]:
    src, dst = host_names(flow, opts.ip_translation)
    row = [format_time(flow.time_ns, opts.time_format)]
    if opts.print_node_name:
        row.append(flow.node_name)
    return row + [src, dst, flow_type_text(flow), verdict_text(flow, opts.print_policy_names),
                  summary_text(flow)]


def tabulate(rows: list[list[str]], minwidth: int = 2, padding: int = 3) -> str:
    """Go `text/tabwriter` with flags 0 and a space pad: every cell but the last of a line is
    padded to its column's width (widest cell + padding, at least minwidth)."""
    widths: list[int] = []
    for row in rows:
        for j, cell in enumerate(row[:-1]):
            w = max(minwidth, len(cell) + padding)
            if j == len(widths):
                widths.append(w)
            elif w > widths[j]:
                widths[j] = w
    return "".join("".join(c.ljust(widths[j]) for j, c in enumerate(r[:-1])) + r[-1] + "\n"
                   for r in rows)


def render_table(flows: Iterable[Flow], opts: RenderOptions = RenderOptions()) -> str:
    """The whole table, header first (tabwriter needs every row before it can align)."""
    header = ["TIMESTAMP"] + (["NODE"] if opts.print_node_name else [])
    header += ["SOURCE", "DESTINATION", "TYPE", "VERDICT", "SUMMARY"]
    rows = [header] + [[_escape(c) for c in _table_row(f, opts)] for f in flows]
    return tabulate(rows) if len(rows) > 1 else ""


def render_lost_compact(num_lost: int, source: str, time_ns: int,
                        time_format: str = "StampMilli") -> str:
    """The compact line a follower prints for a `lost_events` response."""
    return f"{format_time(time_ns, time_format)} EVENTS LOST: {source} CPU(0) {num_lost}\n"


class Printer:
    """Incremental printer for follow mode: `write(flow)` returns the text to emit now;
    `close()` returns what was held back (the table)."""

    def __init__(self, opts: RenderOptions = RenderOptions()) -> None:
        if opts.output not in OUTPUTS:
            raise ValueError(f"invalid output format: {opts.output}")
        self.opts = opts
        self._count = 0
        self._table: list[Flow] = []

    def write(self, flow: Flow) -> str:
        first = self._count == 0
        self._count += 1
        out = self.opts.output
        if out == "compact":
            return render_compact(flow, self.opts)
        if out == "dict":
            return render_dict(flow, self.opts, first=first)
        if out == "table":
            self._table.append(flow)
            return ""
        return render_json(flow)

    def close(self) -> str:
        text = render_table(self._table, self.opts) if self.opts.output == "table" else ""
        self._table = []
        return text


def render_flows(flows: Iterable[Flow], opts: RenderOptions = RenderOptions()) -> str:
    """Everything `hubble observe` would print for these flows, in order."""
    printer = Printer(opts)
    return "".join(printer.write(f) for f in flows) + printer.close()


__all__ = [
    "DICT_SEPARATOR",
    "OUTPUTS",
    "TIME_FORMATS",
    "Output",
    "Printer",
    "RenderOptions",
    "flow_type_text",
    "format_time",
    "host_names",
    "identity_text",
    "render_compact",
    "render_dict",
    "render_flows",
    "render_json",
    "render_lost_compact",
    "render_table",
    "summary_text",
    "tabulate",
    "verdict_text",
]
