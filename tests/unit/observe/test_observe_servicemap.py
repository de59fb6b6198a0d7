"""The service map: workloads as nodes, one edge per (source, destination, verdict class)."""

from __future__ import annotations

import dataclasses

from observe_fixtures import API, CLIENT, HTTP_CONN, NODE, SYN, T0, WORLD

from netstrata.observe.builders import Packet, flow_from_l7_http, flow_from_l34
from netstrata.observe.flow import L7FlowType, Verdict, Workload
from netstrata.observe.servicemap import node_of, service_map, verdict_class
from netstrata.policy.types import Direction, Proto


def _allowed(t: int = T0):  # type: ignore[no-untyped-def]
    return flow_from_l34(
        SYN, event="policy-verdict", direction=Direction.INGRESS, time_ns=t, node_name=NODE
    )


def _dropped():  # type: ignore[no-untyped-def]
    return flow_from_l34(
        SYN,
        event="drop",
        direction=Direction.INGRESS,
        time_ns=T0 + 1,
        node_name=NODE,
        drop_reason=133,
    )


def test_allowed_and_dropped_between_one_pair_are_two_edges_with_counts() -> None:
    m = service_map([_allowed(), _allowed(T0 + 5), _dropped()]).to_json()
    edges = {(e["source"], e["destination"], e["verdict"]): e for e in m["edges"]}  # type: ignore[attr-defined]
    src, dst = "pod:c1/shop/client-7d9", "pod:c1/shop/api-0"
    assert edges[(src, dst, "forwarded")]["count"] == 2
    assert edges[(src, dst, "dropped")]["count"] == 1
    assert edges[(src, dst, "forwarded")]["ports"] == ["TCP/8080"]
    assert edges[(src, dst, "forwarded")]["last_ns"] == T0 + 5
    assert m["groups"] == ["c1/shop"]


def test_l7_denial_and_audit_get_their_own_colours() -> None:
    denied = flow_from_l7_http(
        HTTP_CONN, method="DELETE", url="/x", verdict=Verdict.DROPPED, time_ns=T0, node_name=NODE
    )
    audited = flow_from_l34(
        SYN,
        event="policy-verdict",
        direction=Direction.INGRESS,
        time_ns=T0,
        node_name=NODE,
        drop_reason=133,
        audited=True,
    )
    assert verdict_class(denied) == "l7-denied"
    assert verdict_class(audited) == "audit"
    m = service_map([denied, audited]).to_json()
    assert sorted(e["verdict"] for e in m["edges"]) == ["audit", "l7-denied"]  # type: ignore[attr-defined]
    l7 = next(e for e in m["edges"] if e["verdict"] == "l7-denied")  # type: ignore[attr-defined]
    assert l7["l7"] == ["DELETE /x"]


def test_replies_do_not_draw_backward_edges() -> None:
    response = flow_from_l7_http(
        HTTP_CONN,
        method="GET",
        url="/",
        code=200,
        l7_type=L7FlowType.RESPONSE,
        time_ns=T0,
        node_name=NODE,
    )
    assert response.is_reply is True
    m = service_map([response])
    assert m.flows == 0 and not m.edges


def test_workload_name_groups_pods_and_world_is_outside_the_cluster() -> None:
    a = dataclasses.replace(CLIENT, pod_name="web-1", workloads=(Workload("web", "Deployment"),))
    b = dataclasses.replace(CLIENT, pod_name="web-2", workloads=(Workload("web", "Deployment"),))
    assert node_of(a, "10.0.0.1").id == node_of(b, "10.0.0.2").id == "pod:c1/shop/web"
    world = node_of(WORLD, "203.0.113.1")
    assert (world.id, world.group) == ("reserved:world", "")
    assert node_of(WORLD, "203.0.113.1", ("api.example.com",)).name == "world:api.example.com"
    assert node_of(None, "192.0.2.7").id == "ip:192.0.2.7"


def test_egress_to_world_edge() -> None:
    pkt = Packet("10.0.1.5", "203.0.113.9", Proto.TCP, 4000, 443, source=CLIENT, destination=WORLD)
    flow = flow_from_l34(
        pkt, event="policy-verdict", direction=Direction.EGRESS, time_ns=T0, node_name=NODE
    )
    m = service_map([flow]).to_json()
    assert [(e["source"], e["destination"]) for e in m["edges"]] == [  # type: ignore[attr-defined]
        ("pod:c1/shop/client-7d9", "reserved:world")
    ]
    assert m["groups"] == ["", "c1/shop"]
    assert API.pod_name not in str(m)
