"""The HTTP listener with real gRPC: grpcio clients through the proxy (prior-knowledge h2c) to
the lab's grpcio door service, allowed and denied per method, and HTTP/1.1 on the same port.
The client connects from 127.0.0.1 (the public terminal's identity in the policy source's
ipcache); the door server listens on 127.0.0.5."""

from __future__ import annotations

import http.client
import socket
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from proxyharness import ProxyThread

from netstrata.api.types import HTTPRule
from netstrata.lab.grpc_doors import DOOR_NAME, encode_fields, generic_handler, method_path
from netstrata.lab.probe_tools import grpc_call
from netstrata.observe.flow import HTTP, L7FlowType
from netstrata.observe.flow import Verdict as FV
from netstrata.policy.types import Direction, L7Entry, L7Policy, ResolvedPolicy
from netstrata.proxy import InMemoryPolicySource, ListenerSpec, LocalEndpoint
from netstrata.proxy.layers.http2 import H2_PREFACE

DOOR_IP, TERMINAL_IP = "127.0.0.5", "127.0.0.1"
TERMINAL, DOOR = 4242, 600


def door_policy(port: int) -> ResolvedPolicy:
    rules = tuple(
        HTTPRule(method="POST", path=f"/cloudcity.DoorManager/{m}")
        for m in ("GetName", "GetLocation", "RequestMaintenance")
    )
    entry = L7Entry(frozenset({TERMINAL}), rules, cookie=1)
    return ResolvedPolicy(
        endpoint_id=30,
        identity=DOOR,
        revision=2,
        entries={},
        ingress_enforced=True,
        egress_enforced=False,
        l7={(Direction.INGRESS, 6, port, 16): L7Policy("http", (entry,))},
        cookies={1: "CiliumNetworkPolicy default/rule1 ingress[0]"},
    )


@pytest.fixture
def setup() -> Iterator[tuple[ProxyThread, str]]:
    server = grpc.server(ThreadPoolExecutor(4))
    server.add_generic_rpc_handlers((generic_handler(),))
    port = server.add_insecure_port(f"{DOOR_IP}:0")
    server.start()
    try:
        source = InMemoryPolicySource()
        source.upsert_endpoint(
            LocalEndpoint(30, DOOR, (DOOR_IP,), door_policy(port), "default", "cc-door-mgr")
        )
        source.set_identity(f"{TERMINAL_IP}/32", TERMINAL)
        source.set_original_destination("http-in", (DOOR_IP, port))
        with ProxyThread(source, [ListenerSpec("http-in", "http", Direction.INGRESS)]) as proxy:
            host, pport = proxy.addresses["http-in"]
            yield proxy, f"{host}:{pport}"
    finally:
        server.stop(0)


def test_allowed_method_reaches_the_service(setup: tuple[ProxyThread, str]) -> None:
    proxy, target = setup
    result = grpc_call(target, "GetName")
    assert (result.code, result.response) == ("OK", f"Door name is: {DOOR_NAME}")
    location = grpc_call(target, "GetLocation")
    assert location.response == "Door location is lat = 10.222200393676758 long = 68.87879943847656"
    requests = [f for f in proxy.flows if f.l7 is not None and f.l7.type == L7FlowType.REQUEST]
    assert [f.verdict for f in requests] == [FV.FORWARDED, FV.FORWARDED]
    record = requests[0].l7.record if requests[0].l7 is not None else None
    assert isinstance(record, HTTP)
    assert record.url.endswith("/cloudcity.DoorManager/GetName")
    assert record.protocol == "HTTP/2"


def test_denied_method_gets_permission_denied(setup: tuple[ProxyThread, str]) -> None:
    proxy, target = setup
    result = grpc_call(target, "SetAccessCode")
    assert (result.code, result.value) == ("PERMISSION_DENIED", 7)
    assert result.detail == "Access denied\r\n"
    verdicts = [(f.l7.type, f.verdict) for f in proxy.flows if f.l7 is not None]
    assert (L7FlowType.REQUEST, FV.DROPPED) in verdicts


def test_denied_stream_leaves_other_streams_on_the_connection(
    setup: tuple[ProxyThread, str],
) -> None:
    _, target = setup
    with grpc.insecure_channel(target) as channel:
        calls = {m: channel.unary_unary(method_path(m)) for m in ("GetName", "SetAccessCode")}
        futures = [
            (m, calls[m].future(encode_fields({1: 1, 2: 999}), timeout=5))
            for m in ("GetName", "SetAccessCode", "GetName", "SetAccessCode", "GetName")
        ]
        outcomes = []
        for method, future in futures:
            try:
                future.result()
                outcomes.append((method, "OK"))
            except grpc.RpcError as exc:
                outcomes.append((method, exc.code().name))
        # after the denials the same channel (one HTTP/2 connection) still works
        assert calls["GetName"](encode_fields({1: 1}), timeout=5)
    assert outcomes == [
        ("GetName", "OK"),
        ("SetAccessCode", "PERMISSION_DENIED"),
        ("GetName", "OK"),
        ("SetAccessCode", "PERMISSION_DENIED"),
        ("GetName", "OK"),
    ]


def test_http1_on_the_same_port_is_decided_as_http1(setup: tuple[ProxyThread, str]) -> None:
    _, target = setup
    host, port = target.split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=5)
    conn.request("GET", "/cloudcity.DoorManager/GetName")
    response = conn.getresponse()
    assert (response.status, response.read()) == (403, b"Access denied\r\n")


def _read_goaway(sock: socket.socket) -> int | None:
    """Read frames until GOAWAY (returns its error code) or EOF (None)."""
    buf = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            return None
        buf += chunk
        while len(buf) >= 9:
            size = int.from_bytes(buf[:3], "big")
            if len(buf) < 9 + size:
                break
            kind, payload, buf = buf[3], buf[9 : 9 + size], buf[9 + size :]
            if kind == 7:
                return int.from_bytes(payload[4:8], "big")


@pytest.mark.parametrize(
    ("attack", "code"),
    [
        # garbage after the preface: a frame type SETTINGS with a bad length, FRAME_SIZE_ERROR
        (b"\x00\x00\x05\x04\x00\x00\x00\x00\x00" + b"\x00" * 5, 0x6),
        # a PING flood: ENHANCE_YOUR_CALM once the abuse budget is spent
        ((b"\x00\x00\x08\x06\x00\x00\x00\x00\x00" + b"\x00" * 8) * 1000, 0xB),
    ],
)
def test_abusive_connection_gets_goaway_and_others_are_served(
    setup: tuple[ProxyThread, str], attack: bytes, code: int
) -> None:
    proxy, target = setup
    host, port = target.split(":")
    with socket.create_connection((host, int(port)), timeout=5) as sock:
        sock.sendall(H2_PREFACE + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00" + attack)
        assert _read_goaway(sock) == code
    assert grpc_call(target, "GetName").code == "OK"
    assert proxy.call(lambda: proxy.proxy.statistics().connections_failed) == 0
