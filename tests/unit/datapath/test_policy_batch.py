"""Bulk policy-map encoding: byte for byte what the shared per-entry codecs produce, on the
fast word-column path and on the per-entry fallback used when the layout differs, for the trie
(`policy_key`) and the exact hash (`policy_exact_key`); and the split between the two maps."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from netstrata.datapath import policy_batch
from netstrata.datapath.maps import (
    encode_map_state_entry,
    encode_map_state_exact_key,
    encode_map_state_key,
    is_exact,
    kernel_view,
)
from netstrata.datapath.policy_batch import (
    encode_policy_entries,
    encode_policy_exact_entries,
    encode_policy_exact_keys,
    encode_policy_keys,
    partition,
)
from netstrata.policy.types import Direction, MapStateEntry, MapStateKey


@st.composite
def keys(draw: st.DrawFn) -> MapStateKey:
    direction = draw(st.sampled_from(list(Direction)))
    identity = draw(st.integers(0, 2**32 - 1))
    proto = draw(st.sampled_from([0, 1, 6, 17, 132]))
    if proto == 0:
        return MapStateKey(direction, identity)
    prefix = draw(st.integers(0, 16) | st.just(16))
    port = draw(st.integers(0, 0xFFFF)) & ~((1 << (16 - prefix)) - 1) & 0xFFFF
    return MapStateKey(direction, identity, proto, port, prefix)


entries = st.builds(
    MapStateEntry,
    deny=st.booleans(),
    proxy_port=st.integers(0, 0xFFFF),
    precedence=st.integers(0, 2**32 - 1),
    cookie=st.integers(0, 2**32 - 1),
    audit=st.booleans(),
)
pairs = st.lists(st.tuples(keys(), entries), max_size=40)


def _per_entry(
    endpoint_id: int, items: list[tuple[MapStateKey, MapStateEntry]]
) -> tuple[bytes, bytes]:
    return (
        b"".join(encode_map_state_key(endpoint_id, k) for k, _ in items),
        b"".join(encode_map_state_entry(k, kernel_view(e)) for k, e in items),
    )


@pytest.mark.parametrize("fast", [True, False], ids=["word-columns", "per-entry fallback"])
@given(endpoint_id=st.integers(0, 2**32 - 1), items=pairs)
def test_bulk_encoding_is_the_shared_codec_byte_for_byte(
    fast: bool, endpoint_id: int, items: list[tuple[MapStateKey, MapStateEntry]]
) -> None:
    assert policy_batch.FAST, "the layout changed: update policy_batch's word layout"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(policy_batch, "FAST", fast)
        ks = [k for k, _ in items]
        got = (
            encode_policy_keys(endpoint_id, ks),
            encode_policy_entries(ks, [kernel_view(e) for _, e in items]),
        )
    assert got == _per_entry(endpoint_id, items)


def test_keys_and_entries_must_pair_up() -> None:
    with pytest.raises(ValueError, match="2 keys but 1 entries"):
        encode_policy_entries([MapStateKey(Direction.INGRESS, 1)] * 2, [MapStateEntry()])


@pytest.mark.parametrize("fast", [True, False], ids=["word-columns", "per-entry fallback"])
@given(endpoint_id=st.integers(0, 2**32 - 1), items=pairs)
def test_exact_map_encoding_is_the_shared_codec_byte_for_byte(
    fast: bool, endpoint_id: int, items: list[tuple[MapStateKey, MapStateEntry]]
) -> None:
    exact = [(k, e) for k, e in items if is_exact(k)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(policy_batch, "FAST", fast)
        got = (
            encode_policy_exact_keys(endpoint_id, [k for k, _ in exact]),
            encode_policy_exact_entries([kernel_view(e) for _, e in exact]),
        )
    assert got == (
        b"".join(encode_map_state_exact_key(endpoint_id, k) for k, _ in exact),
        b"".join(encode_map_state_entry(k, kernel_view(e)) for k, e in exact),
    )


@given(items=pairs)
def test_partition_sends_exact_ports_to_the_hash_in_order(
    items: list[tuple[MapStateKey, MapStateEntry]],
) -> None:
    ks, vs = [k for k, _ in items], [e for _, e in items]
    (xk, xv), (tk, tv) = partition(ks, vs)
    assert list(zip(xk, xv, strict=True)) == [(k, e) for k, e in items if is_exact(k)]
    assert list(zip(tk, tv, strict=True)) == [(k, e) for k, e in items if not is_exact(k)]
    assert all(k.proto and k.port_prefix == 16 for k in xk)


def test_an_exact_key_codec_refuses_a_port_range() -> None:
    with pytest.raises(ValueError, match="policy trie"):
        encode_map_state_exact_key(1, MapStateKey(Direction.INGRESS, 1, 6, 64, 10))
