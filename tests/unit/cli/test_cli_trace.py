"""`netstrata policy trace` across the three strata, on examples/mesh as a user runs it.

Each test makes a different layer decide the same kind of request (orders:8080 GET/POST /api/...)
and checks that the trace names that layer, its deciding rule and the final outcome. The CLI is
called in-process (`main(argv)`) to keep the file fast; tokens are real ES256 JWTs.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import jwt as pyjwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec

from netstrata.cli.main import main

MESH = Path(__file__).resolve().parents[3] / "examples" / "mesh"
ISSUER = "https://auth.shop.example"


def trace(capsys, *args: str, manifests: Path = MESH, json_out: bool = True):
    argv = ["policy", "trace", "--manifests", str(manifests), *args]
    rc = main([*argv, "-o", "json"] if json_out else argv)
    out = capsys.readouterr().out
    return rc, (json.loads(out) if json_out else out)


def api(method: str, path: str = "/api/orders", port: str = "8080/TCP") -> list[str]:
    return ["--to", "shop/orders", "--port", port, "--http-method", method, "--http-path", path]


def test_l3l4_drop_decides_and_later_layers_are_not_reached(capsys):
    rc, r = trace(capsys, "--from", "shop/cart", *api("GET"))
    assert rc == 1 and r["verdict"] == "dropped" and r["direction"] == "ingress"
    ingress = r["l3l4"]["ingress"]
    assert ingress["verdict"] == "dropped" and ingress["drop_reason"] == "POLICY_DENIED"
    assert ingress["rule"] is None and ingress["enforced"] is True
    assert r["l3l4"]["egress"]["verdict"] == "not-enforced"
    assert r["l7"]["verdict"] == "not-reached" and r["mesh"]["verdict"] == "not-reached"


def test_l7_deny_decides_with_its_rule(capsys):
    rc, r = trace(capsys, "--from", "shop/frontend", *api("DELETE"))
    assert rc == 1 and r["verdict"] == "denied-l7" and r["layer"] == "l7"
    assert "Redirect to proxy port" in r["l3l4"]["ingress"]["entry"]
    assert r["l7"]["verdict"] == "denied" and r["l7"]["rule"] is None  # no L7 rule matched
    assert r["rule"] == "CiliumNetworkPolicy shop/orders-ingress ingress[0]"
    assert r["mesh"]["verdict"] == "not-reached"


def test_mesh_denies_by_principal(capsys):
    rc, r = trace(capsys, "--from", "shop/reports", *api("GET"))
    assert rc == 1 and r["verdict"] == "denied-mesh" and r["layer"] == "mesh"
    assert r["l3l4"]["verdict"] == "allowed" and r["l7"]["verdict"] == "allowed"
    m = r["mesh"]
    assert m["source"]["principal"] == "cluster.local/ns/shop/sa/reports"
    assert m["source"]["enrollment"] == "namespace istio-injection=enabled"
    assert m["peer_principal"] == "cluster.local/ns/shop/sa/reports"
    assert m["peer_authentication"] == {"mode": "PERMISSIVE", "source": "default"}
    assert m["decision"]["decided_by"] == "none" and m["decision"]["status"] == 403
    assert any("principals does not match" in e for e in m["decision"]["explanation"])
    # the same request from frontend's principal passes the same rule set
    rc, ok = trace(capsys, "--from", "shop/frontend", *api("GET"))
    assert (
        rc == 0 and ok["mesh"]["decision"]["decided_by"] == "ns[shop]-policy[orders-allow]-rule[1]"
    )


def test_plaintext_source_outside_the_mesh_has_no_principal(capsys):
    rc, r = trace(capsys, "--from", "legacy/batch", *api("GET"))
    assert rc == 1 and r["verdict"] == "denied-mesh"
    assert r["mesh"]["source"]["mode"] == "none" and r["mesh"]["source"]["principal"] is None
    assert r["mesh"]["peer_principal"] is None


@pytest.mark.parametrize(
    "scope,verdict,decided_by",
    [
        ("reports", "denied-mesh", "none"),
        ("orders", "allowed", "ns[shop]-policy[orders-allow]-rule[0]"),
    ],
)
def test_mesh_decides_by_jwt_claim(capsys, scope, verdict, decided_by):
    rc, r = trace(
        capsys,
        "--from",
        "shop/frontend",
        *api("POST"),
        "--request-principal",
        f"{ISSUER}/alice",
        "--jwt-claim",
        f"scope={scope}",
    )
    assert r["verdict"] == verdict and r["mesh"]["decision"]["decided_by"] == decided_by
    assert rc == (0 if verdict == "allowed" else 1)
    assert any("JWT from issuer" in e for e in r["mesh"]["decision"]["explanation"])


def _with_own_key(tmp_path: Path) -> tuple[Path, ec.EllipticCurvePrivateKey]:
    """examples/mesh with the RequestAuthentication's JWKS replaced by a key made here."""
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(pyjwt.algorithms.ECAlgorithm.to_jwk(key.public_key()))
    jwk.update({"kid": "shop-example-key", "alg": "ES256", "use": "sig"})
    d = tmp_path / "mesh"
    shutil.copytree(MESH, d)
    pol = d / "policies.yaml"
    text = pol.read_text()
    start = text.index("jwks: '") + len("jwks: '")
    pol.write_text(text[:start] + json.dumps({"keys": [jwk]}) + text[text.index("'", start) :])
    return d, key


def _token(key, **claims) -> str:
    now = int(time.time())
    body = {"iss": ISSUER, "sub": "alice", "iat": now - 60, "exp": now + 600, **claims}
    return pyjwt.encode(body, key, algorithm="ES256", headers={"kid": "shop-example-key"})


def test_a_real_token_is_verified_against_the_jwks(capsys, tmp_path):
    manifests, key = _with_own_key(tmp_path)
    good = _token(key, scope="orders")
    rc, r = trace(
        capsys, "--from", "shop/frontend", *api("POST"), "--jwt", good, manifests=manifests
    )
    assert (
        rc == 0 and r["mesh"]["decision"]["decided_by"] == "ns[shop]-policy[orders-allow]-rule[0]"
    )
    assert good not in json.dumps(r), "tokens are never printed"
    expired = _token(key, scope="orders", exp=int(time.time()) - 3600)
    rc, r = trace(
        capsys, "--from", "shop/frontend", *api("POST"), "--jwt", expired, manifests=manifests
    )
    assert rc == 1 and r["verdict"] == "denied-mesh"
    assert r["mesh"]["decision"]["decided_by"] == "request-authentication"
    assert r["mesh"]["decision"]["status"] == 401


def test_bypassed_port_skips_the_mesh_but_not_the_kernel(capsys):
    rc, r = trace(capsys, "--from", "shop/reports", *api("GET", "/metrics", "9090/TCP"))
    assert rc == 0 and r["verdict"] == "allowed" and r["layer"] == "l3l4"
    m = r["mesh"]
    assert m["destination"]["inbound_path"] == {"meshed": False, "reason": "excludeInboundPorts"}
    assert (
        m["decision"]["decided_by"] == "bypass:excludeInboundPorts" and m["peer_principal"] is None
    )
    assert r["l3l4"]["ingress"]["rule"] == "CiliumNetworkPolicy shop/orders-ingress ingress[1]"
    rc, dropped = trace(capsys, "--from", "legacy/batch", *api("GET", "/metrics", "9090/TCP"))
    assert rc == 1 and dropped["verdict"] == "dropped"  # only namespace shop may reach 9090


def test_audit_rule_marks_an_allowed_request(capsys):
    rc, r = trace(capsys, "--from", "shop/frontend", *api("GET"))
    assert rc == 0 and r["verdict"] == "audited"
    assert r["mesh"]["verdict"] == "audited"
    assert r["mesh"]["decision"]["audited_by"] == "ns[shop]-policy[orders-audit-reads]-rule[0]"


def test_json_shape(capsys):
    _, r = trace(capsys, "--from", "shop/frontend", *api("GET"))
    assert set(r) >= {
        "from",
        "to",
        "destination_ip",
        "port",
        "protocol",
        "request",
        "l3l4",
        "l7",
        "mesh",
        "verdict",
        "layer",
        "rule",
        "direction",
        "drop_reason",
    }
    assert (r["port"], r["protocol"]) == (8080, "TCP")
    assert set(r["l3l4"]) == {"verdict", "egress", "ingress"}
    assert set(r["l3l4"]["ingress"]) >= {
        "endpoint",
        "identity",
        "enforced",
        "verdict",
        "entry",
        "rule",
    }
    assert set(r["mesh"]) >= {
        "verdict",
        "reason",
        "source",
        "destination",
        "peer_authentication",
        "peer_principal",
        "decision",
    }
    assert set(r["mesh"]["decision"]) >= {
        "outcome",
        "decided_by",
        "audited_by",
        "status",
        "explanation",
    }


def test_text_form_names_each_layer_and_hides_tokens(capsys):
    rc, text = trace(
        capsys,
        "--from",
        "shop/frontend",
        *api("POST"),
        "--request-principal",
        f"{ISSUER}/alice",
        "--jwt-claim",
        "scope=orders",
        json_out=False,
    )
    assert rc == 0
    for heading in (
        "1. Kernel L3/L4 (allowed)",
        "2. Cilium L7 proxy (allowed)",
        "3. Mesh (allowed)",
    ):
        assert heading in text
    assert "SPIFFE principal cluster.local/ns/shop/sa/frontend" in text
    assert "Verdict: allowed; layer mesh, rule ns[shop]-policy[orders-allow]-rule[0]" in text
    assert "eyJ" not in text  # no JWT (base64url JSON header) in the output


def test_bad_mesh_flags_are_clear_errors(capsys):
    assert (
        main(
            [
                "policy",
                "trace",
                "--manifests",
                str(MESH),
                "--from",
                "shop/frontend",
                *api("GET"),
                "--jwt-claim",
                "scope=orders",
            ]
        )
        == 2
    )
    assert "--jwt-claim needs --request-principal" in capsys.readouterr().err
    assert (
        main(
            [
                "policy",
                "trace",
                "--manifests",
                str(MESH),
                "--from",
                "shop/frontend",
                *api("GET"),
                "--request-principal",
                "alice",
            ]
        )
        == 2
    )
    assert "ISSUER/SUBJECT" in capsys.readouterr().err
