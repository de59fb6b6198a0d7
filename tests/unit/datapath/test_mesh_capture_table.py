"""The kernel's mesh-capture table agrees with `mesh.bypass` for every port and address.

`kernel_captures` walks the table in the order `bpf/mesh.h` looks it up (a Python mirror of
those five steps, the kernel itself is exercised in tests/datapath/test_mesh_capture.py);
the property is that it answers as `takes_mesh_path` does, for random annotations.
"""

from __future__ import annotations

import ipaddress

from hypothesis import given, settings
from hypothesis import strategies as st

from netstrata.datapath.maps import MeshFlag, MeshPath
from netstrata.datapath.mesh_capture import CAPTURE_ALL, MeshCaptureTable, capture_table
from netstrata.mesh.bypass import takes_mesh_path
from netstrata.policy.types import Direction

PREFIX = "traffic.sidecar.istio.io/"
PORTS = st.sampled_from([80, 8080, 8443, 9090, 9100, 15020, 15021, 15090, 15006])
CIDRS = st.sampled_from(
    ["10.0.0.0/8", "10.1.0.0/16", "10.1.2.0/24", "10.1.2.3/32", "192.168.0.0/16", "*", "fd00::/8"]
)
IPS = st.sampled_from(["10.1.2.3", "10.1.2.4", "10.1.9.9", "10.9.9.9", "192.168.1.1", "8.8.8.8"])


def _lists(items: st.SearchStrategy[object]) -> st.SearchStrategy[str]:
    return st.lists(items, max_size=3).map(lambda xs: ",".join(str(x) for x in xs))


ANNOTATIONS = st.dictionaries(
    st.sampled_from(
        [
            "includeInboundPorts",
            "excludeInboundPorts",
            "excludeOutboundPorts",
            "includeOutboundPorts",
        ]
    ),
    st.one_of(_lists(PORTS), st.just("*")),
).flatmap(
    lambda ports: st.dictionaries(
        st.sampled_from(["excludeOutboundIPRanges", "includeOutboundIPRanges"]),
        _lists(CIDRS),
    ).map(lambda ranges: {PREFIX + k: v for k, v in {**ports, **ranges}.items()})
)


def kernel_captures(table: MeshCaptureTable, direction: Direction, port: int, dst: str) -> bool:
    path = table.ports.get((direction, port))
    if path is not None:
        return path == MeshPath.CAPTURE
    if direction == Direction.INGRESS:
        return bool(table.flags & MeshFlag.INBOUND_DEFAULT)
    ip = ipaddress.IPv4Address(dst)
    matches = [net for net in table.ranges if ip in net]
    if matches:
        return table.ranges[max(matches, key=lambda n: n.prefixlen)] == MeshPath.CAPTURE
    return bool(table.flags & MeshFlag.OUTBOUND_DEFAULT)


@settings(max_examples=300, deadline=None)
@given(ANNOTATIONS, PORTS, IPS)
def test_table_answers_as_the_bypass_rules(
    annotations: dict[str, str], port: int, dst: str
) -> None:
    table, error = capture_table(annotations)
    assert error is None
    for direction, name in ((Direction.INGRESS, "inbound"), (Direction.EGRESS, "outbound")):
        want = takes_mesh_path(name, annotations, port, dst).meshed  # type: ignore[arg-type]
        assert kernel_captures(table, direction, port, dst) == want, (name, table)


def test_excluded_before_included_even_when_the_included_range_is_narrower() -> None:
    ann = {
        PREFIX + "excludeOutboundIPRanges": "10.0.0.0/8",
        PREFIX + "includeOutboundIPRanges": "10.1.0.0/16",
    }
    table, _ = capture_table(ann)
    assert not kernel_captures(table, Direction.EGRESS, 80, "10.1.2.3")
    assert not takes_mesh_path("outbound", ann, 80, "10.1.2.3").meshed


def test_a_malformed_annotation_captures_everything_and_says_why() -> None:
    table, error = capture_table({PREFIX + "excludeInboundPorts": "http"})
    assert table == CAPTURE_ALL
    assert error is not None and "excludeInboundPorts" in str(error)
