"""Which workloads are meshed: Istio's injection and ambient labels, and the opt-outs."""

from __future__ import annotations

import pytest

from netstrata.mesh.enrollment import enrollment, spiffe_id_for

ENABLED = {"istio-injection": "enabled"}
AMBIENT = {"istio.io/dataplane-mode": "ambient"}
INJECT_FALSE = {"sidecar.istio.io/inject": "false"}


@pytest.mark.parametrize(
    "ns,labels,annotations,mode",
    [
        (ENABLED, {}, {}, "sidecar"),
        (ENABLED, INJECT_FALSE, {}, "none"),
        (ENABLED, {}, INJECT_FALSE, "none"),  # legacy annotation opt-out
        ({"istio.io/rev": "canary"}, {}, {}, "sidecar"),
        ({}, {"sidecar.istio.io/inject": "true"}, {}, "sidecar"),
        ({"istio-injection": "disabled"}, {"sidecar.istio.io/inject": "true"}, {}, "none"),
        ({}, {}, {}, "none"),
        (AMBIENT, {}, {}, "ambient"),
        (AMBIENT, {"istio.io/dataplane-mode": "none"}, {}, "none"),
        ({}, AMBIENT, {}, "ambient"),
        (AMBIENT, INJECT_FALSE, {}, "ambient"),  # a sidecar opt-out says nothing about ambient
        ({**AMBIENT, **ENABLED}, {}, {}, "sidecar"),  # a sidecar pod is not captured twice
    ],
)
def test_enrollment(ns, labels, annotations, mode) -> None:
    got = enrollment(ns, labels, annotations)
    assert got.mode == mode, got.reason
    assert got.meshed == (mode != "none")


def test_host_network_is_never_meshed() -> None:
    assert enrollment(ENABLED, {}, {}, host_network=True).reason == "host network"


def test_identity_defaults_to_the_default_service_account() -> None:
    assert spiffe_id_for("cluster.local", "foo").uri == "spiffe://cluster.local/ns/foo/sa/default"
    assert spiffe_id_for("td", "foo", "web").principal == "td/ns/foo/sa/web"
