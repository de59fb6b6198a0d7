"""The agent's state as Prometheus gauges: identities, endpoints, policies, time to enforce,
map fill. Flow-derived metrics are counted by `FlowHub.record`; this module covers the rest.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Final

from netstrata.agent.flowhub import FlowHub
from netstrata.agent.node import NodeAgent
from netstrata.datapath.loader.mapusage import map_usage
from netstrata.lab.simulate import ReferenceLab
from netstrata.observe.metrics import Metrics

log = logging.getLogger(__name__)

_LOCAL_SCOPE: Final = 1 << 24
"""Identities at or above this are node-local (CIDR, FQDN), as Cilium's local scope bit."""
_RESERVED_MAX: Final = 255


def identity_kind(identity: int) -> str:
    """`reserved`, `cluster_local` or `node_local` (Cilium's `cilium_identity{type}` values)."""
    if identity <= _RESERVED_MAX:
        return "reserved"
    return "node_local" if identity >= _LOCAL_SCOPE else "cluster_local"


def record_sync(
    hub: FlowHub,
    agent: NodeAgent,
    view: ReferenceLab,
    policies: int,
    revision: int,
    seen: Sequence[tuple[str, int, int]],
) -> None:
    """After a successful sync: refresh enrichment and the state gauges, and observe the time
    from the newest manifest write (`seen`: (path, mtime_ns, size)) to the kernel written."""
    local_ids = {str(ip): info.endpoint_id for ip, info in agent.datapath.endpoints().items()}
    rules = {ep_id: (p.cookies, p.revision) for ep_id, p in agent.policies.items()}
    hub.enricher.update(view, rules, local_ids)
    m = hub.metrics
    m.policy_change("success")
    kinds = Counter(identity_kind(i) for i in view.identities)
    m.set_identities({k: kinds.get(k, 0) for k in ("reserved", "cluster_local", "node_local")})
    m.set_endpoints(len(agent.endpoints), {"ready": len(agent.endpoints)})
    m.set_policies(policies, revision)
    if seen:
        newest_ns = max(mtime for _, mtime, _ in seen)
        delay = (time.time_ns() - newest_ns) / 1e9
        if 0 <= delay < 3600:  # a restart re-reading old files is not a policy change
            m.observe_time_to_enforce(delay)


def sample_maps(metrics: Metrics, pin_dir: Path) -> None:
    """Entries, capacity and pressure of every pinned map (runs in a thread)."""
    try:
        usage = map_usage(pin_dir)
    except OSError as exc:
        log.warning("cannot read map usage under %s: %s", pin_dir, exc)
        return
    for u in usage:
        metrics.set_map_usage(u.name, u.entries, u.capacity)


__all__ = ["identity_kind", "record_sync", "sample_maps"]
