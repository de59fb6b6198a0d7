"""The HTTP listener on loopback with real clients: curl and http.client through the proxy to a
real upstream HTTP server. Peer identities come from the clients' source addresses (127.0.0.2
is the tiefighter, 127.0.0.3 the xwing) through the policy source's ipcache, as the kernel
redirect will provide them; the original destination is pinned because nothing redirects
transparently here yet."""

from __future__ import annotations

import http.client
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest
from proxyharness import ProxyThread, upstream_http

from netstrata.api.types import HeaderMatch, HTTPRule
from netstrata.observe.flow import L7FlowType
from netstrata.observe.flow import Verdict as FV
from netstrata.policy.types import Direction, L7Entry, L7Policy, ResolvedPolicy
from netstrata.proxy import (
    HTTPSettings,
    InMemoryPolicySource,
    ListenerSpec,
    LocalEndpoint,
    ProxyConfig,
    Timeouts,
    event_loop_factory,
)

TIEFIGHTER_IP, XWING_IP = "127.0.0.2", "127.0.0.3"
TIEFIGHTER, XWING, DEATHSTAR = 48213, 51007, 100
CURL = shutil.which("curl")


def deathstar_policy(port: int) -> ResolvedPolicy:
    entries = (
        L7Entry(frozenset({TIEFIGHTER}), (HTTPRule(method="GET", path="/public"),
                                          HTTPRule(method="POST", path="/v1/request-landing"),
                                          HTTPRule(path="/pay", header_matches=(HeaderMatch(
                                              "X-Token", mismatch="REPLACE",
                                              secret=("empire", "pay")),))), cookie=1),
        L7Entry(frozenset({XWING}), (HTTPRule(method="GET", path="/rebels"),), cookie=2))
    return ResolvedPolicy(
        endpoint_id=12, identity=DEATHSTAR, revision=4, entries={}, ingress_enforced=True,
        egress_enforced=False, l7={(Direction.INGRESS, 6, port, 16): L7Policy("http", entries)},
        cookies={1: "CiliumNetworkPolicy empire/rule1 ingress[0]",
                 2: "CiliumNetworkPolicy empire/rule2 ingress[0]"})


@pytest.fixture
def setup(request: pytest.FixtureRequest) -> Iterator[tuple[ProxyThread, object]]:
    loop_factory = getattr(request, "param", None)
    with upstream_http() as upstream:
        port = upstream.server_address[1]
        source = InMemoryPolicySource()
        source.upsert_endpoint(LocalEndpoint(12, DEATHSTAR, ("127.0.0.1",),
                                             deathstar_policy(port), "empire", "deathstar"))
        source.set_identities([(TIEFIGHTER_IP, TIEFIGHTER), (XWING_IP, XWING)])
        source.set_original_destination("http-in", ("127.0.0.1", port))
        timeouts = Timeouts(header=0.6, read=0.6, idle=5.0, upstream=2.0, connect=1.0)
        config = ProxyConfig(node_name="test-node", linger=0.2,
                             http=HTTPSettings(timeouts=timeouts))
        spec = ListenerSpec("http-in", "http", Direction.INGRESS)
        secrets = {("empire", "pay"): "s3cret"}
        with ProxyThread(source, [spec], config=config, loop_factory=loop_factory,
                         secrets=lambda ns, name: secrets.get((ns, name))) as proxy:
            yield proxy, upstream


def proxy_url(proxy: ProxyThread, path: str) -> str:
    host, port = proxy.addresses["http-in"]
    return f"http://{host}:{port}{path}"


def curl(proxy: ProxyThread, path: str, source_ip: str, *args: str) -> tuple[int, bytes]:
    """(status, body) as curl sees them."""
    assert CURL is not None
    out = subprocess.run(
        [CURL, "-sS", "--max-time", "5", "--interface", source_ip, "-o", "-",
         "-w", "\n%{http_code}", *args, proxy_url(proxy, path)],
        capture_output=True, check=True, timeout=10).stdout
    body, _, code = out.rpartition(b"\n")
    return int(code), body


@pytest.mark.skipif(CURL is None, reason="curl is not installed (apt-get install curl)")
def test_curl_allowed_is_forwarded_denied_gets_403(setup: tuple[ProxyThread, object]) -> None:
    proxy, upstream = setup
    assert curl(proxy, "/public", TIEFIGHTER_IP) == (200, b"GET /public token=None\n")
    assert curl(proxy, "/private", TIEFIGHTER_IP) == (403, b"Access denied\r\n")
    code, body = curl(proxy, "/v1/request-landing", TIEFIGHTER_IP, "-X", "POST", "-d", "ship=1")
    assert (code, body) == (200, b"POST /v1/request-landing token=None\nship=1")
    # the xwing has its own rule set: /public is not in it
    assert curl(proxy, "/public", XWING_IP)[0] == 403
    assert curl(proxy, "/rebels", XWING_IP)[0] == 200
    assert [p for _, p, _ in upstream.seen] == ["/public", "/v1/request-landing", "/rebels"]  # type: ignore[attr-defined]


@pytest.mark.skipif(CURL is None, reason="curl is not installed (apt-get install curl)")
def test_curl_path_tricks_are_normalized(setup: tuple[ProxyThread, object]) -> None:
    proxy, upstream = setup
    assert curl(proxy, "/public/../private", TIEFIGHTER_IP, "--path-as-is")[0] == 403
    assert curl(proxy, "//public", TIEFIGHTER_IP, "--path-as-is")[0] == 200
    assert curl(proxy, "/%70ublic", TIEFIGHTER_IP)[0] == 200
    assert upstream.seen[-1][1] == "/public"  # type: ignore[attr-defined]


def test_keep_alive_connection_with_mixed_verdicts(setup: tuple[ProxyThread, object]) -> None:
    proxy, upstream = setup
    host, port = proxy.addresses["http-in"]
    conn = http.client.HTTPConnection(host, port, timeout=5, source_address=(TIEFIGHTER_IP, 0))
    answers = []
    for path in ("/public", "/private", "/public", "/admin", "/public"):
        conn.request("GET", path)
        response = conn.getresponse()
        answers.append((response.status, response.read()))
        if path == "/public":
            sock = conn.sock
    assert [s for s, _ in answers] == [200, 403, 200, 403, 200]
    assert answers[1][1] == b"Access denied\r\n"
    assert conn.sock is sock  # one client connection carried every request
    conn.close()
    assert [p for _, p, _ in upstream.seen] == ["/public"] * 3  # type: ignore[attr-defined]
    requests = [f for f in proxy.flows if f.l7 is not None and f.l7.type == L7FlowType.REQUEST]
    assert [f.verdict for f in requests] == [FV.FORWARDED, FV.DROPPED] * 2 + [FV.FORWARDED]
    responses = [f for f in proxy.flows if f.l7 is not None and f.l7.type == L7FlowType.RESPONSE]
    assert [f.l7.record.code for f in responses] == [200, 403, 200, 403, 200]
    assert responses[0].l7.latency_ns > 0 and requests[0].ingress_allowed_by[0].name == "rule1"
    stats = proxy.call(lambda: proxy.proxy.statistics())  # type: ignore[union-attr]
    assert (stats.requests_forwarded, stats.requests_denied) == (3, 2)


def test_header_rewritten_from_secret(setup: tuple[ProxyThread, object]) -> None:
    proxy, upstream = setup
    host, port = proxy.addresses["http-in"]
    conn = http.client.HTTPConnection(host, port, timeout=5, source_address=(TIEFIGHTER_IP, 0))
    conn.request("GET", "/pay", headers={"X-Token": "guess"})
    response = conn.getresponse()
    assert (response.status, response.read()) == (200, b"GET /pay token=s3cret\n")
    conn.close()


def raw_exchange(proxy: ProxyThread, data: bytes, source_ip: str = TIEFIGHTER_IP) -> bytes:
    """Send `data`, read until the proxy closes; the whole reply."""
    host, port = proxy.addresses["http-in"]
    with socket.create_connection((host, port), timeout=5, source_address=(source_ip, 0)) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_slow_client_is_timed_out_while_others_are_served(setup: tuple[ProxyThread, object]) -> None:
    proxy, _ = setup
    host, port = proxy.addresses["http-in"]
    slow = socket.create_connection((host, port), timeout=5, source_address=(TIEFIGHTER_IP, 0))
    slow.sendall(b"GET /public HTTP/1.1\r\nHost: deathstar\r\n")  # and never the blank line
    started = time.monotonic()
    conn = http.client.HTTPConnection(host, port, timeout=5, source_address=(TIEFIGHTER_IP, 0))
    conn.request("GET", "/public")
    assert conn.getresponse().status == 200  # served while the slow one waits
    conn.close()
    reply = b""
    while chunk := slow.recv(4096):
        reply += chunk
    slow.close()
    assert reply.startswith(b"HTTP/1.1 408 ")
    assert time.monotonic() - started < 4  # the header timeout, not the idle one


def test_malformed_input_is_refused_and_the_server_keeps_serving(
        setup: tuple[ProxyThread, object]) -> None:
    proxy, upstream = setup
    smuggle = (b"POST /public HTTP/1.1\r\nHost: d\r\nContent-Length: 6\r\n"
               b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /private HTTP/1.1\r\nHost: d\r\n\r\n")
    assert raw_exchange(proxy, smuggle).startswith(b"HTTP/1.1 400 ")
    assert raw_exchange(proxy, b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03garbage\r\n\r\n"
                        ).startswith(b"HTTP/1.1 400 ")
    obs_fold = b"GET /public HTTP/1.1\r\nHost: d\r\nX-A: 1\r\n  folded\r\n\r\n"
    assert raw_exchange(proxy, obs_fold).startswith(b"HTTP/1.1 400 ")
    big = b"GET /public HTTP/1.1\r\nHost: d\r\nX-Big: " + b"a" * 80_000 + b"\r\n\r\n"
    assert raw_exchange(proxy, big).startswith(b"HTTP/1.1 431 ")
    assert not any(p == "/private" for _, p, _ in upstream.seen)  # type: ignore[attr-defined]
    conn = http.client.HTTPConnection(*proxy.addresses["http-in"], timeout=5,
                                      source_address=(TIEFIGHTER_IP, 0))
    conn.request("GET", "/public")
    assert conn.getresponse().status == 200
    conn.close()


def test_upstream_down_gets_503(setup: tuple[ProxyThread, object]) -> None:
    proxy, _ = setup
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead_port = s.getsockname()[1]  # bound but not listening: connection refused
        source = proxy.source
        assert isinstance(source, InMemoryPolicySource)
        proxy.call(lambda: source.set_original_destination("http-in", ("127.0.0.1", dead_port)))
        proxy.call(lambda: source.set_policy(12, deathstar_policy(dead_port)))
        reply = raw_exchange(proxy, b"GET /public HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n")
    assert reply.startswith(b"HTTP/1.1 503 ") and reply.endswith(b"connection failure")


def test_unknown_connection_is_closed(setup: tuple[ProxyThread, object]) -> None:
    proxy, _ = setup
    source = proxy.source
    assert isinstance(source, InMemoryPolicySource)
    proxy.call(lambda: source.remove_endpoint(12))
    try:
        reply = raw_exchange(proxy, b"GET /public HTTP/1.1\r\nHost: d\r\n\r\n")
    except ConnectionResetError:
        reply = b""
    assert reply == b""
    stats = proxy.call(lambda: proxy.proxy.statistics())  # type: ignore[union-attr]
    assert stats.connections_refused == 1


@pytest.mark.skipif(event_loop_factory() is None, reason="uvloop is not installed")
@pytest.mark.parametrize("setup", [event_loop_factory()], indirect=True, ids=["uvloop"])
def test_same_behaviour_on_uvloop(setup: tuple[ProxyThread, object]) -> None:
    proxy, _ = setup
    conn = http.client.HTTPConnection(*proxy.addresses["http-in"], timeout=5,
                                      source_address=(TIEFIGHTER_IP, 0))
    statuses = []
    for path in ("/public", "/private", "/public"):
        conn.request("GET", path)
        response = conn.getresponse()
        response.read()
        statuses.append(response.status)
    conn.close()
    assert statuses == [200, 403, 200]
