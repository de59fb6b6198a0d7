"""`netstrata lab check` on the upstream Kubernetes NetworkPolicy truth tables: real TCP and
UDP between nine pod namespaces through the kernel datapath, SCTP as crafted packets through
the same live programs (this kernel has no SCTP sockets).

Every case must pass, and every probe between two different pods must get the verdict the
reference run (`policy check`) gets. Pod-to-itself probes are informational upstream (traffic
to one's own address never leaves the pod, so no policy sees it) and are not compared.
"""

from __future__ import annotations

import json

import pytest

pytest.importorskip("pyroute2", reason="pyroute2 is needed for namespaces and tc")

from labkit import acceptance_dir, paired, verdict  # noqa: E402

from netstrata.lab.cases import load_case_file  # noqa: E402
from netstrata.lab.kernel_check import kernel_check_report  # noqa: E402
from netstrata.lab.reference_check import check_report  # noqa: E402


@pytest.fixture(scope="module")
def reports(bpf_cache: None):  # type: ignore[no-untyped-def]
    suite, scenarios = load_case_file(acceptance_dir() / "k8s-netpol" / "cases.yaml")
    kernel = kernel_check_report(suite, scenarios)
    suite, scenarios = load_case_file(acceptance_dir() / "k8s-netpol" / "cases.yaml")
    return check_report(suite, scenarios), kernel


def test_every_case_passes_on_real_traffic(reports) -> None:  # type: ignore[no-untyped-def]
    _, kernel = reports
    assert kernel["mode"] == "kernel" and kernel["suite"] == "k8s-netpol"
    bad = [(c["id"], c["reason"], [p for p in c["probes"] if p["status"] == "failed"][:3])
           for c in kernel["cases"] if c["status"] != "passed"]
    assert not bad, json.dumps(bad, indent=1, default=str)[:4000]
    assert kernel["summary"]["failed"] == 0


def test_kernel_agrees_with_the_reference_on_every_pod_pair(reports) -> None:  # type: ignore[no-untyped-def]
    reference, kernel = reports
    compared = 0
    for case, rp, kp in paired(reference, kernel):
        if rp["from"] == rp["to"]:
            continue
        assert kp["status"] == "passed", (case, kp)
        assert verdict(kp) == verdict(rp), (case, rp, kp)
        compared += 1
    assert compared > 3000


def test_drops_are_explained_by_kernel_events(reports) -> None:  # type: ignore[no-untyped-def]
    """A dropped probe names the side and the reason the kernel's own drop event gave."""
    _, kernel = reports
    drops = [p for c in kernel["cases"] for p in c["probes"]
             if p["got"] == "dropped" and p["from"] != p["to"]]
    assert drops
    assert {p["direction"] for p in drops} <= {"ingress", "egress"}
    assert all(p["drop_reason"] in ("POLICY_DENIED", "POLICY_DENY") for p in drops)


def test_only_sctp_loopback_is_skipped(reports) -> None:  # type: ignore[no-untyped-def]
    _, kernel = reports
    skipped = [p for c in kernel["cases"] for p in c["probes"] if p["status"] == "skipped"]
    assert all(p["protocol"] == "SCTP" and p["from"] == p["to"] and p["reason"] for p in skipped)
