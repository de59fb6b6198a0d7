"""DNS through the kernel's transparent redirect to the node's DNS proxy, and toFQDNs.

Real labs built from two shared scenarios (namespaces, tc programs, one in-process
`NodeProxyRunner` per node whose transparent DNS listener sits in the node's namespace, the
lab's DNS server playing kube-dns, external hosts as namespaces outside the cluster), probed
with dig and plain TCP connects from the pods:

* `docs-l7-dns-policy`: `rules.dns` allows cilium.io and some subdomains; others are REFUSED
  by the proxy, over UDP and TCP; a malformed datagram is refused and the proxy keeps serving;
* `docs-dns-fqdn-pattern`: `toFQDNs` `*.github.com`; a connection to an external IP is dropped
  before the lookup, allowed once dig has seen the answer (the IP is in the kernel's ipcache
  with an FQDN identity), and dropped again after the record's TTL; github.com itself, looked
  up through the same proxy, never matches and stays dropped. The answer is released while
  the lab's netlink thread is busy (as when another lane builds its lab): learned IPs are
  written from a thread of their own.
"""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine
from ipaddress import IPv4Network
from typing import Any, TypeVar

from labkit import acceptance_dir

from netstrata.datapath.maps import EventType, Verdict
from netstrata.lab import kernel_session
from netstrata.lab.cases import Apply, Probe, Scenario, load_case_file
from netstrata.lab.clients import dns_probe, tcp_probe
from netstrata.lab.kernel_session import LabSession, probe_targets, server_specs, session_for
from netstrata.lab.reference_check import ScenarioRunner
from netstrata.netns import socket_in_netns

T = TypeVar("T")
TTL = 2
"""Seconds of TTL the lab DNS server gives its records here (30 by default)."""


def _scenario(name: str) -> Scenario:
    _, scenarios = load_case_file(acceptance_dir() / "scenarios" / "cases.yaml")
    return next(s for s in scenarios if s.id == name)


def _in_lab(case: str, body: Callable[[LabSession, ScenarioRunner], Coroutine[Any, Any, T]]) -> T:
    sc = _scenario(case)

    async def main() -> T:
        runner = ScenarioRunner(sc)
        for action in sc.actions:
            if isinstance(action, Apply):
                runner.apply(action)
        probes = [a for a in sc.actions if isinstance(a, Probe)]
        wanted, targets = probe_targets(runner, probes)
        session = await session_for(None, f"dnsr{case[-6:]}", sc.topology, targets)
        try:
            await session.serve(
                server_specs(session.plan, sc.topology, wanted), sc.topology.dns_records
            )
            assert session.servers is not None
            session.servers.dns_ttl = TTL
            await session.sync(runner.lab)
            session.drain_events()
            return await body(session, runner)
        finally:
            await session.close()

    return asyncio.run(main())


def _pod(session: LabSession, name: str) -> tuple[str, str, str]:
    pod = next(p for p in session.plan.pods if p.ref.split("/")[-1] == name)
    return pod.netns, pod.ips[0], pod.node


async def _garbage(netns: str, server: str) -> bytes | None:
    """A datagram that is no DNS query (QDCOUNT 0, junk after the header): the answer."""
    sock = socket_in_netns(netns, socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    loop = asyncio.get_running_loop()
    with sock:
        await loop.sock_sendto(
            sock, b"\x12\x34\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00junk", (server, 53)
        )
        try:
            async with asyncio.timeout(2):
                return await loop.sock_recv(sock, 512)
        except TimeoutError:
            return None


def test_rules_dns_allow_and_refuse_through_the_kernel_redirect() -> None:
    async def body(session: LabSession, runner: ScenarioRunner) -> None:
        ns, client_ip, node = _pod(session, "alliance-pod")
        _, dns_ip, _ = _pod(session, "kube-dns")
        allowed = await dns_probe(ns, dns_ip, 53, "cilium.io")
        refused = await dns_probe(ns, dns_ip, 53, "example.org")
        over_tcp = await dns_probe(ns, dns_ip, 53, "sub.cilium.io", transport="TCP")
        refused_tcp = await dns_probe(ns, dns_ip, 53, "example.org", transport="TCP")
        assert (allowed.got, refused.got) == ("allowed", "denied-l7"), (allowed, refused)
        assert "NOERROR" in allowed.detail and "REFUSED" in refused.detail
        assert (over_tcp.got, refused_tcp.got) == ("allowed", "denied-l7"), (over_tcp, refused_tcp)

        # the answers came from the proxy, which the kernel handed the queries to
        events = [e for evs in session.drain_events().values() for e in evs]
        redirected = [
            e
            for e in events
            if e.type == EventType.POLICY_VERDICT
            and e.verdict == Verdict.REDIRECTED
            and str(e.saddr_be) == client_ip
        ]
        assert redirected and all(e.dport_be == 53 for e in redirected)
        assert session.servers is not None and session.servers.stats.dns_queries == 2

        # a malformed datagram: FORMERR from the proxy (never the server), and it goes on
        reply = await _garbage(ns, dns_ip)
        assert reply is not None and reply[:2] == b"\x12\x34" and reply[3] & 0x0F == 1
        again = await dns_probe(ns, dns_ip, 53, "cilium.io")
        assert again.got == "allowed", again
        assert session.servers.stats.dns_queries == 3
        assert node in session.proxies

    _in_lab("docs-l7-dns-policy", body)


def test_tofqdns_ips_are_allowed_after_the_lookup_until_their_ttl() -> None:
    async def body(session: LabSession, runner: ScenarioRunner) -> None:
        ns, _, node = _pod(session, "mediabot")
        _, dns_ip, _ = _pod(session, "kube-dns")
        support, github = "203.0.113.11", "203.0.113.13"

        before = await tcp_probe(ns, support, 80, b"GET / HTTP/1.0\r\n\r\n")
        assert before.got == "dropped", before

        # the netlink thread busy for longer than dig waits (another lab being built): the
        # held answer must not wait for it
        busy = threading.Event()
        kernel_session._NETLINK.submit(busy.wait, 10)
        try:
            looked = await dns_probe(ns, dns_ip, 53, "support.github.com")
        finally:
            busy.set()
        assert (looked.got, looked.answers) == ("allowed", (support,)), looked
        agent = session.agents[node]
        ident = agent.datapath.ipcache().get(IPv4Network(f"{support}/32"))
        assert ident is not None and ident == runner.lab.fqdn_ips["default"][support]
        assert ident >= 0x01000000  # a node-local FQDN identity
        after = await tcp_probe(ns, support, 80, b"GET / HTTP/1.0\r\n\r\n")
        assert after.got == "allowed", after

        # looked up through the same proxy, but *.github.com does not cover github.com
        other = await dns_probe(ns, dns_ip, 53, "github.com")
        assert (other.got, other.answers) == ("allowed", (github,)), other
        assert github not in runner.lab.fqdn_ips.get("default", {})
        assert (await tcp_probe(ns, github, 80, b"x")).got == "dropped"

        learned = time.monotonic()
        while support in runner.lab.fqdn_ips.get("default", {}):
            assert time.monotonic() - learned < TTL + 5, "the expired IP was never removed"
            await asyncio.sleep(0.2)
        assert IPv4Network(f"{support}/32") not in agent.datapath.ipcache()  # world again
        await session.reset()  # a new connection, not the tracked one
        expired = await tcp_probe(ns, support, 80, b"GET / HTTP/1.0\r\n\r\n")
        assert expired.got == "dropped", expired

    _in_lab("docs-dns-fqdn-pattern", body)
