"""The kernel's mesh-capture table of a workload, computed from its capture annotations.

`bpf/mesh.h` only looks up; every semantic decision stays with the pure functions of
`mesh.bypass` (istio-iptables' order), which this module asks port by port. The table is:

* flags: ENROLLED, plus the path of a port no entry names (INBOUND_DEFAULT: the answer of
  `inbound_path` for an unlisted port; OUTBOUND_DEFAULT: `includeOutboundIPRanges` is `*`
  and `excludeOutboundIPRanges` is not);
* port entries: every port the annotations (or Istio's own proxy ports) name, per direction,
  with `inbound_path` / the outbound port rules' answer;
* outbound range entries: excluded CIDRs BYPASS, included CIDRs CAPTURE. The kernel takes the
  most specific range, Istio takes excluded before included, so an included range inside an
  excluded one is left out (the excluded one already answers for all of it); an excluded
  range inside an included one is more specific and wins, as in Istio.

A malformed annotation fails closed: the workload is captured on every port (what
`mesh.trace` reports as "captured (ignored malformed annotation)"), and the error is returned
for the caller to report.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from ipaddress import IPv4Network

from netstrata.datapath.maps import MeshFlag, MeshPath
from netstrata.mesh.bypass import PROXY_PORTS, check_capture_annotations, inbound_path
from netstrata.mesh.matching import split_ports
from netstrata.mesh.selection import ANNOTATION_PREFIX
from netstrata.policy.types import Direction


@dataclass(frozen=True, slots=True)
class MeshCaptureTable:
    """What the kernel maps hold for one meshed workload."""

    flags: MeshFlag
    ports: Mapping[tuple[Direction, int], MeshPath] = field(default_factory=dict)
    ranges: Mapping[IPv4Network, MeshPath] = field(default_factory=dict)


CAPTURE_ALL = MeshCaptureTable(
    MeshFlag.ENROLLED | MeshFlag.INBOUND_DEFAULT | MeshFlag.OUTBOUND_DEFAULT
)


def _path(meshed: bool) -> MeshPath:
    return MeshPath.CAPTURE if meshed else MeshPath.BYPASS


def _cidrs(value: str) -> tuple[list[IPv4Network], bool]:
    """The IPv4 CIDRs of a range annotation, and whether it says `*`."""
    nets: list[IPv4Network] = []
    star = False
    for part in (p.strip() for p in value.split(",")):
        if part == "*":
            star = True
        elif part:
            net = ipaddress.ip_network(part, strict=False)
            if isinstance(net, IPv4Network):  # the datapath is IPv4 only
                nets.append(net)
    return nets, star


def capture_table(annotations: Mapping[str, str]) -> tuple[MeshCaptureTable, ValueError | None]:
    """The table of a meshed workload with these pod annotations (see the module doc)."""
    try:
        check_capture_annotations(annotations)
    except ValueError as exc:
        return CAPTURE_ALL, exc

    def ann(name: str, default: str = "") -> str:
        return annotations.get(ANNOTATION_PREFIX + name, default)

    ports: dict[tuple[Direction, int], MeshPath] = {}
    inbound = split_ports(ann("includeInboundPorts")) | split_ports(ann("excludeInboundPorts"))
    for port in inbound | PROXY_PORTS:
        ports[(Direction.INGRESS, port)] = _path(inbound_path(annotations, port).meshed)
    unlisted = next(p for p in range(1, 65536) if p not in inbound | PROXY_PORTS)
    flags = MeshFlag.ENROLLED
    if inbound_path(annotations, unlisted).meshed:
        flags |= MeshFlag.INBOUND_DEFAULT

    excluded_ports = split_ports(ann("excludeOutboundPorts"))
    for port in split_ports(ann("includeOutboundPorts")) | excluded_ports:
        ports[(Direction.EGRESS, port)] = _path(port not in excluded_ports)

    excluded, exclude_all = _cidrs(ann("excludeOutboundIPRanges"))
    included, include_all = _cidrs(ann("includeOutboundIPRanges", "*"))
    ranges: dict[IPv4Network, MeshPath] = {}
    if not exclude_all:
        ranges.update((net, MeshPath.BYPASS) for net in excluded)
        for net in included:
            if not any(net.subnet_of(ex) for ex in excluded):
                ranges.setdefault(net, MeshPath.CAPTURE)
        if include_all:
            flags |= MeshFlag.OUTBOUND_DEFAULT
    return MeshCaptureTable(flags, ports, ranges), None


__all__ = ["CAPTURE_ALL", "MeshCaptureTable", "capture_table"]
