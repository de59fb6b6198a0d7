"""The DNS proxy with real clients (dig, dnspython) over UDP and TCP in front of a small
upstream DNS server: allowed names answered, others REFUSED, the learner called with the IPs
and TTL before the client gets the answer, malformed queries refused while serving goes on.
The asking pod is 127.0.0.2 (an egress endpoint); the DNS server 127.0.0.1 plays kube-dns."""

from __future__ import annotations

import asyncio
import errno
import shutil
import socket
import socketserver
import struct
import subprocess
import threading
import time
from collections.abc import Iterator

import dns.message
import dns.query
import dns.rcode
import dns.rrset
import pytest
from proxyharness import ProxyThread

from netstrata.api.types import DNSRule
from netstrata.observe.flow import L7FlowType
from netstrata.observe.flow import Verdict as FV
from netstrata.policy.types import Direction, L7Entry, L7Policy, Proto, ResolvedPolicy
from netstrata.proxy import (
    DNSObservation,
    DNSSettings,
    InMemoryPolicySource,
    ListenerSpec,
    LocalEndpoint,
    ProxyConfig,
)

POD_IP, KUBE_DNS_IP = "127.0.0.2", "127.0.0.1"
POD_ID, KUBE_DNS_ID = 4001, 102
RECORDS = {"api.stripe.com.": ("192.0.2.10", 120), "www.example.com.": ("192.0.2.20", 30),
           "evil.example.net.": ("203.0.113.9", 60)}
DIG = shutil.which("dig")


def answer(wire: bytes) -> bytes:
    query = dns.message.from_wire(wire)
    response = dns.message.make_response(query)
    name = str(query.question[0].name).lower()
    if name in RECORDS:
        ip, ttl = RECORDS[name]
        response.answer.append(dns.rrset.from_text(name, ttl, "IN", "A", ip))
    else:
        response.set_rcode(dns.rcode.NXDOMAIN)
    return response.to_wire()


class _UDP(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        data, sock = self.request
        self.server.queries.append(data)  # type: ignore[attr-defined]
        sock.sendto(answer(data), self.client_address)


class _TCP(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        buf = b""
        while chunk := self.request.recv(65536):
            buf += chunk
            while len(buf) >= 2 and len(buf) >= 2 + struct.unpack_from(">H", buf)[0]:
                size = struct.unpack_from(">H", buf)[0]
                msg, buf = buf[2 : 2 + size], buf[2 + size :]
                self.server.queries.append(msg)  # type: ignore[attr-defined]
                reply = answer(msg)
                self.request.sendall(struct.pack(">H", len(reply)) + reply)


def _udp_and_tcp_on_one_port() -> tuple[socketserver.UDPServer, socketserver.TCPServer]:
    """A free UDP port, then TCP on the same number; that number may already be taken for TCP
    (another test's connection, a lab's listener), so on EADDRINUSE try another one."""
    for _ in range(50):
        udp = socketserver.ThreadingUDPServer((KUBE_DNS_IP, 0), _UDP)
        try:
            tcp = socketserver.ThreadingTCPServer((KUBE_DNS_IP, udp.server_address[1]), _TCP)
        except OSError as exc:
            udp.server_close()
            if exc.errno != errno.EADDRINUSE:
                raise
            continue
        return udp, tcp
    raise RuntimeError("no port free for both UDP and TCP in 50 tries")


@pytest.fixture
def upstream() -> Iterator[tuple[int, list[bytes]]]:
    """kube-dns stand-in on 127.0.0.1, UDP and TCP on one port; yields (port, queries seen)."""
    queries: list[bytes] = []
    udp, tcp = _udp_and_tcp_on_one_port()
    for server in (udp, tcp):
        server.queries = queries  # type: ignore[attr-defined]
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
    yield udp.server_address[1], queries
    for server in (udp, tcp):
        server.shutdown()
        server.server_close()


def pod_policy(port: int) -> ResolvedPolicy:
    rules = (DNSRule(match_pattern="*.stripe.com"), DNSRule(match_name="www.example.com"))
    l7 = L7Policy("dns", (L7Entry(frozenset({KUBE_DNS_ID}), rules, cookie=1),))
    return ResolvedPolicy(
        endpoint_id=40, identity=POD_ID, revision=1, entries={}, ingress_enforced=False,
        egress_enforced=True,
        l7={(Direction.EGRESS, int(Proto.UDP), port, 16): l7,
            (Direction.EGRESS, int(Proto.TCP), port, 16): l7},
        cookies={1: "CiliumNetworkPolicy shop/dns-visibility egress[0]"})


class Learner:
    """Records observations; takes `delay` seconds, like an ipcache update."""

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.seen: list[tuple[DNSObservation, float]] = []

    async def __call__(self, observation: DNSObservation) -> None:
        await asyncio.sleep(self.delay)
        self.seen.append((observation, time.monotonic()))


@pytest.fixture
def learner() -> Learner:
    return Learner(delay=0.2)


@pytest.fixture
def setup(upstream: tuple[int, list[bytes]], learner: Learner) -> Iterator[ProxyThread]:
    port, _ = upstream
    source = InMemoryPolicySource()
    source.upsert_endpoint(LocalEndpoint(40, POD_ID, (POD_IP,), pod_policy(port), "shop", "web"))
    source.set_identity(KUBE_DNS_IP, KUBE_DNS_ID)
    source.set_original_destination("dns-out", (KUBE_DNS_IP, port))
    config = ProxyConfig(node_name="test-node",
                         dns=DNSSettings(min_ttl=60, upstream_timeout=1.0, workers=4))
    spec = ListenerSpec("dns-out", "dns", Direction.EGRESS)
    with ProxyThread(source, [spec], config=config, learner=learner) as proxy:
        yield proxy


def dig(proxy: ProxyThread, name: str, *args: str) -> str:
    assert DIG is not None
    host, port = proxy.addresses["dns-out"]
    return subprocess.run(
        [DIG, "-b", POD_IP, "-p", str(port), f"@{host}", name, "A", "+tries=1", "+time=3", *args],
        capture_output=True, text=True, timeout=15).stdout


@pytest.mark.skipif(DIG is None, reason="dig is not installed (apt-get install dnsutils)")
def test_dig_allowed_is_answered_and_denied_is_refused(setup: ProxyThread,
                                                       learner: Learner) -> None:
    out = dig(setup, "api.stripe.com")
    assert "status: NOERROR" in out and "192.0.2.10" in out
    out = dig(setup, "evil.example.net")
    assert "status: REFUSED" in out and "203.0.113.9" not in out
    out = dig(setup, "www.example.com", "+tcp")
    assert "status: NOERROR" in out and "192.0.2.20" in out
    learned = {o.qname: (o.ips, o.ttl) for o, _ in learner.seen}
    assert learned == {"api.stripe.com.": (("192.0.2.10",), 120),
                       "www.example.com.": (("192.0.2.20",), 60)}  # TTL 30 raised to min 60


def pod_socket(kind: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, kind)
    sock.bind((POD_IP, 0))
    return sock


def test_answer_is_held_until_the_learner_returns(setup: ProxyThread, learner: Learner) -> None:
    host, port = setup.addresses["dns-out"]
    query = dns.message.make_query("api.stripe.com", "A")
    with pod_socket(socket.SOCK_DGRAM) as sock:
        sent = time.monotonic()
        response = dns.query.udp(query, host, port=port, timeout=5, sock=sock)
        received = time.monotonic()
    assert response.rcode() == dns.rcode.NOERROR
    ((observation, learned_at),) = learner.seen
    assert observation.ips == ("192.0.2.10",) and observation.endpoint_id == 40
    assert sent < learned_at <= received  # learned before the client saw the answer
    flows = [f for f in setup.flows if f.l7 is not None]
    request, reply = flows
    assert request.verdict == FV.FORWARDED and request.egress_allowed_by[0].name == "dns-visibility"
    assert reply.l7.type == L7FlowType.RESPONSE and reply.l7.record.ips == ("192.0.2.10",)


def test_refused_names_never_reach_the_upstream(setup: ProxyThread,
                                                upstream: tuple[int, list[bytes]]) -> None:
    host, port = setup.addresses["dns-out"]
    with pod_socket(socket.SOCK_DGRAM) as sock:
        response = dns.query.udp(dns.message.make_query("evil.example.net", "A"), host,
                                 port=port, timeout=5, sock=sock)
    assert response.rcode() == dns.rcode.REFUSED
    assert upstream[1] == []


def test_malformed_queries_are_refused_and_serving_goes_on(setup: ProxyThread) -> None:
    host, port = setup.addresses["dns-out"]
    with pod_socket(socket.SOCK_DGRAM) as sock:
        sock.settimeout(3)
        good = dns.message.make_query("api.stripe.com", "A", id=77).to_wire()
        bad = bytearray(good)
        bad[5] = 3  # QDCOUNT 3: FORMERR, as miekg/dns answers
        sock.sendto(bytes(bad), (host, port))
        reply = dns.message.from_wire(sock.recv(4096))
        assert reply.rcode() == dns.rcode.FORMERR and reply.id == 77
        sock.sendto(b"\x00", (host, port))  # too short to answer: ignored
        sock.sendto(good, (host, port))
        assert dns.message.from_wire(sock.recv(4096)).rcode() == dns.rcode.NOERROR
    with pod_socket(socket.SOCK_STREAM) as tcp:
        tcp.settimeout(3)
        tcp.connect((host, port))
        tcp.sendall(struct.pack(">H", len(bad)) + bytes(bad) + struct.pack(">H", len(good)) + good)
        replies = []
        buf = b""
        while len(replies) < 2:
            buf += tcp.recv(4096)
            while len(buf) >= 2 and len(buf) >= 2 + struct.unpack_from(">H", buf)[0]:
                size = struct.unpack_from(">H", buf)[0]
                replies.append(dns.message.from_wire(buf[2 : 2 + size]))
                buf = buf[2 + size :]
    assert [r.rcode() for r in replies] == [dns.rcode.FORMERR, dns.rcode.NOERROR]


def test_unreachable_upstream_gives_servfail(setup: ProxyThread) -> None:
    source = setup.source
    assert isinstance(source, InMemoryPolicySource)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as dead:
        dead.bind((KUBE_DNS_IP, 0))  # bound, never answers
        dead_port = dead.getsockname()[1]
        setup.call(lambda: source.set_original_destination("dns-out", (KUBE_DNS_IP, dead_port)))
        setup.call(lambda: source.set_policy(40, pod_policy(dead_port)))
        host, port = setup.addresses["dns-out"]
        with pod_socket(socket.SOCK_DGRAM) as sock:
            response = dns.query.udp(dns.message.make_query("api.stripe.com", "A"), host,
                                     port=port, timeout=5, sock=sock)
    assert response.rcode() == dns.rcode.SERVFAIL
