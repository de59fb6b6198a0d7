"""The istio-authz case format harness and `netstrata mesh check` on a small synthetic file."""

from __future__ import annotations

import json

import pytest
import yaml
from cryptography.hazmat.primitives import serialization
from meshtestkit import Keys

from netstrata.cli.main import main
from netstrata.mesh import jwt as mjwt
from netstrata.mesh.casefile import (
    DEFAULT_NOW,
    check_report,
    istio_sni,
    load_cases,
    run_case,
    same_decider,
)

ISSUER = "https://issuer.test"


def _pem(key) -> str:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()).decode()


def _policy(kind: str, name: str, spec: dict, namespace: str = "foo") -> dict:
    return {"apiVersion": "security.istio.io/v1", "kind": kind,
            "metadata": {"name": name, "namespace": namespace}, "spec": spec}


def _case(cid: str, policies: list, request: dict, expect: dict, **extra) -> dict:
    req = {"protocol": "http", "peer": {"mtls": True, "principal": "cluster.local/ns/foo/sa/a"},
           "source_ip": "10.0.0.1", "destination_port": 8000, "method": "GET",
           "host": "web:8000", "path": "/", **request}
    return {"id": cid, "title": cid, "workload": {"name": "web", "namespace": "foo",
            "labels": {"app": "web"}, "ports": [{"port": 8000, "protocol": "http"}]},
            "policies": policies, "request": req, "expect": expect, **extra}


@pytest.fixture()
def case_file(tmp_path):
    keys = Keys(kid="test-key")
    ra = _policy("RequestAuthentication", "jwt", {"jwtRules": [
        {"issuer": ISSUER, "jwks": keys.jwks, "fromParams": ["tok"]}]})
    need_scope = _policy("AuthorizationPolicy", "scope", {"rules": [{"when": [
        {"key": "request.auth.claims[scope]", "values": ["read"]}]}]})
    cases = [
        _case("C1", [], {}, {"outcome": "allow", "decided_by": "no-policies"}),
        _case("C2", [ra, need_scope], {"jwt": {"valid": True, "location": {"param": "tok"},
                                               "claims": {"iss": ISSUER, "scope": "a read"}}},
              {"outcome": "allow", "decided_by": "ns[foo]-policy[scope]-rule[0]"}),
        _case("C3", [ra, need_scope], {"jwt": {"valid": False, "invalid_reason": "bad-signature",
                                               "location": {"param": "tok"},
                                               "claims": {"iss": ISSUER}}},
              {"outcome": "deny-401", "decided_by": "request-authentication"}),
        _case("C4", [ra], {"jwt": {"valid": False, "invalid_reason": "expired",
                                   "location": "query:tok", "claims": {"iss": ISSUER}}},
              {"outcome": "deny-401"}),
        _case("C5", [_policy("AuthorizationPolicy", "bad", {"action": "DENY"})], {},
              {"outcome": "allow", "decided_by": "no-policies"}),
        _case("C6", [], {"peer": {"mtls": False}}, {"outcome": "tcp-reset",
                                                   "decided_by": "mtls:strict"},
              mesh={"peerAuthentication": "STRICT"}),
    ]
    doc = {"schema": "netstrata/istio-authz-cases/v1",
           "defaults": {"mesh": {"rootNamespace": "istio-system", "trustDomain": "cluster.local",
                                 "peerAuthentication": "none (PERMISSIVE)"},
                        "jwt": {"alg": "ES256", "kid": "test-key", "iat_offset_s": -60,
                                "exp_offset_s": 3600}},
           "fixtures": {"jwt": {"issuer": ISSUER, "jwks": keys.jwks, "keys": {
               "test-key": {"private_key_pem": _pem(keys.private)},
               "netstrata-rogue-key": {"private_key_pem": _pem(keys.rogue)}}}},
           "cases": cases}
    path = tmp_path / "cases.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_cases_load_with_tokens_placed_where_the_case_says(case_file):
    cases = {c.id: c for c in load_cases(case_file)}
    c2 = cases["C2"].request
    assert "?tok=" in c2.path and not c2.headers
    token = c2.path.split("tok=", 1)[1]
    payload = mjwt.parse_jwt(token).payload
    assert payload["exp"] == int(DEFAULT_NOW) + 3600 and payload["iat"] == int(DEFAULT_NOW) - 60
    assert cases["C5"].rejected and "rules with action DENY" in cases["C5"].rejected[0]
    assert cases["C5"].rejected[0].startswith(f"{case_file}:")


def test_every_synthetic_case_passes(case_file):
    report = check_report(load_cases(case_file))
    assert report["summary"] == {"passed": 6, "failed": 0, "skipped": 0, "probes": 6}, report


def test_an_expired_token_is_expired_at_evaluation_time(case_file):
    c4 = {c.id: c for c in load_cases(case_file)}["C4"]
    d = run_case(c4)
    assert d.body == mjwt.MSG_EXPIRED


def test_cli_json_and_exit_status(case_file, capsys, tmp_path):
    assert main(["mesh", "check", str(case_file), "-o", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["suite"] == "istio-authz" and report["mode"] == "reference"
    probe = report["cases"][1]["probes"][0]
    assert (probe["got"], probe["rule"], probe["layer"], probe["protocol"]) == (
        "allow", "ns[foo]-policy[scope]-rule[0]", "mesh", "HTTP")
    broken = yaml.safe_load(case_file.read_text())
    broken["cases"][0]["expect"]["outcome"] = "deny-403"
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump(broken, sort_keys=False))
    assert main(["mesh", "check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "C1" in out and "1 failed" in out


def test_cli_filters_cases_and_explains(case_file, capsys):
    assert main(["mesh", "check", str(case_file), "--case", "C6", "-v"]) == 0
    out = capsys.readouterr().out
    assert "C6" in out and "STRICT" in out and "C1" not in out


def test_a_file_that_is_not_a_case_file(tmp_path, capsys):
    path = tmp_path / "x.yaml"
    path.write_text("just: a mapping\n")
    assert main(["mesh", "check", str(path)]) == 2
    assert "not an istio-authz case file" in capsys.readouterr().err


def test_decider_equality_is_exact_except_for_the_mtls_reason_wording():
    assert same_decider("ns[a]-policy[b]-rule[0]", "ns[a]-policy[b]-rule[0]")
    assert not same_decider("ns[a]-policy[b]-rule[0]", "ns[a]-policy[b]-rule[1]")
    assert same_decider("mtls:plaintext-rejected", "mtls:strict")
    assert same_decider("mtls:untrusted-trust-domain", "mtls:trust-domain-mismatch")
    assert not same_decider("mtls:strict", "mtls:untrusted-trust-domain")
    assert not same_decider("bypass:excludeInboundPorts", "bypass:includeInboundPorts")


def test_istio_sni_needs_the_service_fqdn():
    assert istio_sni("web.foo.svc.cluster.local:8000", 9) == (
        "outbound_.8000_._.web.foo.svc.cluster.local")
    assert istio_sni("web.foo.svc.cluster.local", 80) == "outbound_.80_._.web.foo.svc.cluster.local"
    assert istio_sni("web:8000", 8000) is None


def test_ext_authz_stub_answers(case_file, tmp_path):
    doc = yaml.safe_load(case_file.read_text())
    custom = _policy("AuthorizationPolicy", "ext", {"action": "CUSTOM", "provider": {"name": "x"},
                                                    "rules": [{}]})
    mesh = {"extensionProviders": [{"name": "x", "envoyExtAuthzHttp": {"service": "s",
                                                                       "port": 1}}]}
    doc["cases"] = [
        _case(f"E-{answer}", [custom], {}, {"outcome": outcome}, mesh=mesh,
              environment={"ext_authz": {"x": {"decision": answer, "status": 401}}})
        for answer, outcome in (("allow", "allow"), ("deny", "deny-401"),
                                ("unreachable", "deny-403"))]
    path = tmp_path / "ext.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    report = check_report(load_cases(path))
    assert report["summary"]["passed"] == 3, report
