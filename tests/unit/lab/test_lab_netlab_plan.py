"""Planning a namespace lab from a topology (no root: nothing is built here)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from netstrata.lab.cases import load_case_file
from netstrata.lab.netlab import LAB_MARK, LabPlan, lab_prefix, plan_lab

ROOT = Path(__file__).resolve().parents[3]
SHARED = ROOT.parent / "shared" / "acceptance"


def scenario(name: str):  # type: ignore[no-untyped-def]
    path = SHARED / "scenarios" / "cases.yaml"
    if not path.exists():
        pytest.skip("shared acceptance cases not found beside the checkout")
    _, scenarios = load_case_file(path)
    return next(s for s in scenarios if s.id == name)


def test_prefix_is_the_lab_mark_and_four_hex_digits_never_a_fixture_tag() -> None:
    prefix = lab_prefix("demo")
    assert re.fullmatch(LAB_MARK + r"[0-9a-f]{4}", prefix)
    assert prefix == lab_prefix("demo") != lab_prefix("demo2")
    assert not re.fullmatch(r"nst[0-9a-f]+", prefix[:7])  # 'l' keeps it apart from nst<hex> tags


def test_pods_keep_the_topology_addresses_and_names_fit_the_kernel() -> None:
    sc = scenario("cli-no-policies")
    plan = plan_lab("x", sc.topology, ["1.1.1.1"])
    topo_ips = {p.ref: p.ips for p in sc.topology.pods()}
    assert {p.ref: p.ips for p in plan.pods} == topo_ips
    names = [plan.bridge, *(n.uplink for n in plan.nodes), *(p.host_if for p in plan.pods),
             *(h.uplink for h in plan.hosts)]
    assert all(len(n) <= 15 and n.startswith(plan.prefix) for n in names)
    assert len(set(names)) == len(names)
    assert all(ns.startswith(plan.prefix) for ns in plan.namespaces())
    assert all("." not in Path(n.pin_dir).name for n in plan.nodes)  # bpffs refuses dots


def test_nodes_host_network_and_outside_hosts() -> None:
    sc = scenario("cli-no-policies")
    before = dict(sc.topology.node_ips)
    plan = plan_lab("x", sc.topology, ["1.1.1.1", "198.51.100.9"])
    assert sc.topology.node_ips == before  # the reference run's view is left alone
    assert {n.key: n.ip for n in plan.nodes} == {"default/node-1": "172.31.1.1",
                                                 "default/node-2": "172.31.1.2"}
    assert plan.host_network == {"host-netns-node-1": "default/node-1",
                                 "host-netns-node-2": "default/node-2"}
    assert plan.netns_of("host-netns-node-2") == plan.node("default/node-2").netns
    external = next(h for h in plan.hosts if h.kind == "external")
    assert set(external.ips) == {"1.1.1.1", "1.0.0.1"}
    world = next(h for h in plan.hosts if h.kind == "world")
    assert world.ips == ("198.51.100.9",)  # a probe target nobody owns


def test_a_node_without_workloads_is_planned_too() -> None:
    sc = scenario("docs-entity-host")
    plan = plan_lab("x", sc.topology)
    assert [n.name for n in plan.nodes] == ["node-1", "node-2"]


def test_the_plan_round_trips_through_the_state_file_shape() -> None:
    sc = scenario("seed-d-frontend-billing-global-service")
    plan = plan_lab("x", sc.topology)
    assert LabPlan.from_dict(plan.to_dict()) == plan
    assert {n.cluster for n in plan.nodes} == {"cluster-a", "cluster-b"}
