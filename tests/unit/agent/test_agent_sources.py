"""What an agent reads: lab definitions, policy directories, and the resolved view built
through the reference run's code path (no root, no kernel)."""

from __future__ import annotations

from pathlib import Path

import pytest

from netstrata.agent.node import LocalEndpoint, NodeAgent
from netstrata.agent.sources import LabSourceError, load_definition, read_policies, resolve_view
from netstrata.errors import ManifestError
from netstrata.lab.netlab import plan_lab

WORKLOADS = """
apiVersion: netstrata.io/v1alpha1
kind: Workload
metadata: {name: server, namespace: default, labels: {app: server}}
spec: {node: node-1, ports: [{port: 8080, protocol: TCP}]}
---
apiVersion: netstrata.io/v1alpha1
kind: Workload
metadata: {name: client, namespace: default, labels: {app: client}}
spec: {node: node-2}
"""
POLICY = """apiVersion: cilium.io/v2
kind: CiliumNetworkPolicy
metadata: {name: server-ingress, namespace: default}
spec:
  endpointSelector: {matchLabels: {app: server}}
  ingress:
  - fromEndpoints: [{matchLabels: {app: client}}]
    toPorts: [{ports: [{port: '8080', protocol: TCP}]}]
  egress:
  - toCIDR: [192.0.2.0/24]
"""


@pytest.fixture
def topo(tmp_path: Path) -> Path:
    (tmp_path / "workloads.yaml").write_text(WORKLOADS)
    (tmp_path / "policy.yaml").write_text(POLICY)
    return tmp_path


def test_a_manifests_directory_defines_topology_and_first_policies(topo: Path) -> None:
    d = load_definition(topo)
    assert sorted(d.scenario.topology.workloads) == ["default/client", "default/server"]
    assert [m["metadata"]["name"] for m in d.manifests] == ["server-ingress"]


def test_a_directory_without_workloads_is_refused(tmp_path: Path) -> None:
    (tmp_path / "policy.yaml").write_text(POLICY)
    with pytest.raises(LabSourceError, match="no Workload"):
        load_definition(tmp_path)


def test_read_policies_ignores_topology_kinds_and_locates_errors(topo: Path) -> None:
    assert [m["kind"] for m in read_policies(topo)] == ["CiliumNetworkPolicy"]
    (topo / "policy.yaml").write_text(POLICY.replace("'8080'", "'99999'"))
    with pytest.raises(ManifestError) as err:
        read_policies(topo)
    assert f"{topo / 'policy.yaml'}:" in str(err.value) and "99999" in str(err.value)
    (topo / "policy.yaml").write_text(POLICY[: len(POLICY) // 3])  # half-written
    with pytest.raises(ManifestError):
        read_policies(topo)


def test_every_resolution_allocates_the_same_identities(topo: Path) -> None:
    d = load_definition(topo)
    first = resolve_view(d, read_policies(topo)).lab
    again = resolve_view(d, read_policies(topo)).lab
    assert first.identity_of == again.identity_of
    assert first.identity_of["default/server"] != first.identity_of["default/client"]


def test_the_node_ipcache_is_the_reference_view_written_as_prefixes(topo: Path) -> None:
    d = load_definition(topo)
    view = resolve_view(d, read_policies(topo)).lab
    plan = plan_lab("x", d.scenario.topology)
    node1 = plan.node("default/node-1")
    agent = NodeAgent("default", "node-1", None, "/nonexistent",
                      [LocalEndpoint("default/server", ("10.1.1.10",), "nstx")], plan.node_ips())
    entries = agent.ipcache_entries(view)
    assert entries["0.0.0.0/0"] == 2  # world
    assert entries[f"{node1.ip}/32"] == 1  # this node: host
    assert entries[f"{plan.node('default/node-2').ip}/32"] == 6  # the other: remote-node
    for ip in ("10.1.1.10", "10.1.2.10", "192.0.2.77", "203.0.113.1", node1.ip):
        best = max((p for p in entries if _covers(p, ip)), key=lambda p: int(p.split("/")[1]))
        cluster, node = "default", "node-1"
        assert entries[best] == view.ipcache(cluster, node, ip), ip


def _covers(prefix: str, ip: str) -> bool:
    import ipaddress

    return ipaddress.ip_address(ip) in ipaddress.ip_network(prefix)
