"""A reference lab built from ordinary manifests (Pods/Workloads, Namespaces, Services, policies).

`policy trace`, `policy get`, `identity list` and `endpoint list` use this: the user points them at
the same directory the agent watches and sees what the agent would compute. Istio objects in the
manifests become the lab's mesh settings (Istio's meshConfig defaults; `policy trace` overrides
the trust domain and time), so a walk ends with the destination's mesh verdict.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from netstrata.lab.simulate import MeshSettings, ReferenceLab
from netstrata.lab.topology import ClusterSpec, Topology
from netstrata.policy.resolve import PolicyConfig
from netstrata.policy.rules import Catalog


def lab_from_manifests(paths: list[str | Path], config: PolicyConfig | None = None) -> ReferenceLab:
    """Load, validate and resolve. Raises ManifestError / PolicyConflictError; changes nothing."""
    from netstrata.api import load_manifests

    ms = load_manifests(list(paths))
    base = config or PolicyConfig()
    topo = Topology()
    clusters = sorted({w.cluster for w in ms.workloads} | {base.cluster})
    nodes = sorted({w.node for w in ms.workloads if w.node}) or ["node-1"]
    for i, name in enumerate(clusters, start=1):
        topo.clusters[name] = ClusterSpec(name, i, tuple(nodes), replace(base, cluster=name))
    for ns in ms.namespaces:
        topo.namespaces[(ns.cluster or base.cluster, ns.name)] = {
            "kubernetes.io/metadata.name": ns.name, **dict(ns.labels)}
    for w in ms.workloads:
        ref = f"{w.namespace}/{w.name}" if w.kind == "pod" else w.name
        topo.add_workload(ref, w)
    for svc in ms.services:
        topo.add_service(svc, (svc.cluster,), (svc.cluster,))
    lab = ReferenceLab(topo)
    catalog = Catalog(
        services=tuple(ms.services),
        cidr_groups={g.name: g.cidrs for g in ms.cidr_groups},
        cidr_group_labels={g.name: dict(g.labels) for g in ms.cidr_groups},
    )
    for name in clusters:
        lab.apply(name, tuple(ms.cilium_policies), tuple(ms.network_policies), catalog)
    lab.mesh = MeshSettings(objects={name: tuple(ms.istio) for name in clusters})
    return lab
