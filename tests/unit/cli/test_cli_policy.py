"""The policy, identity and endpoint commands on the example manifests, as a user runs them."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "starwars"


def netstrata(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "netstrata.cli.main", *args], capture_output=True,
                          text=True, input=stdin, timeout=120)


def test_trace_explains_an_l7_denial():
    p = netstrata("policy", "trace", "--manifests", str(EXAMPLE), "--from", "default/tiefighter",
                  "--to", "default/deathstar", "--port", "80/TCP", "--http-method", "PUT",
                  "--http-path", "/v1/exhaust-port")
    assert p.returncode == 1
    assert "CiliumNetworkPolicy default/rule1 ingress[0]" in p.stdout
    assert "Verdict: denied-l7 at ingress" in p.stdout


def test_trace_allowed_request_exit_zero():
    p = netstrata("policy", "trace", "--manifests", str(EXAMPLE), "--from", "default/tiefighter",
                  "--to", "default/deathstar", "--port", "80/TCP", "--http-method", "POST",
                  "--http-path", "/v1/request-landing")
    assert p.returncode == 0, p.stdout + p.stderr
    assert "Verdict: allowed" in p.stdout


def test_trace_l3_drop_names_reason():
    p = netstrata("policy", "trace", "--manifests", str(EXAMPLE), "--from", "default/xwing",
                  "--to", "default/deathstar", "--port", "80/TCP")
    assert p.returncode == 1
    assert "dropped at ingress (POLICY_DENIED)" in p.stdout


def test_policy_get_shows_redirect_for_empire_identities():
    p = netstrata("policy", "get", "--manifests", str(EXAMPLE), "--endpoint", "default/deathstar")
    assert p.returncode == 0
    rows = [line.split() for line in p.stdout.splitlines()[2:]]
    redirects = [r for r in rows if "Redirect" in r]
    assert len(redirects) == 2, p.stdout  # deathstar and tiefighter carry org=empire
    assert any(r[:2] == ["Ingress", "1"] for r in rows), "allow-localhost entry"


def test_identity_and_endpoint_lists_json():
    ids = json.loads(netstrata("identity", "list", "--manifests", str(EXAMPLE), "-o", "json").stdout)
    assert {"id": 2, "labels": ["reserved:world"]} in ids
    pods = [i for i in ids if i["id"] >= 256]
    assert len(pods) == 3
    eps = json.loads(netstrata("endpoint", "list", "--manifests", str(EXAMPLE), "-o", "json").stdout)
    by = {e["endpoint"]: e for e in eps}
    assert by["default/deathstar"]["ingress"] == "enforced"
    assert by["default/xwing"]["ingress"] == "disabled"


def test_bad_manifest_is_reported_with_location_and_no_traceback(tmp_path):
    shutil.copytree(EXAMPLE, tmp_path / "m")
    bad = tmp_path / "m" / "policy.yaml"
    bad.write_text(bad.read_text().replace('port: "80"', 'port: "70000"'))
    p = netstrata("policy", "get", "--manifests", str(tmp_path / "m"), "--endpoint", "default/deathstar")
    assert p.returncode == 2
    assert "Traceback" not in p.stderr
    assert "policy.yaml:" in p.stderr and "spec.ingress[0].toPorts[0].ports[0].port" in p.stderr
    assert "70000" in p.stderr


def test_stdin_manifests():
    text = (EXAMPLE / "workloads.yaml").read_text() + "\n---\n" + (EXAMPLE / "policy.yaml").read_text()
    p = netstrata("policy", "get", "--manifests", "-", "--endpoint", "default/deathstar", stdin=text)
    assert p.returncode == 0 and "Redirect" in p.stdout


def test_unknown_workload_is_a_clear_error():
    p = netstrata("policy", "trace", "--manifests", str(EXAMPLE), "--from", "default/nobody",
                  "--to", "default/deathstar", "--port", "80/TCP")
    assert p.returncode == 2 and "no workload 'default/nobody'" in p.stderr


def test_audit_mode_and_enforcement_flags():
    base = ["policy", "trace", "--manifests", str(EXAMPLE), "--from", "default/xwing", "--port", "80/TCP"]
    audited = netstrata(*base, "--to", "default/deathstar", "--policy-audit-mode")
    assert audited.returncode == 0 and "Verdict: audited" in audited.stdout
    always = netstrata(*base, "--to", "default/tiefighter", "--enable-policy", "always")
    assert always.returncode == 1 and "dropped at egress (POLICY_DENIED)" in always.stdout
    never = netstrata(*base, "--to", "default/deathstar", "--enable-policy", "never")
    assert never.returncode == 0 and "Verdict: allowed" in never.stdout
