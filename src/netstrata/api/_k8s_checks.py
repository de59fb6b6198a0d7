"""Cross-field checks for Kubernetes NetworkPolicy and the compact Workload kind.

NetworkPolicy rules follow the API server's validation (pkg/apis/networking/validation):
a peer names at least one selector or an ipBlock, an ipBlock stands alone, every `except` is
a strict sub-prefix of its `cidr`, and `endPort` needs a numeric `port` not above it.
"""

from __future__ import annotations

from collections.abc import Iterator

from netstrata.api._k8s_schema import (
    IPBlock,
    NetworkPolicyPeer,
    NetworkPolicyPort,
    NetworkPolicySpec,
    WorkloadDoc,
)
from netstrata.api._problems import Issue
from netstrata.api._schema_base import parse_prefix
from netstrata.api._yaml import FieldPath, brief


def check_network_policy(spec: NetworkPolicySpec) -> Iterator[Issue]:
    """Every structural problem of a NetworkPolicy spec; paths are relative to `spec`."""
    sections = [("ingress", i, "from", r.from_, r.ports) for i, r in enumerate(spec.ingress or ())]
    sections += [("egress", i, "to", r.to, r.ports) for i, r in enumerate(spec.egress or ())]
    for wire, i, peers_wire, peers, ports in sections:
        for j, peer in enumerate(peers or ()):
            yield from _peer(peer, (wire, i, peers_wire, j))
        for j, port in enumerate(ports or ()):
            yield from _port(port, (wire, i, "ports", j))


def _peer(peer: NetworkPolicyPeer, path: FieldPath) -> Iterator[Issue]:
    if peer.pod_selector is None and peer.namespace_selector is None and peer.ip_block is None:
        yield Issue(path, "at least one of podSelector, namespaceSelector or ipBlock (must "
                    "specify a peer)", "an empty peer")
    elif peer.ip_block is not None and (peer.pod_selector or peer.namespace_selector):
        yield Issue((*path, "ipBlock"), "ipBlock alone (may not be specified when podSelector or "
                    "namespaceSelector is specified)", "ipBlock with a selector")
    if peer.ip_block is not None:
        yield from _ip_block(peer.ip_block, (*path, "ipBlock"))


def _ip_block(block: IPBlock, path: FieldPath) -> Iterator[Issue]:
    outer = parse_prefix(block.cidr, allow_address=False)
    for k, text in enumerate(block.except_ or ()):
        inner = parse_prefix(text, allow_address=False)
        if (inner.version != outer.version or not inner.subnet_of(outer)  # type: ignore[arg-type]
                or inner.prefixlen <= outer.prefixlen):
            yield Issue((*path, "except", k), f"a prefix strictly inside {block.cidr} (must be a "
                        "strict subset of cidr)", brief(text))


def _port(port: NetworkPolicyPort, path: FieldPath) -> Iterator[Issue]:
    if port.end_port is None:
        return
    if port.port is None:
        yield Issue((*path, "endPort"), "endPort only together with port (may not be specified "
                    "when port is not specified)", str(port.end_port))
    elif isinstance(port.port, str):
        yield Issue((*path, "endPort"), "endPort only with a numeric port (may not be specified "
                    "when port is a named port)", f"port {brief(port.port)}")
    elif port.end_port < port.port:
        yield Issue((*path, "endPort"), f"an endPort of at least port {port.port} (must be greater "
                    "than or equal to port)", str(port.end_port))


def check_workload(doc: WorkloadDoc) -> Iterator[Issue]:
    """metadata and spec may both carry name/namespace/labels/annotations, but must agree."""
    meta, spec = doc.metadata, doc.spec
    for field, meta_value, spec_value in (
        ("name", meta.name if meta else None, spec.name),
        ("namespace", meta.namespace if meta else None, spec.namespace),
        ("labels", meta.labels if meta else None, spec.labels),
        ("annotations", meta.annotations if meta else None, spec.annotations),
    ):
        if meta_value is not None and spec_value is not None and meta_value != spec_value:
            yield Issue(("spec", field), f"the same {field} as metadata.{field}",
                        f"{brief(spec_value)} vs {brief(meta_value)}")
    if spec.name is None and (meta is None or meta.name is None):
        yield Issue(("spec", "name"), "a workload name in spec.name or metadata.name", "nothing")
