"""The map codecs: every struct round-trips, byte order is converted only in the codec, and
MapState keys/entries become policy-map bytes with Cilium's prefix rules (reference §3.1)."""

from __future__ import annotations

from dataclasses import fields
from ipaddress import IPv4Address, IPv4Network

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from netstrata.datapath.maps import (
    ENDPOINT_KEY,
    FLOW_EVENT,
    POLICY_KEY,
    STRUCTS,
    PolicyKey,
    StructSpec,
    decode_ipcache_prefix,
    decode_map_state_entry,
    decode_map_state_exact_key,
    decode_map_state_key,
    decode_policy_key,
    encode_ipcache_prefix,
    encode_map_state_entry,
    encode_map_state_exact_key,
    encode_map_state_key,
    encode_policy_key,
    is_exact,
    kernel_view,
    policy_key_of,
)
from netstrata.datapath.maps._layout import EndpointKey
from netstrata.policy.types import Direction, MapStateEntry, MapStateKey

_INTS = {"B": 8, "H": 16, "I": 32, "Q": 64}


def _value(spec: StructSpec[object], c_name: str, fmt: str) -> st.SearchStrategy[object]:
    if c_name.endswith("_be") and fmt == "I":
        return st.ip_addresses(v=4)
    return st.integers(0, (1 << _INTS[fmt]) - 1)


def _instances(spec: StructSpec[object]) -> st.SearchStrategy[object]:
    data = [f for f in spec.fields if not f.is_pad]
    return st.builds(spec.cls, *(_value(spec, f.c_name, f.fmt) for f in data))


@pytest.mark.parametrize("spec", STRUCTS, ids=lambda s: s.c_name)
@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_struct_round_trip(spec: StructSpec[object], data: st.DataObject) -> None:
    obj = data.draw(_instances(spec))
    raw = spec.encode(obj)
    assert len(raw) == spec.size
    assert spec.decode(raw) == obj
    offsets = spec.offsets()
    for f in spec.fields:
        if f.is_pad:
            assert raw[offsets[f.c_name]:offsets[f.c_name] + f.size] == bytes(f.size)


def test_be_fields_are_network_order_on_the_wire() -> None:
    raw = encode_policy_key(PolicyKey(96, 7, 1000, 1, 6, 0x1F90))
    assert raw[14:16] == b"\x1f\x90"
    assert ENDPOINT_KEY.encode(EndpointKey(IPv4Address("10.1.2.3"))) == b"\x0a\x01\x02\x03"


def test_decode_rejects_wrong_sizes_and_encode_names_the_struct() -> None:
    with pytest.raises(ValueError, match="flow_event"):
        FLOW_EVENT.decode(b"\0" * 10)
    with pytest.raises(ValueError, match="policy_key"):
        encode_policy_key(PolicyKey(96, 1 << 32, 0, 0, 0, 0))


def test_dataclass_fields_are_the_c_members_in_order() -> None:
    for spec in STRUCTS:
        assert [f.name for f in fields(spec.cls)] == [  # type: ignore[arg-type]
            f.c_name for f in spec.fields if not f.is_pad]


@st.composite
def map_state_keys(draw: st.DrawFn) -> MapStateKey:
    direction = draw(st.sampled_from(list(Direction)))
    identity = draw(st.integers(0, (1 << 32) - 1))
    proto = draw(st.sampled_from([0, 1, 6, 17, 58, 132]))
    if proto == 0:
        return MapStateKey(direction, identity)
    prefix = draw(st.integers(0, 16))
    port = draw(st.integers(0, 0xFFFF)) & ~((1 << (16 - prefix)) - 1) & 0xFFFF
    return MapStateKey(direction, identity, proto, port, prefix)


map_state_entries = st.builds(
    MapStateEntry,
    deny=st.booleans(),
    proxy_port=st.integers(0, 0xFFFF),
    precedence=st.integers(0, (1 << 32) - 1),
    cookie=st.integers(0, (1 << 32) - 1),
)


@settings(max_examples=200, deadline=None)
@given(endpoint_id=st.integers(0, (1 << 32) - 1), key=map_state_keys())
def test_map_state_key_round_trip_and_prefix(endpoint_id: int, key: MapStateKey) -> None:
    raw = encode_map_state_key(endpoint_id, key)
    assert decode_map_state_key(raw) == (endpoint_id, key)
    assert decode_policy_key(raw).prefixlen == 72 + (8 if key.proto else 0) + key.port_prefix


@settings(max_examples=200, deadline=None)
@given(endpoint_id=st.integers(0, (1 << 32) - 1), key=map_state_keys())
def test_exact_key_round_trip_and_layout(endpoint_id: int, key: MapStateKey) -> None:
    """An exact port round-trips through `policy_exact_key` (the trie key without prefixlen);
    any other key is refused there."""
    if not is_exact(key):
        with pytest.raises(ValueError):
            encode_map_state_exact_key(endpoint_id, key)
        return
    raw = encode_map_state_exact_key(endpoint_id, key)
    assert decode_map_state_exact_key(raw) == (endpoint_id, key)
    assert raw == encode_map_state_key(endpoint_id, key)[4:]
    assert key.proto and key.port_prefix == 16


def test_exact_key_without_protocol_is_rejected() -> None:
    with pytest.raises(ValueError, match="proto 0"):
        decode_map_state_exact_key(bytes(12))


@settings(max_examples=200, deadline=None)
@given(key=map_state_keys(), entry=map_state_entries)
def test_map_state_entry_round_trip(key: MapStateKey, entry: MapStateEntry) -> None:
    assert decode_map_state_entry(encode_map_state_entry(key, entry)) == entry


def test_entry_audit_stays_in_userspace() -> None:
    entry = MapStateEntry(cookie=3, audit=True)
    key = MapStateKey(Direction.INGRESS, 5)
    assert decode_map_state_entry(encode_map_state_entry(key, entry)) == kernel_view(entry)
    assert kernel_view(entry) == MapStateEntry(cookie=3)


def test_prefix_rules_from_the_reference() -> None:
    # any protocol: only endpoint + identity + direction are significant, no port bits
    assert policy_key_of(1, MapStateKey(Direction.EGRESS, 0)).prefixlen == 72
    # protocol only
    assert policy_key_of(1, MapStateKey(Direction.EGRESS, 9, 17)).prefixlen == 80
    # exact port
    assert policy_key_of(1, MapStateKey(Direction.EGRESS, 9, 6, 80, 16)).prefixlen == 96
    # ICMP echo request: the type in the high byte, prefix 8
    icmp = policy_key_of(1, MapStateKey(Direction.INGRESS, 0, 1, 8 << 8, 8))
    assert icmp.prefixlen == 88
    assert encode_policy_key(icmp)[14:16] == b"\x08\x00"


def test_impossible_prefix_lengths_are_rejected() -> None:
    for prefixlen in (71, 75, 97):
        raw = encode_policy_key(PolicyKey(prefixlen, 1, 0, 0, 6, 0))
        with pytest.raises(ValueError):
            decode_map_state_key(raw)


@settings(max_examples=100, deadline=None)
@given(addr=st.ip_addresses(v=4), prefixlen=st.integers(0, 32))
def test_ipcache_prefix_round_trip(addr: IPv4Address, prefixlen: int) -> None:
    net = IPv4Network((addr, prefixlen), strict=False)
    assert decode_ipcache_prefix(encode_ipcache_prefix(net)) == net


def test_policy_key_layout_is_lpm_shaped() -> None:
    """An LPM trie key starts with the 32-bit prefix length, then the data it covers."""
    assert POLICY_KEY.offsets()["prefixlen"] == 0
    assert POLICY_KEY.size == 4 + 96 // 8
