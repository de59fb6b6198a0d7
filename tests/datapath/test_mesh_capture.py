"""The kernel's mesh capture (bpf/mesh.h) on crafted packets (BPF_PROG_TEST_RUN).

No proxy listens in the test's namespace, so a captured connection shows as a REDIRECTED
verdict to the mesh port followed by PROXY_LOOKUP_FAILED (outbound: assigned in from_pod) or
as the hairpin redirect (inbound: to_pod bounces the packet to the veth's ingress, where the
ingress listener is looked up). What is shown: the capture is a decision of its own after the
L3/L4 verdict (a pod without policy is captured; a denied connection is dropped first, never
captured), bypass annotations and Istio's proxy ports take ports out of it, and only TCP
between meshed workloads is captured.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

pytest.importorskip("pyroute2", reason="pyroute2 is needed for namespaces")

from datapathkit import (  # noqa: E402
    DROP_TIMEOUT,
    EP_A,
    EP_B,
    ID_A,
    ID_B,
    TCP,
    UDP,
    Pods,
    allow,
    attach_both,
    resolved,
    tcp_connect,
)

from netstrata.datapath.drop_reasons import DropReason  # noqa: E402
from netstrata.datapath.kernel import KernelDatapath, Program  # noqa: E402
from netstrata.datapath.loader import packets as pk  # noqa: E402
from netstrata.datapath.maps import EventType, FlowEvent, MeshPort, Verdict  # noqa: E402
from netstrata.datapath.mesh_capture import capture_table  # noqa: E402
from netstrata.datapath.proxy_routing import install_proxy_routing  # noqa: E402
from netstrata.netns import create_netns, delete_netns, in_netns, socket_in_netns  # noqa: E402
from netstrata.policy.types import Direction  # noqa: E402

OK, SHOT, REDIRECT = 0, 2, 7
A, B = "10.1.0.1", "10.1.0.2"
EG, IN = Direction.EGRESS, Direction.INGRESS
PREFIX = "traffic.sidecar.istio.io/"
IP_TRANSPARENT = 19  # linux/in.h; not in the socket module


@dataclass
class Bench:
    dp: KernelDatapath
    netns: str

    def run(self, program: Program, frame: bytes) -> int:
        with in_netns(self.netns):
            return self.dp.test_run(program, frame)

    def verdicts(self) -> list[FlowEvent]:
        return [e for e in self.dp.read_events(0) if e.type == EventType.POLICY_VERDICT]


@pytest.fixture
def bench(tag: str, pin_dir: Path) -> Iterator[Bench]:
    netns = f"nst{tag}-msh"
    create_netns(netns)
    try:
        dp = KernelDatapath(pin_dir, netns=netns)
        try:
            dp.register_endpoint(A, EP_A, ID_A, 1, 0)  # no policy at all: nothing enforced
            dp.register_endpoint(B, EP_B, ID_B, 1, 0)
            yield Bench(dp, netns)
        finally:
            dp.teardown()
    finally:
        delete_netns(netns)


def _mesh(bench: Bench, a: dict[str, str] | None = None, b: dict[str, str] | None = None) -> None:
    tables = {}
    for ip, ann in ((A, a), (B, b)):
        if ann is not None:
            table, error = capture_table({PREFIX + k: v for k, v in ann.items()})
            assert error is None
            tables[ip] = table
    bench.dp.sync_mesh(tables)


def test_a_pod_without_policy_is_captured_both_ways(bench: Bench) -> None:
    assert bench.run("from_pod", pk.frame(A, B, TCP, dport=8080)) == OK  # nothing meshed
    _mesh(bench, {}, {})
    assert bench.run("from_pod", pk.frame(A, B, TCP, sport=40001, dport=8080)) == SHOT
    drops = [e for e in bench.dp.read_events(0) if e.type == EventType.DROP]
    assert [(d.drop_reason, d.proxy_port) for d in drops] == [
        (DropReason.PROXY_LOOKUP_FAILED, MeshPort.OUTBOUND)
    ]
    assert bench.run("to_pod", pk.frame(A, B, TCP, sport=40002, dport=8080)) == REDIRECT
    assert bench.run("from_pod", pk.frame(A, B, UDP, sport=40003, dport=53)) == OK  # TCP only


def test_only_connections_between_meshed_workloads(bench: Bench) -> None:
    _mesh(bench, None, {})  # only b is meshed: a has no proxy to carry it outbound
    assert bench.run("from_pod", pk.frame(A, B, TCP, dport=8080)) == OK
    assert bench.run("to_pod", pk.frame(A, B, TCP, sport=40010, dport=8080)) == REDIRECT
    _mesh(bench, {}, None)  # only a: the mesh does not apply to b
    assert bench.run("from_pod", pk.frame(A, B, TCP, sport=40011, dport=8080)) == OK


def test_the_l3l4_verdict_comes_first(bench: Bench) -> None:
    _mesh(bench, {}, {})
    bench.dp.apply_policy(resolved(EP_A, ID_A, allow(EG, ID_B, TCP, 8080), ingress=False))
    assert bench.run("from_pod", pk.frame(A, B, TCP, dport=9090)) == SHOT
    drops = [e for e in bench.dp.read_events(0) if e.type == EventType.DROP]
    assert [d.drop_reason for d in drops] == [DropReason.POLICY_DENIED]
    assert bench.run("from_pod", pk.frame(A, B, TCP, sport=40020, dport=8080)) == SHOT
    redirected = [e for e in bench.verdicts() if e.verdict == Verdict.REDIRECTED]
    assert [(e.direction, e.proxy_port) for e in redirected] == [(EG, MeshPort.OUTBOUND)]


def test_bypass_annotations_and_proxy_ports(bench: Bench) -> None:
    _mesh(
        bench,
        {
            "excludeOutboundPorts": "9090",
            "excludeOutboundIPRanges": "10.1.0.0/24",
            "includeOutboundPorts": "8443",
        },
        {"includeInboundPorts": "8080,8443,9100", "excludeInboundPorts": "9100"},
    )
    assert bench.run("from_pod", pk.frame(A, B, TCP, sport=40030, dport=9090)) == OK
    assert bench.run("from_pod", pk.frame(A, B, TCP, sport=40031, dport=8080)) == OK  # range
    assert bench.run("from_pod", pk.frame(A, B, TCP, sport=40032, dport=8443)) == SHOT  # port first
    assert bench.run("to_pod", pk.frame(A, B, TCP, sport=40033, dport=8080)) == REDIRECT
    assert bench.run("to_pod", pk.frame(A, B, TCP, sport=40034, dport=9100)) == OK
    assert bench.run("to_pod", pk.frame(A, B, TCP, sport=40035, dport=7070)) == OK  # not included
    assert bench.run("to_pod", pk.frame(A, B, TCP, sport=40036, dport=15021)) == OK


def test_a_bypassed_port_is_still_under_l4_policy(bench: Bench) -> None:
    _mesh(bench, {}, {"excludeInboundPorts": "9100"})
    bench.dp.apply_policy(resolved(EP_B, ID_B, allow(IN, ID_A, TCP, 8080), egress=False))
    assert bench.run("to_pod", pk.frame(A, B, TCP, sport=40040, dport=9100)) == SHOT
    assert bench.run("to_pod", pk.frame(A, B, TCP, sport=40041, dport=8080)) == REDIRECT
    bench.dp.apply_policy(resolved(EP_B, ID_B, allow(IN, ID_A, TCP), egress=False, revision=2))
    assert bench.run("to_pod", pk.frame(A, B, TCP, sport=40042, dport=9100)) == OK
    assert bench.dp.sync_mesh({}).removed >= 2
    assert bench.dp.mesh() == {}


# ---------------------------------------------------------------- real connections (veths)


def _transparent_listener(netns: str, addr: str, port: int) -> socket.socket:
    """A listener where the node proxy's mesh listener would be (IP_TRANSPARENT, loopback).
    A plain socket stands in for the proxy: what is shown is where the kernel hands the
    connection, with which addresses."""
    sock = socket_in_netns(netns)
    sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((addr, port))
    sock.listen(8)
    sock.settimeout(DROP_TIMEOUT * 3)
    return sock


def test_a_meshed_pods_connections_reach_the_mesh_listeners(pods: Pods) -> None:
    dp, a, b = pods.dp, pods.a, pods.b
    attach_both(dp, pods)
    dp.apply_policy(resolved(EP_A, ID_A, allow(EG, ID_B, TCP, 8080), ingress=False))
    dp.apply_policy(resolved(EP_B, ID_B, allow(IN, ID_A, TCP, 8080), egress=False))
    install_proxy_routing(pods.node)
    table, _ = capture_table({})
    dp.sync_mesh({str(a.ip): table, str(b.ip): table})
    outbound = _transparent_listener(pods.node, "127.0.0.2", int(MeshPort.OUTBOUND))
    try:
        client = tcp_connect(a.pod_netns, b.ip, 8080)
        assert client is not None, "the SYN to the mesh outbound listener was dropped"
        accepted, peer = outbound.accept()
        # nothing rewritten: the original destination and the pod's own address
        assert accepted.getsockname() == (str(b.ip), 8080)
        assert peer[0] == str(a.ip)
        client.sendall(b"ping")
        assert accepted.recv(4) == b"ping"
        accepted.sendall(b"pong")
        assert client.recv(4) == b"pong"
        accepted.close()
        client.close()
        # denied at L3/L4: dropped in the kernel, never handed to the mesh
        assert tcp_connect(a.pod_netns, b.ip, 9090) is None
        with pytest.raises(TimeoutError):
            outbound.accept()
    finally:
        outbound.close()

    # a non-meshed source: plaintext to the meshed pod goes to the inbound listener
    dp.sync_mesh({str(b.ip): table})
    inbound = _transparent_listener(pods.node, "127.0.0.1", int(MeshPort.INBOUND))
    try:
        client = tcp_connect(a.pod_netns, b.ip, 8080)
        assert client is not None, "the SYN to the mesh inbound listener was dropped"
        accepted, peer = inbound.accept()
        assert (accepted.getsockname(), peer[0]) == ((str(b.ip), 8080), str(a.ip))
        accepted.close()
        client.close()
    finally:
        inbound.close()
