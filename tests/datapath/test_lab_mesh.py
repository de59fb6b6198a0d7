"""The mesh on real traffic in a kernel lab: capture, mTLS tunnel, the destination proxy's
authorization, judged from what real clients saw.

One node, namespace `shop`, mesh under PeerAuthentication STRICT: `server` (HTTP 8080, gRPC
50051), meshed `client` and `attacker`, and `legacy` without a sidecar. An AuthorizationPolicy
allows the principal `cluster.local/ns/shop/sa/client` to `/public/*` and the gRPC service
`rotation.Probe`, and anyone with a valid JWT whose `scope` claim is `transactions` to
POST /api/v1/process (RequestAuthentication with the acceptance suite's test key).

1. Through `lab check` (curl from the pods' namespaces): the client principal allowed, the
   attacker's principal denied (403 `RBAC: access denied`), plaintext from `legacy` refused
   under STRICT (closed without an answer, the destination proxy's reset), a valid JWT
   allowed, an expired one 401, none 403. Each outcome agrees with the reference run
   (`policy check`), and the mesh facts come from the destination proxy's own decisions.
2. Certificate rotation under traffic, with a 2 s certificate lifetime: a grpcio channel
   opened before the source's first certificate expired keeps working after it expired (the
   same tunnel: the destination accepted no new one), and a new channel afterwards works
   (its handshake presented a fresh certificate, checked at the destination's clock).
3. `netstrata lab up` labs run the mesh too: each node's agent process starts its mesh
   listeners with its first meshed view, the CAs kept in the lab's directory.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("pyroute2", reason="pyroute2 is needed for namespaces and tc")

from labkit import acceptance_dir, paired, verdict  # noqa: E402

from netstrata.lab import cases  # noqa: E402
from netstrata.lab.cases import Apply, Probe, Scenario  # noqa: E402
from netstrata.lab.clients import run_in_netns  # noqa: E402
from netstrata.lab.kernel_check import KernelCheck  # noqa: E402
from netstrata.lab.kernel_session import LabSession, probe_targets, server_specs  # noqa: E402
from netstrata.lab.netlab import plan_lab  # noqa: E402
from netstrata.lab.reference_check import ScenarioRunner, check_report  # noqa: E402
from netstrata.mesh.rotation import RotationPolicy  # noqa: E402

ISSUER = "https://auth.netstrata.test"
JWKS = (
    '{"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","use":"sig","kid":"netstrata-test-key-1",'
    '"x":"NOZAvUsyXh2fNw_Ucd5NziAagDeHsprNiIXHYhNne0o","y":"nv0-thZ2tvHtTDvWsItGncE37VHWpt4ELLImYKmVruA"}]}'
)
CASE = f"""
- name: lab-mesh
  summary: the mesh on real traffic
  mesh: {{trustDomain: cluster.local, peerAuthentication: STRICT}}
  jwt: {{issuer: "{ISSUER}"}}
  workloads:
  - {{name: server, namespace: shop, cluster: default, node: node-1, labels: {{app: server}},
     service_account: server, sidecar: istio,
     ports: [{{port: 8080, protocol: TCP, name: http, app_protocol: http}},
             {{port: 50051, protocol: TCP, name: grpc, app_protocol: grpc}}]}}
  - {{name: client, namespace: shop, cluster: default, node: node-1, labels: {{app: client}},
     service_account: client, sidecar: istio, ports: []}}
  - {{name: attacker, namespace: shop, cluster: default, node: node-1,
     labels: {{app: attacker}}, service_account: attacker, sidecar: istio, ports: []}}
  - {{name: legacy, namespace: shop, cluster: default, node: node-1, labels: {{app: legacy}},
     service_account: legacy, ports: []}}
  policies:
  - apiVersion: security.istio.io/v1
    kind: RequestAuthentication
    metadata: {{name: jwt-auth, namespace: shop}}
    spec:
      selector: {{matchLabels: {{app: server}}}}
      jwtRules: [{{issuer: "{ISSUER}", jwks: '{JWKS}'}}]
  - apiVersion: security.istio.io/v1
    kind: AuthorizationPolicy
    metadata: {{name: server-allow, namespace: shop}}
    spec:
      selector: {{matchLabels: {{app: server}}}}
      action: ALLOW
      rules:
      - from: [{{source: {{principals: [cluster.local/ns/shop/sa/client]}}}}]
        to: [{{operation: {{paths: ["/public/*", "/rotation.Probe/*"]}}}}]
      - to: [{{operation: {{methods: [POST], paths: [/api/v1/process]}}}}]
        when: [{{key: "request.auth.claims[scope]", values: [transactions]}}]
  probes:
  - {{id: client principal, from: client, to: server, protocol: http, port: 8080,
     http: {{method: GET, path: /public/a}},
     expect: {{verdict: allowed, mesh: {{decided_by: "ns[shop]-policy[server-allow]-rule[0]",
                                          peer_principal: cluster.local/ns/shop/sa/client}}}}}}
  - {{id: attacker principal, from: attacker, to: server, protocol: http, port: 8080,
     http: {{method: GET, path: /public/a}}, expect: {{verdict: denied-mesh, http: {{status: 403}}}}}}
  - {{id: plaintext under STRICT, from: legacy, to: server, protocol: http, port: 8080,
     http: {{method: GET, path: /public/a}}, expect: {{verdict: denied-mesh}}}}
  - {{id: valid JWT, from: attacker, to: server, protocol: http, port: 8080,
     http: {{method: POST, path: /api/v1/process,
            jwt: {{valid: true, claims: {{iss: "{ISSUER}", sub: a, scope: transactions}}}}}},
     expect: {{verdict: allowed, mesh: {{decided_by: "ns[shop]-policy[server-allow]-rule[1]"}}}}}}
  - {{id: expired JWT, from: attacker, to: server, protocol: http, port: 8080,
     http: {{method: POST, path: /api/v1/process,
            jwt: {{valid: false, invalid_reason: expired,
                  claims: {{iss: "{ISSUER}", sub: a, scope: transactions}}}}}},
     expect: {{verdict: denied-mesh, http: {{status: 401}}}}}}
  - {{id: no JWT, from: attacker, to: server, protocol: http, port: 8080,
     http: {{method: POST, path: /api/v1/process}}, expect: {{verdict: denied-mesh, http: {{status: 403}}}}}}
"""
EXPECTED = {
    "client principal": ("allowed", "ns[shop]-policy[server-allow]-rule[0]"),
    "attacker principal": ("denied-mesh", "none"),
    "plaintext under STRICT": ("denied-mesh", "mtls:strict"),
    "valid JWT": ("allowed", "ns[shop]-policy[server-allow]-rule[1]"),
    "expired JWT": ("denied-mesh", "request-authentication"),
    "no JWT": ("denied-mesh", "none"),
}
"""What the destination proxy decides for each probe (verdict, deciding rule)."""


def _scenario() -> Scenario:
    # placed beside the acceptance scenarios, so JWTs are minted with the suite's test key
    source = str(acceptance_dir() / "scenarios" / "cases.yaml")
    [raw] = yaml.safe_load(CASE)
    return cases._scenario(raw, source)


def test_mesh_probes_on_real_traffic_agree_with_the_reference(bpf_cache: None) -> None:
    kernel = asyncio.run(
        KernelCheck(f"msh{secrets.token_hex(2)}", lanes=1).run("scenarios", [_scenario()])
    )
    reference = check_report("scenarios", [_scenario()])
    [case] = kernel["cases"]
    assert case["status"] == "passed", json.dumps(case, indent=1, default=str)
    got = {p["id"]: (p["got"], p["rule"]) for p in case["probes"]}
    assert got == EXPECTED
    assert {p["layer"] for p in case["probes"]} == {"mesh"}
    for _, rp, kp in paired(reference, kernel):
        assert verdict(kp) == verdict(rp), (rp, kp)


ROTATION_CLIENT = """
import json, sys, time
import grpc
target, wait = sys.argv[1], float(sys.argv[2])
own = [("grpc.use_local_subchannel_pool", 1)]
first = grpc.insecure_channel(target, options=own).unary_unary("/rotation.Probe/Ping")
out = [first(b"\\x08\\x01", timeout=5).hex()]
time.sleep(wait)
out.append(first(b"\\x08\\x02", timeout=5).hex())
second = grpc.insecure_channel(target, options=own).unary_unary("/rotation.Probe/Ping")
out.append(second(b"\\x08\\x03", timeout=5).hex())
print(json.dumps(out))
"""
TTL_S = 2.0


def test_certificate_rotation_under_traffic(bpf_cache: None) -> None:
    asyncio.run(_rotation())


async def _rotation() -> None:
    sc = _scenario()
    runner = ScenarioRunner(sc)
    probes = [a for a in sc.actions if isinstance(a, Probe)]
    wanted, targets = probe_targets(runner, probes)
    session = await LabSession.open(plan_lab(f"msr{secrets.token_hex(2)}", sc.topology, targets))
    try:
        session.mesh_rotation = RotationPolicy(ttl_s=TTL_S, rotate_fraction=0.5)
        await session.serve(server_specs(session.plan, sc.topology, wanted), {})
        for action in sc.actions:
            if isinstance(action, Apply):
                runner.apply(action)
        await session.sync(runner.lab)
        [mesh] = session.meshes.values()
        assert mesh.tunnel is not None and mesh.certificates is not None
        server = runner._workload("server").ip
        result = await run_in_netns(
            session.plan.netns_of("client"),
            [sys.executable, "-c", ROTATION_CLIENT, f"{server}:50051", str(TTL_S * 1.5)],
            30.0,
        )
        rc, out = result
        assert rc == 0, result
        # all three calls answered (the app echoes the request)
        assert json.loads(out.strip().splitlines()[-1]) == ["0801", "0802", "0803"]
        stats = mesh.tunnel.statistics()
        # two tunnels: the first channel's survived its certificate's expiry, the second is new
        assert (stats.accepted, stats.refused_certificate) == (2, 0)
        assert mesh.certificates.statistics().rotated >= 1
    finally:
        await session.close()


def test_lab_up_runs_the_mesh_with_its_ca_in_the_lab_directory(
    bpf_cache: None, tmp_path: Path
) -> None:
    from netstrata.lab.clients import http_probe
    from netstrata.lab.control import lab_down, lab_up

    case_file = tmp_path / "cases.yaml"
    case_file.write_text(CASE)
    name = f"msu{secrets.token_hex(2)}"
    try:
        state = lab_up(case_file, name=name, case="lab-mesh")
        pods = {p.workload.rsplit("/", 1)[-1]: p for p in state.plan.pods}
        server = pods["server"].ip

        async def get(source: str) -> str:
            netns = state.plan.netns_of(pods[source].ref)
            # the agents start their mesh with their first sync: ask until one answers
            for _ in range(20):
                out = await http_probe(netns, server, 8080, path="/public/a")
                if out.got != "dropped":
                    return out.got
                await asyncio.sleep(0.5)
            return out.got

        assert asyncio.run(get("client")) == "allowed"
        assert asyncio.run(get("attacker")) == "denied-mesh"
        assert asyncio.run(get("legacy")) == "app-error"  # STRICT: closed without an answer
        assert (state.mesh_ca_dir / "cluster.local" / "ca-cert.pem").is_file()
    finally:
        lab_down(name)
