"""What an agent reads: the lab definition (topology + first policies) and a manifests directory.

A lab is defined by one of (docs/lab.md):

* a case file of the shared acceptance format (`scenarios` shape, or `k8s-netpol` shape): one
  case is the topology and its `policies` are the lab's first manifests;
* a manifests directory or file holding `Workload`/`Pod`/`Namespace`/`Service` objects (the
  topology) next to policies.

`resolve_view()` turns a definition plus the current policy manifests into the resolved
cluster state through exactly the reference run's code path (`ScenarioRunner`: the same
placement, catalog, identity allocation and `ClusterPolicyEngine`), so the kernel enforces
what `netstrata policy check` would predict. Each call starts from a fresh `ReferenceLab`, and
identity allocation is deterministic, so every node's agent (and a restarted one) computes the
same identities from the same inputs.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final

import yaml

from netstrata.api import types as api
from netstrata.api._yaml import read_sources
from netstrata.errors import NetstrataError
from netstrata.lab.cases import Apply, Scenario, load_case_file
from netstrata.lab.reference_check import ScenarioRunner
from netstrata.lab.simulate import ReferenceLab
from netstrata.lab.topology import ClusterSpec, Topology
from netstrata.policy.resolve import PolicyConfig

POLICY_KINDS: Final = frozenset({"CiliumNetworkPolicy", "CiliumClusterwideNetworkPolicy",
                                 "NetworkPolicy", "CiliumCIDRGroup"})
"""Kinds an agent re-reads from its manifests directory; the topology is fixed at `lab up`."""
TOPOLOGY_KINDS: Final = frozenset({"Workload", "Pod", "Namespace", "Service"})


class LabSourceError(NetstrataError):
    """The topology file cannot be used for a lab."""


@dataclass(frozen=True)
class LabDefinition:
    scenario: Scenario
    """Topology, placement and secrets (its actions are not used)."""
    manifests: tuple[dict[str, Any], ...] = ()
    """The lab's first policy manifests."""
    probes: tuple[Any, ...] = field(default=())
    """Probes the definition carries (case files), so servers can listen where they aim."""


def _case_definition(path: Path, case: str | None) -> LabDefinition:
    from netstrata.lab.cases import Probe

    _, scenarios = load_case_file(path)
    if not scenarios:
        raise LabSourceError(f"{path}: no cases")
    if case is None:
        chosen = scenarios[0]
    else:
        found = [s for s in scenarios if s.id == case]
        if not found:
            raise LabSourceError(f"{path}: no case {case!r} (first ones: "
                                 f"{', '.join(s.id for s in scenarios[:5])})")
        chosen = found[0]
    applies = [a for a in chosen.actions if isinstance(a, Apply)]
    manifests = tuple(applies[0].manifests) if applies else ()
    probes = tuple(a for a in chosen.actions if isinstance(a, Probe))
    return LabDefinition(chosen, manifests, probes)


def _manifest_definition(path: Path) -> LabDefinition:
    from netstrata.api import parse_documents

    docs = read_sources([path])
    topo_docs = [d for d in docs if isinstance(d.data, dict) and d.data.get("kind") in TOPOLOGY_KINDS]
    ms = parse_documents(topo_docs)
    if not ms.workloads:
        raise LabSourceError(f"{path}: no Workload or Pod objects, so no topology")
    topo = Topology()
    clusters = sorted({w.cluster for w in ms.workloads})
    nodes = tuple(sorted({w.node for w in ms.workloads if w.node})) or ("node-1",)
    for i, name in enumerate(clusters, start=1):
        topo.clusters[name] = ClusterSpec(name, i, nodes, PolicyConfig(cluster=name))
    for ns in ms.namespaces:
        topo.namespaces[(ns.cluster or clusters[0], ns.name)] = {
            "kubernetes.io/metadata.name": ns.name, **dict(ns.labels)}
    for w in ms.workloads:
        topo.add_workload(f"{w.namespace}/{w.name}" if w.kind == "pod" else w.name, w)
    for svc in ms.services:
        topo.add_service(svc, (svc.cluster,), (svc.cluster,))
    sc = Scenario(path.name, "scenarios", topo, source=str(path))
    policies = tuple(d.data for d in docs
                     if isinstance(d.data, dict) and d.data.get("kind") in POLICY_KINDS)
    return LabDefinition(sc, policies)


def _is_case_file(path: Path) -> bool:
    try:
        first = next(iter(yaml.safe_load_all(path.read_text(encoding="utf-8"))), None)
    except (OSError, yaml.YAMLError) as exc:
        raise LabSourceError(f"{path}: cannot read: {exc}") from exc
    return isinstance(first, list)


def load_definition(path: str | Path, case: str | None = None) -> LabDefinition:
    """Read a topology file or directory (see the module docstring).

    Raises:
        LabSourceError: unusable file; ManifestError: invalid manifests (with lines).
    """
    p = Path(path)
    if not p.exists():
        raise LabSourceError(f"{p}: no such file or directory")
    if p.is_file() and _is_case_file(p):
        return _case_definition(p, case)
    return _manifest_definition(p)


def read_policies(directory: str | Path) -> list[dict[str, Any]]:
    """Policy manifests of a directory (or file), checked as a whole.

    Raises:
        ManifestError: every problem of every file, with file, line and field; the caller
            must then keep the policy it has (a file broken mid-edit changes nothing).
    """
    from netstrata.api import parse_documents

    docs = read_sources([directory])
    policy_docs = [d for d in docs if d.data is not None
                   and not (isinstance(d.data, dict) and d.data.get("kind") in TOPOLOGY_KINDS)]
    parse_documents(policy_docs)  # raises with locations; nothing is returned on a problem
    return [d.data for d in policy_docs if isinstance(d.data, dict)]


def resolve_view(definition: LabDefinition, manifests: list[dict[str, Any]],
                 relabels: tuple[Any, ...] = (), *,
                 audit_mode: bool | None = None) -> ScenarioRunner:
    """The resolved state of every cluster for `manifests`, via the reference code path.

    `audit_mode` (agent-wide `policy-audit-mode`) overrides the topology's setting for every
    cluster; None keeps what the topology defines.

    Raises:
        ManifestError, PolicyConflictError: nothing was resolved; keep the previous state.
    """
    base = definition.scenario
    topology = copy.deepcopy(base.topology)
    if audit_mode is not None:
        for name, spec in topology.clusters.items():
            topology.clusters[name] = replace(spec, config=replace(spec.config,
                                                                   audit_mode=audit_mode))
    sc = replace(base, topology=topology, actions=[])
    runner = ScenarioRunner(sc)
    for action in relabels:
        runner.relabel(action)
    runner.apply(Apply(list(manifests)))
    return runner


def view_of(runner: ScenarioRunner) -> ReferenceLab:
    return runner.lab


__all__ = ["LabDefinition", "LabSourceError", "api", "load_definition", "read_policies",
           "resolve_view", "view_of"]
