"""The kernel's transparent redirect to the node proxy, with curl through a lab.

Two shared scenarios, each built once as a real lab (namespaces, tc programs, one in-process
`NodeProxyRunner` per node with its sockets in the node's namespace, workload servers):

* `cli-echo-ingress-l7`: echo pods allow client2 on 8080 with HTTP rules (ingress L7);
* `cli-client-egress-l7-method-port-range`: client2 may POST to echo-same-node (egress L7).

What is shown: a request redirected to the proxy is allowed or denied by its path; without a
proxy socket nothing reaches the L7 port around it; the proxy's own upstream connection is not
redirected back into it; and an L3/L4 deny at the destination still drops that upstream.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from labkit import acceptance_dir

from netstrata.datapath.drop_reasons import DropReason
from netstrata.datapath.maps import EventType, FlowEvent, Verdict
from netstrata.lab.cases import Apply, Probe, Scenario, load_case_file
from netstrata.lab.clients import http_probe
from netstrata.lab.kernel_session import LabSession, probe_targets, server_specs, session_for
from netstrata.lab.reference_check import ScenarioRunner
from netstrata.policy.types import Direction, MapStateEntry, MapStateKey

T = TypeVar("T")
TCP = 6


def _scenario(name: str) -> Scenario:
    _, scenarios = load_case_file(acceptance_dir() / "scenarios" / "cases.yaml")
    return next(s for s in scenarios if s.id == name)


def _in_lab(case: str, body: Callable[[LabSession, ScenarioRunner], Coroutine[Any, Any, T]]) -> T:
    """Build the case's lab under a name of our own, apply its policies, run `body`."""
    sc = _scenario(case)

    async def main() -> T:
        runner = ScenarioRunner(sc)
        for action in sc.actions:
            if isinstance(action, Apply):
                runner.apply(action)
        probes = [a for a in sc.actions if isinstance(a, Probe)]
        wanted, targets = probe_targets(runner, probes)
        session = await session_for(None, f"pxr{case[:6]}", sc.topology, targets)
        try:
            await session.serve(server_specs(session.plan, sc.topology, wanted),
                                sc.topology.dns_records)
            await session.sync(runner.lab)
            session.drain_events()
            return await body(session, runner)
        finally:
            await session.close()

    return asyncio.run(main())


def _pod(session: LabSession, name: str) -> tuple[str, str, str]:
    """(netns, IP, node key) of the workload whose ref ends with `name`."""
    pod = next(p for p in session.plan.pods if p.ref.split("/")[-1] == name)
    return pod.netns, pod.ips[0], pod.node


def _events(session: LabSession) -> list[FlowEvent]:
    return [e for evs in session.drain_events().values() for e in evs]


def test_ingress_redirect_judges_by_path_and_never_loops() -> None:
    async def body(session: LabSession, runner: ScenarioRunner) -> None:
        ns, client_ip, node = _pod(session, "client2")
        _, echo_ip, _ = _pod(session, "echo-same-node")
        proxy = session.proxies[node].proxy

        allowed = await http_probe(ns, echo_ip, 8080, path="/public")
        denied = await http_probe(ns, echo_ip, 8080, path="/private")
        assert (allowed.got, denied.got) == ("allowed", "denied-l7"), (allowed, denied)
        stats = proxy.statistics()
        # one accepted connection per request: the upstream was not redirected back into it
        assert (stats.connections_total, stats.requests_forwarded, stats.requests_denied) == (
            2, 1, 1)

        verdicts = [e for e in _events(session) if e.type == EventType.POLICY_VERDICT
                    and str(e.saddr_be) == client_ip and e.dport_be == 8080]
        redirected = [e for e in verdicts if e.verdict == Verdict.REDIRECTED]
        upstream = [e for e in verdicts if e.verdict == Verdict.FORWARDED]
        assert len(redirected) == 2 and all(e.proxy_port == 15080 for e in redirected)
        # the proxy's upstream left from the client's own address and was checked (and
        # allowed by the same entry) at the destination without a second redirect
        assert len(upstream) == 1 and upstream[0].direction == Direction.INGRESS
        assert upstream[0].sport_be not in {e.sport_be for e in redirected}

    _in_lab("cli-echo-ingress-l7", body)


def test_without_a_proxy_socket_the_l7_port_cannot_be_reached_around_it() -> None:
    async def body(session: LabSession, runner: ScenarioRunner) -> None:
        ns, _, node = _pod(session, "client2")
        _, echo_ip, _ = _pod(session, "echo-same-node")
        proxy = session.proxies[node].proxy
        for name in list(proxy.addresses):
            await proxy.remove_listener(name)

        out = await http_probe(ns, echo_ip, 8080, path="/public")
        assert out.got == "dropped", out
        drops = [e for e in _events(session) if e.type == EventType.DROP]
        assert any(e.drop_reason == DropReason.PROXY_LOOKUP_FAILED for e in drops)
        assert proxy.statistics().connections_total == 0

    _in_lab("cli-echo-ingress-l7", body)


def test_l3l4_deny_at_the_destination_drops_the_proxy_upstream() -> None:
    async def body(session: LabSession, runner: ScenarioRunner) -> None:
        ns, client_ip, node = _pod(session, "client2")
        _, echo_ip, echo_node = _pod(session, "echo-same-node")
        before = await http_probe(ns, echo_ip, 8080, method="POST", path="/public")
        assert before.got == "allowed", before

        # an explicit deny of client2 on the echo pod's ingress, written into the kernel only:
        # the egress proxy still accepts the request, its upstream must not get through
        agent = session.agents[echo_node]
        echo_ep = next(i for ref, i in agent.endpoint_ids.items() if ref.endswith("echo-same-node"))
        client2 = next(i for ref, i in runner.lab.identity_of.items() if ref.endswith("client2"))
        policy = agent.policies[echo_ep]
        deny = {MapStateKey(Direction.INGRESS, client2, TCP, 8080, 16): MapStateEntry(deny=True)}
        agent.datapath.apply_policy(dataclasses.replace(
            policy, entries={**policy.entries, **deny}, ingress_enforced=True,
            revision=policy.revision + 1))
        session.drain_events()

        after = await http_probe(ns, echo_ip, 8080, method="POST", path="/public")
        assert after.got != "allowed", after
        assert session.proxies[node].proxy.statistics().requests_forwarded == 2
        drops = [e for e in _events(session) if e.type == EventType.DROP
                 and str(e.saddr_be) == client_ip and e.endpoint_id == echo_ep]
        assert drops and all(e.drop_reason == DropReason.POLICY_DENY for e in drops)

    _in_lab("cli-client-egress-l7-method-port-range", body)
