"""What a flow's kernel event cannot carry, filled in from the agent's view of the cluster.

A ring-buffer record holds addresses, identities, the endpoint id and the deciding rule's
cookie. Hubble's flow also names the pods (namespace, pod name, cluster, workload, labels) and
the policies that allowed or denied it. `FlowEnricher` keeps the lookups for that, rebuilt
after every policy sync (`update`), and applies them to any flow, kernel or proxy, without
overwriting what the emitter already set.

Knows nothing of sockets or the kernel: tables in, flows out.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Final

from netstrata.lab.simulate import RESERVED_LABELS, ReferenceLab
from netstrata.observe import Endpoint, Flow, TrafficDirection, Verdict
from netstrata.observe.builders import policy_from_ref
from netstrata.observe.flow import Policy, Workload

_SELF_KINDS: Final = ("pod",)
"""Workload kinds that are Hubble endpoints with a pod name (hosts outside are peers only)."""


@dataclasses.dataclass(frozen=True, slots=True)
class _Peer:
    """What one IP is: the endpoint fields Hubble prints for it."""

    cluster: str
    namespace: str
    pod_name: str
    workload: str


def policy_of_rule(description: str, revision: int) -> Policy | None:
    """`CiliumNetworkPolicy shop/api ingress[0]` (a rule cookie's text) as a flow Policy."""
    parts = description.split(", ")[0].split(" ")
    if len(parts) < 2:
        return None
    kind, ref = parts[0], parts[1]
    namespace, _, name = ref.rpartition("/")
    return policy_from_ref((kind, namespace, name), revision)


class FlowEnricher:
    """Pod and identity lookups of one node's agent."""

    def __init__(self) -> None:
        self.names_of: Callable[[str], list[str]] | None = None
        """The DNS names the node's FQDN cache holds for an IP (`source_names`/
        `destination_names`, as Hubble fills them from Cilium's DNS cache); None: no cache."""
        self._peers: dict[str, _Peer] = {}
        self._labels: dict[int, tuple[str, ...]] = {
            ident: tuple(f"reserved:{n}" for n in names) for ident, names in RESERVED_LABELS.items()
        }
        self._rules: dict[int, tuple[Mapping[int, str], int]] = {}
        self._ids: dict[str, int] = {}
        self._endpoints: dict[tuple[Endpoint | None, str], Endpoint] = {}
        """`endpoint()` results of the current tables: kernel flows repeat a few (ip,
        identity, endpoint id) combinations, and each lookup builds a new Endpoint."""

    def update(
        self,
        view: ReferenceLab,
        rules: Mapping[int, tuple[Mapping[int, str], int]],
        local_ids: Mapping[str, int] | None = None,
    ) -> None:
        """Rebuild from a resolved view; `rules` maps endpoint id to (cookie texts, revision),
        `local_ids` this node's endpoint IPs to their endpoint ids (Hubble's `ID`)."""
        peers: dict[str, _Peer] = {}
        for placed in view.topology.workloads.values():
            w = placed.workload
            pod = w.name if w.kind in _SELF_KINDS else ""
            for ip in placed.ips:
                peers[ip] = _Peer(w.cluster, w.namespace if pod else "", pod, w.name)
        labels = dict(self._labels)
        for ident, label_set in view.identities.items():
            labels[ident] = tuple(label_set.strings())
        self._peers, self._labels, self._rules = peers, labels, dict(rules)
        self._ids = dict(local_ids or {})
        self._endpoints = {}

    def endpoint(self, ep: Endpoint | None, ip: str) -> Endpoint:
        """`ep` with the pod and label fields it lacks filled in from `ip` and its identity."""
        try:
            cached = self._endpoints.get((ep, ip))
        except TypeError:  # an emitter's endpoint with unhashable members: no caching
            return self._fill(ep, ip)
        if cached is not None:
            return cached
        filled = self._fill(ep, ip)
        if len(self._endpoints) >= 65536:  # bounded: a burst of distinct peers starts over
            self._endpoints.clear()
        self._endpoints[(ep, ip)] = filled
        return filled

    def _fill(self, ep: Endpoint | None, ip: str) -> Endpoint:
        ep = ep or Endpoint()
        changes: dict[str, object] = {}
        peer = self._peers.get(ip)
        if peer is not None:
            if not ep.namespace and peer.namespace:
                changes["namespace"] = peer.namespace
            if peer.pod_name and ep.pod_name in ("", peer.pod_name):
                changes["pod_name"] = peer.pod_name
                changes["workloads"] = ep.workloads or (Workload(peer.workload, "Pod"),)
            if not ep.cluster_name and peer.pod_name:
                changes["cluster_name"] = peer.cluster
        if not ep.id and ip in self._ids:
            changes["id"] = self._ids[ip]
        known = self._labels.get(ep.identity)
        # The identity's labels are the endpoint's (Hubble prints those); an emitter that knew
        # only the pod's own labels (the proxy) gets the namespace, service account and
        # cluster labels added. Labels that disagree with the identity are the emitter's.
        if known is not None and set(ep.labels) < set(known):
            changes["labels"] = known
        return dataclasses.replace(ep, **changes) if changes else ep  # type: ignore[arg-type]

    def enrich(self, flow: Flow, *, endpoint_id: int = 0, cookie: int = 0) -> Flow:
        """The flow with endpoints filled in and, given the kernel's rule cookie, the policy
        that decided (`*_allowed_by` for forwarded, `*_denied_by` for explicit denies)."""
        changes: dict[str, object] = {}
        if flow.ip is not None:
            changes["source"] = self.endpoint(flow.source, flow.ip.source)
            changes["destination"] = self.endpoint(flow.destination, flow.ip.destination)
            if self.names_of is not None:
                if not flow.source_names and (names := self._names(flow.ip.source)):
                    changes["source_names"] = names
                if not flow.destination_names and (names := self._names(flow.ip.destination)):
                    changes["destination_names"] = names
        policy = self._policy(endpoint_id, cookie)
        if policy is not None:
            field = _policy_field(flow)
            if field is not None and not getattr(flow, field):
                changes[field] = (policy,)
        return dataclasses.replace(flow, **changes) if changes else flow  # type: ignore[arg-type]

    def _names(self, ip: str) -> tuple[str, ...]:
        """Hubble's names: without the root dot (Cilium trims it from its DNS history's)."""
        assert self.names_of is not None
        return tuple(n.removesuffix(".") for n in self.names_of(ip))

    def _policy(self, endpoint_id: int, cookie: int) -> Policy | None:
        if not cookie or endpoint_id not in self._rules:
            return None
        texts, revision = self._rules[endpoint_id]
        text = texts.get(cookie)
        return policy_of_rule(text, revision) if text else None


def _policy_field(flow: Flow) -> str | None:
    side = {TrafficDirection.INGRESS: "ingress", TrafficDirection.EGRESS: "egress"}.get(
        flow.traffic_direction
    )
    if side is None:
        return None
    if flow.verdict in (Verdict.FORWARDED, Verdict.REDIRECTED):
        return f"{side}_allowed_by"
    # An audited packet had no allow: a cookie on it names the deny rule it would have met.
    if flow.verdict in (Verdict.DROPPED, Verdict.AUDIT):
        return f"{side}_denied_by"
    return None


__all__ = ["FlowEnricher", "policy_of_rule"]
