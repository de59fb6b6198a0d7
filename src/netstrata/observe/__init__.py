"""Observability: every verdict of every stratum as a Hubble-shaped flow record.

* `flow`: the Flow record and its JSON exactly as `hubble observe -o json` prints it.
* `builders`: datapath and proxy decisions -> flows (drops, policy verdicts, L7 records).
* `filters`: `hubble observe` filter flags -> allow/deny FlowFilters, and matching.
* `options`: the whole `observe` command line (filters, selection, output).
* `render`: compact / dict / json / table output.
* `store`: a bounded flow ring with follow-mode subscriptions, merging, JSON-lines files.
* `metrics`: Prometheus metrics named after their Hubble and Cilium counterparts (import it
  directly: it needs `prometheus_client`, which the rest of the package does not).

Everything is synchronous and does no network I/O; `store.Subscription.wait_new()` is the one
coroutine, and `store.FlowLogWriter`/`read_flows` touch files.
"""

from netstrata.observe.builders import (
    Packet,
    PolicyRef,
    flow_from_l7_dns,
    flow_from_l7_http,
    flow_from_l7_kafka,
    flow_from_l34,
)
from netstrata.observe.filters import (
    EventTypeFilter,
    FlowFilter,
    build_filters,
    compile_filters,
    matches,
)
from netstrata.observe.flow import (
    Endpoint,
    Flow,
    FlowType,
    L7FlowType,
    TraceObservationPoint,
    TrafficDirection,
    Verdict,
    from_json_dict,
    to_json_dict,
)
from netstrata.observe.options import ObserveArgs, parse_observe_args
from netstrata.observe.render import RenderOptions, render_compact, render_flows
from netstrata.observe.store import FlowLogWriter, FlowStore, merge_flows, read_flow_log

__all__ = [
    "Endpoint",
    "EventTypeFilter",
    "Flow",
    "FlowFilter",
    "FlowLogWriter",
    "FlowStore",
    "FlowType",
    "L7FlowType",
    "ObserveArgs",
    "Packet",
    "PolicyRef",
    "RenderOptions",
    "TraceObservationPoint",
    "TrafficDirection",
    "Verdict",
    "build_filters",
    "compile_filters",
    "flow_from_l34",
    "flow_from_l7_dns",
    "flow_from_l7_http",
    "flow_from_l7_kafka",
    "from_json_dict",
    "matches",
    "merge_flows",
    "parse_observe_args",
    "read_flow_log",
    "render_compact",
    "render_flows",
    "to_json_dict",
]
