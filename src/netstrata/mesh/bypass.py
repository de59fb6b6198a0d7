"""Sidecar-bypass annotations: does a connection take the mesh path (node proxy, mTLS,
PeerAuthentication, RequestAuthentication, AuthorizationPolicy) or go around it?

Pod annotations, as Istio's `istio-iptables` reads them (reference istio-authz-semantics §15):

- inbound, on the destination pod: `includeInboundPorts` (default `*`; empty captures nothing),
  then `excludeInboundPorts`. The proxy's own ports (15020, 15021, 15090) are never captured.
- outbound, on the source pod: `excludeOutboundPorts`, then `includeOutboundPorts`, then
  `excludeOutboundIPRanges`, then `includeOutboundIPRanges` (default `*`).

A bypassed connection still crosses the kernel datapath: the eBPF L3/L4 policy applies to it
exactly as to a meshed one (the seeds' Prometheus-scrape pattern relies on this). Only the
mesh layer steps aside.

Unlike the evaluator's lenient reading (`mesh.selection`, which mirrors what istio-iptables
does with junk), `check_capture_annotations` rejects malformed values, because the sidecar
injector refuses such a pod; the adapter reports the error with the workload's name and keeps
the connection on the mesh path (fail closed). Pure.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final, Literal

from netstrata.mesh.selection import ANNOTATION_PREFIX, inbound_bypass, outbound_bypass
from netstrata.mesh.types import ClientCapture, Workload

PROXY_PORTS: Final = frozenset({15020, 15021, 15090})
"""Istio's agent, health and Prometheus ports: `istio-iptables` never redirects them inbound."""
_PORT_ANNOTATIONS: Final = (
    "includeInboundPorts",
    "excludeInboundPorts",
    "includeOutboundPorts",
    "excludeOutboundPorts",
)
_RANGE_ANNOTATIONS: Final = ("includeOutboundIPRanges", "excludeOutboundIPRanges")
Direction = Literal["inbound", "outbound"]


@dataclass(frozen=True, slots=True)
class PathDecision:
    """Whether one connection takes the mesh path."""

    meshed: bool
    reason: str
    """`captured`, `proxy-port`, or the annotation that took it out of the mesh."""


CAPTURED: Final = PathDecision(True, "captured")


def _check_ports(name: str, value: str) -> None:
    for part in (p.strip() for p in value.split(",")):
        if part in ("", "*"):
            continue
        if not part.isdigit() or not 0 < int(part) < 65536:
            raise ValueError(
                f"annotation {ANNOTATION_PREFIX}{name}: expected a comma-separated "
                f"list of ports 1-65535 or '*', found {part!r}"
            )


def _check_ranges(name: str, value: str) -> None:
    for part in (p.strip() for p in value.split(",")):
        if part in ("", "*"):
            continue
        try:
            ipaddress.ip_network(part, strict=False)
        except ValueError:
            raise ValueError(
                f"annotation {ANNOTATION_PREFIX}{name}: expected a comma-separated "
                f"list of CIDRs or '*', found {part!r}"
            ) from None


def check_capture_annotations(annotations: Mapping[str, str]) -> None:
    """Raise ValueError naming the first malformed capture annotation."""
    for name in _PORT_ANNOTATIONS:
        value = annotations.get(ANNOTATION_PREFIX + name)
        if value is not None:
            _check_ports(name, value)
    for name in _RANGE_ANNOTATIONS:
        value = annotations.get(ANNOTATION_PREFIX + name)
        if value is not None:
            _check_ranges(name, value)


def inbound_path(annotations: Mapping[str, str], port: int) -> PathDecision:
    """Whether a connection to `port` of the pod carrying `annotations` reaches its proxy."""
    check_capture_annotations(annotations)
    if port in PROXY_PORTS:
        return PathDecision(False, "proxy-port")
    reason = inbound_bypass(Workload(name="", namespace="", annotations=annotations), port)
    return CAPTURED if reason is None else PathDecision(False, reason)


def outbound_path(annotations: Mapping[str, str], port: int, destination_ip: str) -> PathDecision:
    """Whether the source pod's connection to `destination_ip:port` enters the mesh."""
    check_capture_annotations(annotations)
    reason = outbound_bypass(ClientCapture(annotations=annotations), port, destination_ip)
    return CAPTURED if reason is None else PathDecision(False, reason)


def takes_mesh_path(
    direction: Direction, annotations: Mapping[str, str], port: int, destination_ip: str = ""
) -> PathDecision:
    """One entry point for both directions (`destination_ip` matters only outbound)."""
    if direction == "inbound":
        return inbound_path(annotations, port)
    return outbound_path(annotations, port, destination_ip)


__all__ = [
    "CAPTURED",
    "PROXY_PORTS",
    "Direction",
    "PathDecision",
    "check_capture_annotations",
    "inbound_path",
    "outbound_path",
    "takes_mesh_path",
]
