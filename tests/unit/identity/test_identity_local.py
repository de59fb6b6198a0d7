"""LocalIdentityAllocator (reference §2.4) and IdentityCache."""

from __future__ import annotations

import ipaddress

import pytest

from netstrata.identity import (
    LOCAL_IDENTITY_RANGE,
    IdentityAllocationError,
    IdentityAllocator,
    IdentityCache,
    LocalIdentityAllocator,
    cidr_labels,
    fqdn_labels,
    is_local,
    scope_of,
)
from netstrata.identity import IdentityScope as Scope
from netstrata.kvstore import EmbeddedKVStore
from netstrata.labels import Label, LabelSet, reserved

WORLD = reserved("world")


def test_cidr_identity_labels_and_scope() -> None:
    loc = LocalIdentityAllocator()
    ident = loc.allocate_cidr("10.0.0.0/8")
    assert ident == LOCAL_IDENTITY_RANGE[0] == 0x01000001
    assert scope_of(ident) is Scope.LOCAL and is_local(ident)
    assert loc.lookup(ident) == LabelSet([Label("cidr", "10.0.0.0/8"), WORLD])
    assert loc.allocate_cidr("10.1.2.3/8") == ident  # host bits masked: the same prefix
    assert loc.allocate_cidr(ipaddress.ip_network("10.0.0.0/8")) == ident
    assert loc.lookup_cidr("10.0.0.0/8") == ident
    v6 = loc.allocate_cidr("2001:db8::/32")
    assert loc.lookup(v6) == LabelSet([Label("cidr", "2001:db8::/32"), WORLD])
    assert v6 != ident


def test_zero_prefix_is_world() -> None:
    loc = LocalIdentityAllocator()
    assert cidr_labels("0.0.0.0/0") == LabelSet([WORLD])
    assert loc.allocate_cidr("0.0.0.0/0") == 2
    assert loc.allocate_cidr("::/0") == 2
    assert loc.list() == []


def test_dual_stack_uses_per_family_world_labels() -> None:
    loc = LocalIdentityAllocator(dual_stack=True)
    v4 = loc.allocate_cidr("192.0.2.0/24")
    v6 = loc.allocate_cidr("2001:db8::/48")
    assert reserved("world-ipv4") in loc.lookup(v4)  # type: ignore[operator]
    assert reserved("world-ipv6") in loc.lookup(v6)  # type: ignore[operator]
    assert loc.allocate_cidr("0.0.0.0/0") == 9
    assert loc.allocate_cidr("::/0") == 10


def test_fqdn_identity_labels() -> None:
    loc = LocalIdentityAllocator()
    ident = loc.allocate_fqdn("192.0.2.7", ["*.example.com", "api.example.com", "*.example.com"])
    assert loc.lookup(ident) == LabelSet(
        [Label("fqdn", "*.example.com"), Label("fqdn", "api.example.com"), WORLD])
    # Another IP matched by the same selectors shares the identity (labels are equal).
    assert loc.allocate_fqdn("192.0.2.8", ["api.example.com", "*.example.com"]) == ident
    with_cidr = fqdn_labels("192.0.2.7", ["api.example.com"], with_cidr_label=True)
    assert Label("cidr", "192.0.2.7/32") in with_cidr
    assert Label("cidr", "2001:db8::1/128") in fqdn_labels("2001:db8::1", ["x"],
                                                           with_cidr_label=True)
    with pytest.raises(ValueError):
        loc.allocate_fqdn("192.0.2.7", [])
    with pytest.raises(ValueError):
        loc.allocate_fqdn("not-an-ip", ["x"])


def test_release_counts_and_no_immediate_reuse() -> None:
    loc = LocalIdentityAllocator()
    a = loc.allocate_cidr("10.0.0.0/8")
    loc.allocate_cidr("10.0.0.0/8")
    assert loc.release(a) is False
    assert loc.lookup(a) is not None
    assert loc.release(cidr_labels("10.0.0.0/8")) is True
    assert loc.lookup(a) is None and loc.lookup_cidr("10.0.0.0/8") is None
    assert loc.release(a) is False
    assert loc.release(2) is False
    b = loc.allocate_cidr("10.0.0.0/8")
    assert b != a


def test_exhaustion_and_wraparound_in_a_small_range() -> None:
    small = range(LOCAL_IDENTITY_RANGE[0], LOCAL_IDENTITY_RANGE[0] + 3)
    loc = LocalIdentityAllocator(identity_range=small)
    ids = [loc.allocate_cidr(f"10.{i}.0.0/16") for i in range(3)]
    assert ids == list(small)
    with pytest.raises(IdentityAllocationError, match="exhausted"):
        loc.allocate_cidr("10.9.0.0/16")
    loc.release(ids[1])
    assert loc.allocate_cidr("10.9.0.0/16") == ids[1]  # the only free one, after wrapping
    st = loc.statistics()
    assert (st.identities, st.references, st.allocations) == (3, 3, 4)


def test_range_must_be_local_scope() -> None:
    with pytest.raises(ValueError):
        LocalIdentityAllocator(identity_range=range(256, 300))
    with pytest.raises(ValueError):
        LocalIdentityAllocator(identity_range=range(0x01000001, 0x01000001))


def test_generic_allocate_and_list() -> None:
    loc = LocalIdentityAllocator()
    group = LabelSet([Label("cidrgroup", "office"), WORLD])
    g = loc.allocate(group)
    c = loc.allocate_cidr("198.51.100.0/24")
    assert loc.list() == [(g, group), (c, cidr_labels("198.51.100.0/24"))]
    assert loc.lookup_by_labels(group) == g
    assert loc.lookup(1) == LabelSet([reserved("host")])
    with pytest.raises(ValueError):
        loc.allocate(LabelSet())


# -- IdentityCache ------------------------------------------------------------------------------

WEB = LabelSet([Label("k8s", "app", "web")])


def test_cache_snapshot_holds_reserved_global_and_local_sorted() -> None:
    glob = IdentityAllocator(EmbeddedKVStore())
    loc = LocalIdentityAllocator()
    cidr = loc.allocate_cidr("10.0.0.0/8")
    web = glob.allocate(WEB)
    cache = IdentityCache.snapshot(glob, loc)
    assert list(cache) == [*range(1, 11), web, cidr]
    assert cache[web] == WEB and cache[2] == LabelSet([WORLD])
    assert web in cache and 999 not in cache
    assert len(cache) == 12
    assert cache.lookup_by_labels(WEB) == web
    assert cache.lookup_by_labels(LabelSet([reserved("host")])) == 1
    assert cache.lookup_by_labels(LabelSet([Label("k8s", "x", "y")])) is None
    # A snapshot does not follow later allocations.
    glob.allocate(LabelSet([Label("k8s", "app", "late")]))
    assert len(cache) == 12
    assert list(IdentityCache.snapshot(glob, include_reserved=False)) == [web, web + 1]


def test_cache_rejects_disagreeing_sources() -> None:
    with pytest.raises(ValueError, match="identity 300"):
        IdentityCache([(300, WEB), (300, LabelSet([Label("k8s", "app", "db")]))])
    with pytest.raises(ValueError):
        IdentityCache([(2, WEB)])  # a source may not relabel a reserved identity


def test_cache_diff_and_derivations() -> None:
    db = LabelSet([Label("k8s", "app", "db")])
    old = IdentityCache([(300, WEB), (301, db)])
    new = old.without([301]).with_identities([(302, db), (300, LabelSet([Label("k8s", "v", "2")]))])
    delta = old.diff(new)
    assert delta.added == ((300, LabelSet([Label("k8s", "v", "2")])), (302, db))
    assert delta.removed == (300, 301)
    assert not old.diff(old)
    assert old == IdentityCache([(301, db), (300, WEB)])
    assert 301 not in new and 302 in new
