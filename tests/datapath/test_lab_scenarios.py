"""`netstrata lab check` on the scenarios suite: every probe the lab can send (no IPv6) is sent
as real traffic (curl, ping, dig, grpcio, aiokafka and socket clients) through a namespace lab
with one agent per node, multi-node and multi-cluster included, through the node proxies and,
on meshed paths, the mesh listeners (mTLS tunnel, AuthorizationPolicy, real JWTs), and must
agree with the reference run: verdict, and for a drop the side and the reason.

The rest must be reported `skipped` with the reason, never passed.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("pyroute2", reason="pyroute2 is needed for namespaces and tc")

from labkit import acceptance_dir, paired, verdict  # noqa: E402

from netstrata.lab.cases import load_case_file  # noqa: E402
from netstrata.lab.kernel_check import kernel_check_report  # noqa: E402
from netstrata.lab.reference_check import check_report  # noqa: E402

SKIP_WORDS = ("L7 proxy", "DNS proxy", "JWT signing keys", "fixtures.jwt", "IPv4-only",
              "ICMP echo")


@pytest.fixture(scope="module")
def reports(bpf_cache: None):  # type: ignore[no-untyped-def]
    suite, scenarios = load_case_file(acceptance_dir() / "scenarios" / "cases.yaml")
    kernel = kernel_check_report(suite, scenarios)
    suite, scenarios = load_case_file(acceptance_dir() / "scenarios" / "cases.yaml")
    return check_report(suite, scenarios), kernel


def test_no_case_fails(reports) -> None:  # type: ignore[no-untyped-def]
    _, kernel = reports
    failed = [(c["id"], c["reason"], [(p["id"], p["expect"], p["got"], p["reason"])
                                      for p in c["probes"] if p["status"] == "failed"])
              for c in kernel["cases"] if c["status"] == "failed"]
    assert not failed, json.dumps(failed, indent=1, default=str)[:4000]


def test_every_probe_without_proxy_agrees_with_the_reference(reports) -> None:  # type: ignore[no-untyped-def]
    reference, kernel = reports
    judged = set()
    for case, rp, kp in paired(reference, kernel):
        if kp["status"] == "skipped":
            continue
        assert verdict(kp) == verdict(rp), (case, rp["id"], rp, kp)
        judged.add(kp["got"])
    assert {"allowed", "dropped", "audited", "app-error", "denied-l7", "denied-mesh"} <= judged


def test_multi_node_and_multi_cluster_probes_ran(reports) -> None:  # type: ignore[no-untyped-def]
    _, kernel = reports
    ran = {c["id"] for c in kernel["cases"] for p in c["probes"] if p["status"] != "skipped"}
    assert {"cli-no-policies", "docs-entity-host", "seed-d-frontend-billing-global-service"} <= ran


def test_what_cannot_run_is_skipped_with_its_reason(reports) -> None:  # type: ignore[no-untyped-def]
    reference, kernel = reports
    for case, rp, kp in paired(reference, kernel):
        if kp["status"] != "skipped":
            continue
        assert kp["got"] is None and kp["reason"], (case, kp)
        assert any(w in kp["reason"] for w in SKIP_WORDS), (case, kp["reason"])
        if rp["expect"] == "denied-l7":
            assert "proxy" in kp["reason"]
