"""The node proxy and the reference datapath agree on every HTTP L7 decision of the shared
scenarios, with real HTTP traffic through the proxy.

Each scenario is resolved by the real policy engine (through the reference lab that
`policy check` uses). For every HTTP probe whose only L7 decision is made by the destination's
ingress proxy, the destination's resolved policy and the source's identity are handed to a
running `NodeProxy` (the policy source the agent will fill), the probe's request is sent with
http.client from a loopback address standing for the source pod, and the proxy's answer (403
or forwarded) must be the reference's verdict. The rule set is moved from the probe's port to
the loopback upstream's port; nothing else about it changes."""

from __future__ import annotations

import http.client
import os
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "proxy"))
from proxyharness import ProxyThread, upstream_http  # noqa: E402

from netstrata.errors import ManifestError, PolicyConflictError  # noqa: E402
from netstrata.lab.cases import SKIP_VERDICTS, Apply, Delete, Probe, Relabel, load_case_file  # noqa: E402
from netstrata.lab.reference_check import ScenarioRunner  # noqa: E402
from netstrata.policy.l7 import HTTPRequest  # noqa: E402
from netstrata.policy.types import Direction, ResolvedPolicy  # noqa: E402
from netstrata.proxy import InMemoryPolicySource, ListenerSpec, LocalEndpoint  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
CLIENT_IP = "127.0.0.2"


def _cases() -> Path | None:
    env = os.environ.get("NETSTRATA_SHARED")
    for cand in ([Path(env)] if env else []) + [ROOT.parent / "shared", ROOT / "shared"]:
        path = cand / "acceptance" / "scenarios" / "cases.yaml"
        if path.is_file():
            return path
    return None


def _ingress_only_http(runner: ScenarioRunner, probe: Probe) -> dict[str, Any] | None:
    """What the proxy needs to replay `probe`, if its only L7 decision is the ingress proxy's."""
    if probe.protocol != "http" or probe.expect in SKIP_VERDICTS:
        return None
    out = runner.run_probe(probe)
    l7_steps = [s for s in out.steps if s.layer == "l7"]
    if len(l7_steps) != 1 or l7_steps[0].direction != "ingress" or l7_steps[0].detail != "http rules":
        return None
    src = runner._workload(probe.src)
    port = int(probe.port) if probe.port is not None else 0
    dst_ip, dport, name = runner._target(probe, src, port)
    dst = runner.sc.topology.owner_of_ip(dst_ip) if dst_ip else None
    if dst is None:
        return None
    policy = runner.lab.endpoint_policy(dst)
    request = runner._request(probe, dport, None).l7
    if policy is None or not isinstance(request, HTTPRequest):
        return None
    peer = runner.lab.ipcache(dst.workload.cluster, dst.workload.node, src.ip)
    return {"policy": policy, "port": dport, "peer": peer, "request": request,
            "allowed": l7_steps[0].allowed, "id": f"{runner.sc.id}: {probe.raw.get('id')}"}


def _collect(path: Path) -> list[dict[str, Any]]:
    _, scenarios = load_case_file(path)
    found: list[dict[str, Any]] = []
    for sc in scenarios:
        runner = ScenarioRunner(sc)
        try:
            for action in sc.actions:
                if isinstance(action, Apply):
                    runner.apply(action)
                elif isinstance(action, Delete):
                    runner.delete(action)
                elif isinstance(action, Relabel):
                    runner.relabel(action)
                elif isinstance(action, Probe):
                    case = _ingress_only_http(runner, action)
                    if case is not None:
                        found.append(case)
        except (ManifestError, PolicyConflictError, KeyError):
            continue
    return found


def _moved(policy: ResolvedPolicy, port: int, to: int) -> ResolvedPolicy:
    l7 = policy.find_l7(Direction.INGRESS, 6, port)
    assert l7 is not None
    return replace(policy, l7={(Direction.INGRESS, 6, to, 16): l7})


def _send(address: tuple[str, int], request: HTTPRequest) -> int:
    conn = http.client.HTTPConnection(*address, timeout=5, source_address=(CLIENT_IP, 0))
    try:
        conn.putrequest(request.method, request.path, skip_host=True, skip_accept_encoding=True)
        conn.putheader("Host", request.host or "backend")
        for key, value in request.headers:
            if key.lower() != "host":
                conn.putheader(key, value)
        conn.endheaders()
        response = conn.getresponse()
        body = response.read()
        if response.status == 403:
            assert body == b"Access denied\r\n"
        return response.status
    finally:
        conn.close()


def test_proxy_agrees_with_the_reference_on_http_scenarios() -> None:
    path = _cases()
    if path is None:
        pytest.skip("shared acceptance cases not found (shared/ beside the checkout, or "
                    "NETSTRATA_SHARED)")
    cases = _collect(path)
    assert len(cases) >= 10, "too few ingress HTTP L7 probes to compare"
    source = InMemoryPolicySource()
    with upstream_http() as upstream, ProxyThread(
            source, [ListenerSpec("http-in", "http", Direction.INGRESS)],
            secrets=lambda ns, name: None) as proxy:
        up_port = upstream.server_address[1]
        source.set_original_destination("http-in", ("127.0.0.1", up_port))
        address = proxy.addresses["http-in"]
        disagreements = []
        for case in cases:
            policy = _moved(case["policy"], case["port"], up_port)
            endpoint = LocalEndpoint(policy.endpoint_id, policy.identity, ("127.0.0.1",), policy)
            proxy.call(lambda e=endpoint: source.upsert_endpoint(e))  # type: ignore[misc]
            proxy.call(lambda p=case["peer"]: source.set_identity(CLIENT_IP, p))  # type: ignore[misc]
            status = _send(address, case["request"])
            if (status != 403) != case["allowed"]:
                disagreements.append((case["id"], case["allowed"], status))
        assert disagreements == []
