"""The kernel side of one node's agent: resolved policy and identities into pinned maps.

`NodeAgent.sync(view)` takes the cluster's resolved state as the reference run computes it
(`ReferenceLab`: `ClusterPolicyEngine` per cluster, identities, the ipcache view) and brings
this node's kernel maps to it, writing only the difference (`KernelDatapath.apply_policy` and
`sync_ipcache` diff against what the kernel holds, make-before-break). There is one truth:
nothing here resolves policy, it only encodes what `policy/` decided.

Order of one sync, so no packet meets a half-applied state it could be wrongly allowed by:
ipcache first (peers' new identities become known), then each local endpoint's policy
entries, then its endpoint entry (identity and enforcement flags) and programs.

Syncs of one agent are serialised (`NodeAgent._syncing`): a lab programs the IPs its DNS
proxies learn from a thread of its own (`sync(view, maps_only=True)`, bpf(2) map writes only,
so an answer the proxy holds never waits behind netlink work such as building another lab),
while manifest changes sync from the netlink thread.

The node's ipcache is the reference's `ipcache()` for this node written out as prefixes:
every pod IP of every cluster -> its identity; node IPs -> host (1) for this node and
remote-node (6) for the others; the cluster's kube-apiserver -> 7; CIDR identities of the
cluster's rules; learned FQDN IPs; and 0.0.0.0/0 -> world (2) unless a rule owns it.
"""

from __future__ import annotations

import collections
import logging
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from ipaddress import IPv4Address, IPv4Network
from pathlib import Path

from netstrata.agent.engine import HOST, KUBE_APISERVER, REMOTE_NODE, WORLD
from netstrata.datapath.kernel import Delta, KernelDatapath, endpoint_flags, policy_change
from netstrata.datapath.maps import EndpointInfo, FlowEvent
from netstrata.datapath.mesh_capture import MeshCaptureTable, capture_table
from netstrata.datapath.proxy_routing import install_proxy_routing
from netstrata.lab.simulate import ReferenceLab
from netstrata.netns import ifindex
from netstrata.policy.types import ResolvedPolicy

log = logging.getLogger(__name__)

DEFAULT_FLOW_CAPACITY = 4095
"""Flows kept per node (Hubble's default ring size); older ones are overwritten."""


@dataclass(frozen=True, slots=True)
class LocalEndpoint:
    """A pod on this node: its workload ref, addresses and host-side veth."""

    ref: str
    ips: tuple[str, ...]
    host_if: str


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one sync wrote."""

    revision: int
    endpoints: int
    policy: Delta
    ipcache: Delta
    identities_changed: int

    @property
    def writes(self) -> int:
        d = (self.policy, self.ipcache)
        return sum(x.added + x.changed + x.removed for x in d) + self.identities_changed


def _sum(deltas: Sequence[Delta]) -> Delta:
    return Delta(sum(d.added for d in deltas), sum(d.changed for d in deltas),
                 sum(d.removed for d in deltas))


class NodeAgent:
    """One node's agent state: its datapath, its endpoints, the policies it last applied."""

    def __init__(self, cluster: str, node: str, netns: str | None, pin_dir: Path | str,
                 endpoints: Sequence[LocalEndpoint], node_ips: Mapping[tuple[str, str], str],
                 *, flow_capacity: int = DEFAULT_FLOW_CAPACITY,
                 mesh_capture: bool = False) -> None:
        self.cluster, self.node, self.netns = cluster, node, netns
        self.pin_dir = Path(pin_dir)
        self.endpoints = tuple(endpoints)
        self.node_ips = dict(node_ips)
        self.flows: collections.deque[FlowEvent] = collections.deque(maxlen=flow_capacity)
        self.policies: dict[int, ResolvedPolicy] = {}
        self.endpoint_ids: dict[str, int] = {}
        """Workload ref -> endpoint id, as of the last sync."""
        self._dp: KernelDatapath | None = None
        self._attached: set[str] = set()
        self._ifindex: dict[str, int] = {}
        """Workload ref -> its host-side veth's ifindex, kept from the attach (no netlink
        round trip when only the endpoint's identity changes)."""
        self._syncing = threading.Lock()
        self.mesh_capture = mesh_capture
        """Write the mesh-capture maps (meshed TCP goes to the node proxy's mesh listeners).
        Off until the node runs those listeners: with the maps written and no listener, meshed
        connections are dropped (PROXY_LOOKUP_FAILED), as an L7 port without its proxy is."""

    @property
    def datapath(self) -> KernelDatapath:
        if self._dp is None:
            raise RuntimeError("NodeAgent.open() first")
        return self._dp

    def open(self) -> None:
        """Load the programs and open (or, after a restart, re-open) the pinned maps."""
        self._dp = KernelDatapath(self.pin_dir, netns=self.netns)
        # redirected packets must be delivered to the node proxy, not forwarded
        install_proxy_routing(self.netns)

    # ------------------------------------------------------------------------------ sync

    def ipcache_entries(self, view: ReferenceLab) -> dict[str, int]:
        """Prefix -> identity for this node, as `view.ipcache()` answers for any address."""
        topo = view.topology
        entries: dict[str, int] = {"0.0.0.0/0": WORLD}
        for prefix, ident in view.engine(self.cluster).cidr_prefixes().items():
            entries[prefix] = ident
        for ip, ident in view.fqdn_ips.get(self.cluster, {}).items():
            entries[f"{ip}/32"] = ident
        api = topo.apiserver_ips.get(self.cluster)
        if api:
            entries[f"{api}/32"] = KUBE_APISERVER
        for (cluster, node), ip in self.node_ips.items():
            mine = (cluster, node) == (self.cluster, self.node)
            entries[f"{ip}/32"] = HOST if mine else REMOTE_NODE
        for p in topo.pods():
            for ip in p.ips:
                entries[f"{ip}/32"] = view.identity_of[p.ref]
        return {k: v for k, v in entries.items() if ":" not in k}

    def mesh_entries(self, view: ReferenceLab) -> dict[str, MeshCaptureTable]:
        """Address -> capture table of every meshed workload the node may talk to (a source
        needs to know its destination is meshed; a table's ports and ranges matter only on
        the workload's own node). A malformed capture annotation captures everything."""
        if view.mesh is None:
            return {}
        out: dict[str, MeshCaptureTable] = {}
        for placed in view.topology.pods():
            endpoint = view.mesh_endpoint(placed)
            if endpoint is None or not endpoint.enrollment().meshed:
                continue
            table, error = capture_table(endpoint.annotations)
            if error is not None:
                log.warning("workload %s: %s; captured on every port", placed.ref, error)
            out.update((ip, table) for ip in placed.ips if ":" not in ip)
        return out

    def sync(self, view: ReferenceLab, *, maps_only: bool = False) -> SyncResult:
        """Bring this node's maps to `view`; only differences are written.

        `maps_only` does no netlink (safe beside another thread's netlink work): endpoints not
        attached yet are left to the next full sync, which attaches them."""
        with self._syncing:
            return self._sync(view, maps_only)

    def _sync(self, view: ReferenceLab, maps_only: bool) -> SyncResult:
        dp = self.datapath
        want: dict[str | IPv4Network | IPv4Address, int] = {}
        want.update(self.ipcache_entries(view))
        ipcache = dp.sync_ipcache(want)
        if self.mesh_capture:
            dp.sync_mesh(self.mesh_entries(view))
        deltas, changed, revision = [], 0, 0
        known = dp.endpoints()
        for ep in self.endpoints:
            placed = view.topology.workloads[ep.ref]
            resolved = view.endpoint_policy(placed)
            if resolved is None:
                raise LookupError(f"no resolved policy for endpoint {ep.ref}")
            identity = view.identity_of[ep.ref]
            # hand over the delta from what this process last applied (cost of the change, not
            # of the policy); the first sync after a start diffs against the kernel instead
            previous = self.policies.get(resolved.endpoint_id)
            deltas.append(dp.apply_policy(resolved) if previous is None
                          else dp.apply_change(policy_change(previous, resolved)))
            self.policies[resolved.endpoint_id] = resolved
            self.endpoint_ids[ep.ref] = resolved.endpoint_id
            revision = max(revision, resolved.revision)
            flags = endpoint_flags(resolved.ingress_enforced, resolved.egress_enforced,
                                   resolved.audit)
            if maps_only and ep.ref not in self._attached:
                continue
            changed += self._ensure_endpoint(ep, resolved.endpoint_id, identity, int(flags), known)
        result = SyncResult(revision, len(self.endpoints), _sum(deltas), ipcache, changed)
        log.info("node %s/%s synced revision %d: policy +%d ~%d -%d, ipcache +%d ~%d -%d",
                 self.cluster, self.node, revision, result.policy.added, result.policy.changed,
                 result.policy.removed, ipcache.added, ipcache.changed, ipcache.removed)
        return result

    def _ensure_endpoint(self, ep: LocalEndpoint, endpoint_id: int, identity: int, flags: int,
                         known: Mapping[IPv4Address, EndpointInfo]) -> int:
        """Attach on first sight in this process (programs replaced in place after a
        restart); afterwards rewrite the endpoint entry only when its identity changed."""
        dp = self.datapath
        if ep.ref not in self._attached:
            dp.attach_endpoint(ep.host_if, endpoint_id, ep.ips[0], identity, flags)
            index = self._ifindex[ep.ref] = ifindex(ep.host_if, self.netns)
            for extra in ep.ips[1:]:
                dp.register_endpoint(extra, endpoint_id, identity, index, flags)
            self._attached.add(ep.ref)
            before = known.get(IPv4Address(ep.ips[0]))
            return int(before is None or before.identity != identity)
        info = known.get(IPv4Address(ep.ips[0]))
        if info is not None and info.identity == identity:
            return 0
        index = self._ifindex[ep.ref]
        for ip in ep.ips:
            dp.register_endpoint(ip, endpoint_id, identity, index, flags)
        return 1

    # --------------------------------------------------------------------- flows, lifecycle

    def drain_events(self) -> list[FlowEvent]:
        """Events waiting in the ring buffer, also kept in the bounded `flows` list."""
        events = self.datapath.read_events(0)
        self.flows.extend(events)
        return events

    def rule_of(self, endpoint_id: int, cookie: int) -> str | None:
        """The text of the rule a kernel verdict names (its cookie), if any."""
        policy = self.policies.get(endpoint_id)
        return policy.cookies.get(cookie) if policy is not None and cookie else None

    def flush_conntrack(self) -> int:
        return self.datapath.flush_conntrack()

    def close(self) -> None:
        """Let go of the maps; programs and pins stay (enforcement survives the agent)."""
        if self._dp is not None:
            self._dp.close()
            self._dp = None

    def teardown(self) -> None:
        """Detach every endpoint and remove the pins (lab down)."""
        with self._syncing:
            if self._dp is not None:
                self._dp.teardown()
                self._dp = None
