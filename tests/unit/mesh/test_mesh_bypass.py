"""Sidecar-bypass annotations decide whether a connection takes the mesh path."""

from __future__ import annotations

import pytest

from netstrata.mesh.bypass import takes_mesh_path

P = "traffic.sidecar.istio.io/"


@pytest.mark.parametrize(
    "annotations,port,meshed,reason",
    [
        ({}, 8080, True, "captured"),
        ({P + "excludeInboundPorts": "9090, 9091"}, 9090, False, "excludeInboundPorts"),
        ({P + "excludeInboundPorts": "9090"}, 8080, True, "captured"),
        ({P + "includeInboundPorts": "8080"}, 9090, False, "includeInboundPorts"),
        ({P + "includeInboundPorts": "8080"}, 8080, True, "captured"),
        ({P + "includeInboundPorts": "*"}, 9090, True, "captured"),
        ({P + "includeInboundPorts": ""}, 8080, False, "includeInboundPorts"),
        ({}, 15090, False, "proxy-port"),
    ],
)
def test_inbound(annotations, port, meshed, reason) -> None:
    got = takes_mesh_path("inbound", annotations, port)
    assert (got.meshed, got.reason) == (meshed, reason)


@pytest.mark.parametrize(
    "annotations,port,ip,meshed,reason",
    [
        ({}, 443, "10.0.0.1", True, "captured"),
        ({P + "excludeOutboundPorts": "443"}, 443, "10.0.0.1", False, "excludeOutboundPorts"),
        (
            {P + "excludeOutboundIPRanges": "10.0.0.0/8"},
            80,
            "10.2.3.4",
            False,
            "excludeOutboundIPRanges",
        ),
        ({P + "excludeOutboundIPRanges": "10.0.0.0/8"}, 80, "192.168.1.1", True, "captured"),
        # an included port wins over an excluded IP range (istio-iptables rule order)
        (
            {P + "excludeOutboundIPRanges": "10.0.0.0/8", P + "includeOutboundPorts": "80"},
            80,
            "10.2.3.4",
            True,
            "captured",
        ),
        ({P + "excludeInboundPorts": "80"}, 80, "10.0.0.1", True, "captured"),  # inbound only
    ],
)
def test_outbound(annotations, port, ip, meshed, reason) -> None:
    got = takes_mesh_path("outbound", annotations, port, ip)
    assert (got.meshed, got.reason) == (meshed, reason)


@pytest.mark.parametrize(
    "annotation,value,found",
    [
        ("excludeInboundPorts", "80,http", "'http'"),
        ("excludeOutboundPorts", "70000", "'70000'"),
        ("excludeOutboundIPRanges", "10.0.0.0/33", "'10.0.0.0/33'"),
    ],
)
def test_malformed_annotation_is_an_error(annotation, value, found) -> None:
    with pytest.raises(ValueError, match=f"{annotation}: expected .*found {found}"):
        takes_mesh_path("inbound", {P + annotation: value}, 80)
