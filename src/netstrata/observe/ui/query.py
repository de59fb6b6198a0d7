"""What the page asks for, in `observe`'s own terms: a query string -> filters -> JSON.

Every query parameter except `last` and `q` is an `observe` filter flag under its long name
(`from-pod=shop/api`, `verdict=DROPPED`, `not=&verdict=FORWARDED`); parameters keep their
order, so `not` negates the parameter after it exactly as `--not` does on the command line.
`q` holds `observe` flags as typed (`--to-port 80 --http-method GET`) and is applied after
the named parameters. Both go through `observe.filters.build_filters`, so the page filters
exactly as `netstrata observe` and `hubble observe` do, with the same errors.

Pure: no sockets, no clock (the caller passes `now_ns` for relative `since=5m`).
"""

from __future__ import annotations

import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qsl

from netstrata.observe.filters import FILTER_FLAGS, NO_VALUE_FLAGS, build_filters, compile_filters
from netstrata.observe.flow import Flow, format_timestamp
from netstrata.observe.render import flow_type_text, host_names, identity_text, verdict_text
from netstrata.observe.servicemap import l7_text, port_text, verdict_class

DEFAULT_ROWS: Final = 200
MAX_ROWS: Final = 5000
"""The table shows the newest rows; more than a few thousand is a file, not a page."""
_TRUE_WORDS: Final = ("", "1", "true", "on", "yes")


@dataclass(frozen=True, slots=True)
class FlowQuery:
    """A parsed page request: the observe argv it stands for, and how many rows to send."""

    argv: tuple[str, ...]
    last: int = DEFAULT_ROWS


def parse_query(query: str) -> FlowQuery:
    """Turn `from-pod=a&verdict=DROPPED&q=--port+80&last=50` into observe arguments.

    Blank values of value-taking flags are skipped (an empty form field means "any").

    Raises:
        ValueError: an unknown parameter, a bad `last`, or `q` that does not split.
    """
    argv: list[str] = []
    extra: list[str] = []
    last = DEFAULT_ROWS
    for name, value in parse_qsl(query, keep_blank_values=True):
        if name == "last":
            if not value.isdigit() or not 0 < int(value) <= MAX_ROWS:
                raise ValueError(f"last: expected 1-{MAX_ROWS}, found {value!r}")
            last = int(value)
        elif name == "q":
            try:
                extra = shlex.split(value)
            except ValueError as exc:
                raise ValueError(f"q: {exc}") from exc
        elif name in NO_VALUE_FLAGS:
            if value.lower() in _TRUE_WORDS:
                argv.append(f"--{name}")
        elif name in FILTER_FLAGS:
            if value.strip():
                argv.append(f"--{name}={value.strip()}")
        else:
            raise ValueError(
                f"unknown filter {name!r}: expected an observe flag name "
                "(from-pod, to-pod, namespace, verdict, protocol, port, ...)"
            )
    return FlowQuery(tuple(argv + extra), last)


def select(flows: Sequence[Flow], query: FlowQuery, now_ns: int) -> list[Flow]:
    """The flows matching the query's filters, in arrival order.

    Raises:
        ValueError: the filters are not ones `observe` accepts (its message).
    """
    allow, deny = build_filters(query.argv, now_ns)
    match = compile_filters(allow, deny)
    return [f for f in flows if match(f)]


def flow_row(flow: Flow) -> dict[str, object]:
    """One table row: the columns of Hubble UI's flow table, as display text."""
    src, dst = host_names(flow)
    src_id = flow.source.identity if flow.source else 0
    dst_id = flow.destination.identity if flow.destination else 0
    return {
        "time": format_timestamp(flow.time_ns),
        "time_ns": flow.time_ns,
        "source": src,
        "source_identity": identity_text(src_id),
        "destination": dst,
        "destination_identity": identity_text(dst_id),
        "port": port_text(flow),
        "l7": l7_text(flow),
        "type": flow_type_text(flow),
        "verdict": verdict_text(flow),
        "verdict_class": verdict_class(flow) or "",
        "drop_reason": flow.drop_reason_desc,
        "is_reply": flow.is_reply,
        "node": flow.node_name,
        "summary": flow.summary,
    }


__all__ = ["DEFAULT_ROWS", "MAX_ROWS", "FlowQuery", "flow_row", "parse_query", "select"]
