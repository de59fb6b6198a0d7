"""A small shop's flows, built with the observe builders: every verdict class on the map.

Used by the page tests that need no lab (and by `make_screenshot.py`-style tooling): the
flows are what agents write, one `hubble observe -o json` line each.
"""

from __future__ import annotations

from pathlib import Path

from netstrata.observe.builders import Packet, flow_from_l7_http, flow_from_l34
from netstrata.observe.flow import Endpoint, Flow, TCPFlags, Workload, dumps, to_json_dict
from netstrata.policy.types import Direction, Proto

T0 = 1_777_629_600_000_000_000  # 2026-05-01T10:00:00Z
NODE = "c1/node-1"
CNP = ("CiliumNetworkPolicy", "shop", "api-ingress")


def pod(ns: str, name: str, ident: int, app: str) -> Endpoint:
    return Endpoint(
        id=ident % 1000,
        identity=ident,
        cluster_name="c1",
        namespace=ns,
        labels=(f"k8s:app={app}", f"k8s:io.kubernetes.pod.namespace={ns}"),
        pod_name=f"{name}-0",
        workloads=(Workload(name, "Deployment"),),
    )


FRONTEND = pod("shop", "frontend", 48213, "frontend")
API = pod("shop", "api", 51007, "api")
DB = pod("shop", "db", 52110, "db")
INTRUDER = pod("tools", "scanner", 60001, "scanner")
DNS = pod("kube-system", "coredns", 102, "kube-dns")
WORLD = Endpoint(identity=2, labels=("reserved:world",))
IPS = {
    FRONTEND: "10.1.1.10",
    API: "10.1.1.11",
    DB: "10.1.1.12",
    INTRUDER: "10.1.1.13",
    DNS: "10.1.1.2",
    WORLD: "203.0.113.9",
}


def _pkt(src: Endpoint, dst: Endpoint, port: int, proto: int = Proto.TCP) -> Packet:
    flags = TCPFlags(SYN=True) if proto == Proto.TCP else None
    return Packet(
        IPS[src], IPS[dst], proto, 40000 + port % 1000, port, flags, source=src, destination=dst
    )


def shop_flows() -> list[Flow]:
    """Forwarded, dropped, L7-denied and audited flows between five workloads and the world."""
    out: list[Flow] = []
    t = T0

    def l34(
        src: Endpoint,
        dst: Endpoint,
        port: int,
        *,
        drop: bool = False,
        audit: bool = False,
        proto: int = Proto.TCP,
        direction: Direction = Direction.INGRESS,
    ) -> None:
        nonlocal t
        t += 7_000_000
        out.append(
            flow_from_l34(
                _pkt(src, dst, port, proto),
                event="drop" if drop else "policy-verdict",
                direction=direction,
                time_ns=t,
                node_name=NODE,
                drop_reason=133 if drop else None,
                audited=audit,
                policies=() if drop else (CNP,),
            )
        )

    def http(src: Endpoint, dst: Endpoint, method: str, path: str, *, denied: bool = False) -> None:
        nonlocal t
        t += 5_000_000
        from netstrata.observe.flow import Verdict

        out.append(
            flow_from_l7_http(
                _pkt(src, dst, 8080),
                method=method,
                url=f"http://{IPS[dst]}:8080{path}",
                verdict=Verdict.DROPPED if denied else Verdict.FORWARDED,
                time_ns=t,
                node_name=NODE,
                policies=(CNP,),
            )
        )

    for _ in range(3):
        l34(FRONTEND, API, 8080)
        http(FRONTEND, API, "GET", "/v1/items")
        l34(API, DB, 5432)
        l34(FRONTEND, DNS, 53, proto=Proto.UDP, direction=Direction.EGRESS)
        l34(INTRUDER, DB, 5432, drop=True)
    http(FRONTEND, API, "DELETE", "/v1/items/7", denied=True)
    l34(API, WORLD, 443, audit=True, direction=Direction.EGRESS)
    return out


def write_flows(path: Path, flows: list[Flow]) -> Path:
    with path.open("a", encoding="utf-8") as fh:
        for flow in flows:
            fh.write(dumps(to_json_dict(flow)) + "\n")
    return path
