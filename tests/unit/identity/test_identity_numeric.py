"""The numeric layout (reference §2.1) and the reserved identities (§2.2)."""

from __future__ import annotations

import pytest

from netstrata.identity import (
    LOCAL_IDENTITY_RANGE,
    RESERVED_LABELS,
    USER_RESERVED_RANGE,
    WELL_KNOWN_RANGE,
    IdentityScope,
    ReservedIdentity,
    allocation_range,
    cluster_id_of,
    cluster_id_shift,
    is_local,
    is_reserved,
    labels_of_reserved,
    make_global,
    reserved_identity_for,
    reserved_name,
    scope_of,
)
from netstrata.labels import Label, LabelSet, reserved


def test_range_table_from_the_reference() -> None:
    assert (LOCAL_IDENTITY_RANGE[0], LOCAL_IDENTITY_RANGE[-1]) == (16777217, 33554431)
    assert (LOCAL_IDENTITY_RANGE[0], LOCAL_IDENTITY_RANGE[-1]) == (0x01000001, 0x01FFFFFF)
    assert (WELL_KNOWN_RANGE[0], WELL_KNOWN_RANGE[-1]) == (100, 115)
    assert (USER_RESERVED_RANGE[0], USER_RESERVED_RANGE[-1]) == (128, 255)
    assert is_reserved(1) and is_reserved(14) and not is_reserved(0) and not is_reserved(15)


@pytest.mark.parametrize("ident,scope", [
    (0, IdentityScope.GLOBAL), (2, IdentityScope.GLOBAL), (196608, IdentityScope.GLOBAL),
    (0x00FFFFFF, IdentityScope.GLOBAL), (0x01000001, IdentityScope.LOCAL),
    (0x01FFFFFF, IdentityScope.LOCAL), (0x02000005, IdentityScope.REMOTE_NODE),
])
def test_scope_is_the_top_byte(ident: int, scope: IdentityScope) -> None:
    assert scope_of(ident) is scope
    assert is_local(ident) == (scope is IdentityScope.LOCAL)


@pytest.mark.parametrize("bad", [-1, 1 << 32, 0x03000000])
def test_scope_of_rejects_out_of_layout_values(bad: int) -> None:
    with pytest.raises(ValueError):
        scope_of(bad)


def test_default_layout_has_16_identity_bits_and_8_cluster_bits() -> None:
    assert cluster_id_shift() == 16
    assert make_global(3, 0) == 196608
    assert make_global(3, 0xFFFF) == 262143
    assert make_global(255, 0xFFFF) == 0x00FFFFFF  # still fits the 24 wire bits
    assert cluster_id_of(make_global(7, 1234)) == 7
    assert cluster_id_of(300) == 0
    # Non-global scopes carry no cluster.
    assert cluster_id_of(0x01000001) == 0 and cluster_id_of(0x02000001) == 0
    with pytest.raises(ValueError):
        make_global(256, 1)
    with pytest.raises(ValueError):
        make_global(1, 1 << 16)


def test_511_clusters_layout_has_15_identity_bits() -> None:
    assert cluster_id_shift(511) == 15
    assert make_global(511, (1 << 15) - 1, 511) == 0x00FFFFFF
    assert cluster_id_of(make_global(300, 5, 511), 511) == 300
    assert cluster_id_of(0x01000001, 511) == 0
    with pytest.raises(ValueError):
        make_global(1, 1 << 15, 511)


def test_allocation_ranges() -> None:
    r0 = allocation_range(0)
    assert (r0[0], r0[-1]) == (256, 65535)
    r3 = allocation_range(3)
    assert (r3[0], r3[-1]) == (196608, 262143)
    r255 = allocation_range(255)
    assert (r255[0], r255[-1]) == (255 << 16, (256 << 16) - 1)
    assert len(r3) == 1 << 16
    # The 511 variant: 2^15 per cluster; cluster 0 still starts above the reserved ranges.
    assert (allocation_range(0, 511)[0], allocation_range(0, 511)[-1]) == (256, 32767)
    assert (allocation_range(3, 511)[0], allocation_range(3, 511)[-1]) == (98304, 131071)
    assert allocation_range(511, 511)[-1] == 0x00FFFFFF


def test_ranges_of_different_clusters_never_overlap() -> None:
    for mcc in (255, 511):
        seen = 0
        for c in range(mcc + 1):
            r = allocation_range(c, mcc)
            assert r[0] > seen or c == 0
            seen = r[-1]
            assert all(cluster_id_of(i, mcc) == c for i in (r[0], r[-1]))


@pytest.mark.parametrize("cluster,mcc", [(-1, 255), (256, 255), (512, 511), (1, 256), (1, 0)])
def test_invalid_cluster_configuration(cluster: int, mcc: int) -> None:
    with pytest.raises(ValueError):
        allocation_range(cluster, mcc)


# -- reserved -----------------------------------------------------------------------------------

RESERVED_TABLE = {
    1: "host", 2: "world", 3: "unmanaged", 4: "health", 5: "init", 6: "remote-node",
    7: "kube-apiserver", 8: "ingress", 9: "world-ipv4", 10: "world-ipv6",
}


@pytest.mark.parametrize("ident,name", sorted(RESERVED_TABLE.items()))
def test_reserved_numbers_names_and_labels(ident: int, name: str) -> None:
    assert ReservedIdentity(ident).value == ident
    assert reserved_name(ident) == name
    labels = labels_of_reserved(ident)
    if ident == 7:
        assert labels == LabelSet([reserved("kube-apiserver"), reserved("remote-node")])
    else:
        assert labels == LabelSet([reserved(name)])
    assert labels is not None and reserved_identity_for(labels) == ident


def test_reserved_table_is_exactly_1_to_10() -> None:
    assert sorted(RESERVED_LABELS) == list(range(1, 11))
    assert labels_of_reserved(11) is None and labels_of_reserved(256) is None
    assert reserved_name(0) is None


def test_reserved_identity_for_other_sets() -> None:
    # Host wins whatever else the host carries (the local apiserver label, node labels).
    assert reserved_identity_for(LabelSet([reserved("host"), reserved("kube-apiserver")])) == 1
    assert reserved_identity_for(LabelSet([reserved("host"), Label("node", "zone", "a")])) == 1
    # kube-apiserver alone is not a reserved identity; neither are CIDR or pod sets.
    assert reserved_identity_for(LabelSet([reserved("kube-apiserver")])) is None
    assert reserved_identity_for(LabelSet([reserved("world"), Label("cidr", "10.0.0.0/8")])) is None
    assert reserved_identity_for(LabelSet([Label("k8s", "app", "web")])) is None
    assert reserved_identity_for(LabelSet()) is None
    assert reserved_identity_for(LabelSet([reserved("world"), reserved("health")])) is None
