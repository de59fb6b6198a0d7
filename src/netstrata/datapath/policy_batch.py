"""Policy-map keys and values encoded in bulk, for one BPF_MAP_UPDATE_BATCH of many entries.

The shared codecs (`maps.policy_key_of` + `POLICY_KEY.encode`) build two dataclasses and walk
their fields per entry: about 20 us for a key and its value, two seconds for 100,000. Here
each struct is laid out as 32-bit words (and bytes) and every field is one column (one list
comprehension reading one attribute: about 15 ns an entry on CPython 3.11, measured faster
than `map(operator.attrgetter(...))` into an array), strided into one buffer: no per-entry
objects besides the column ints, so 100,000 entries take about ten milliseconds per struct.
Ports go to network order with `array.byteswap()`, also in C.

An endpoint's entries go to two maps (`maps.is_exact`): keys naming the protocol and the whole
port to the hash `nst_policy_exact` (`encode_policy_exact_keys`, no prefix length; the value's
`prefix_bits` is always 24), every other key to the trie `nst_policy` (`encode_policy_keys`).
`partition` splits keys and values between the two, in their order.

The word layout is derived from `_layout.py`, not restated: at import the struct formats of
`policy_key`, `policy_exact_key` and `policy_entry` are compared with the layout this module
packs, and on any difference (or a big-endian host) `FAST` is False and the shared per-entry
codecs are used, so a layout change can make this slower but never wrong. A unit test checks
both paths byte for byte against the shared codecs.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from itertools import compress
from typing import Final, TypeVar

from netstrata.datapath.maps import (
    EXACT_PORT_PREFIX,
    POLICY_ENTRY,
    POLICY_EXACT_KEY,
    POLICY_KEY,
    PolicyFlag,
    PolicyPrefix,
    encode_map_state_entry,
    encode_map_state_exact_key,
    encode_map_state_key,
)
from netstrata.policy.types import Direction, MapStateEntry, MapStateKey

_KEY_FIELDS: Final = (
    "prefixlen:I",
    "endpoint_id:I",
    "identity:I",
    "direction:B",
    "proto:B",
    "dport_be:H",
)
_EXACT_KEY_FIELDS: Final = _KEY_FIELDS[1:]
_ENTRY_FIELDS: Final = ("proxy_port:H", "flags:B", "prefix_bits:B", "precedence:I", "cookie:I")


def _fields(spec_fields: Sequence[object]) -> tuple[str, ...]:
    return tuple(f"{f.c_name}:{f.fmt}" for f in spec_fields)  # type: ignore[attr-defined]


FAST: Final = (
    sys.byteorder == "little"
    and _fields(POLICY_KEY.fields) == _KEY_FIELDS
    and _fields(POLICY_EXACT_KEY.fields) == _EXACT_KEY_FIELDS
    and _fields(POLICY_ENTRY.fields) == _ENTRY_FIELDS
    and int(PolicyFlag.DENY) == 1  # the flags byte is the `deny` bool itself
    and array("I").itemsize == 4
    and array("H").itemsize == 2
)
"""The word layout below matches `_layout.py` on this host (else: per-entry codecs)."""

_EXACT: Final = int(PolicyPrefix.EXACT)
_EXACT_BITS: Final = 8 + EXACT_PORT_PREFIX
"""`prefix_bits` of every entry of the exact map: protocol + whole port."""

T = TypeVar("T")


def exact_mask(keys: Sequence[MapStateKey]) -> list[bool]:
    """Per key: does it go to the exact hash (`maps.is_exact`, inlined: one attribute read)."""
    return [k.port_prefix == EXACT_PORT_PREFIX for k in keys]


def partition(
    keys: Sequence[MapStateKey], values: Sequence[T]
) -> tuple[tuple[Sequence[MapStateKey], Sequence[T]], tuple[Sequence[MapStateKey], Sequence[T]]]:
    """((exact keys, their values), (trie keys, their values)), each in the given order."""
    mask = exact_mask(keys)
    if all(mask):  # the common case (exact ports only): no copies
        return (keys, values), ((), ())
    if not any(mask):
        return ((), ()), (keys, values)
    other = [not m for m in mask]
    return ((list(compress(keys, mask)), list(compress(values, mask))),
            (list(compress(keys, other)), list(compress(values, other))))


def _words(n: int, size: int, columns: Sequence[tuple[int, array[int]]]) -> bytearray:
    """n structs of `size` bytes; each (word index, column) fills that 32-bit word of every
    struct, the rest stays zero (for the byte fields the caller fills)."""
    out = bytearray(size * n)
    if n:
        words = memoryview(out).cast("I")
        stride = size // 4
        for index, column in columns:
            words[index::stride] = column
    return out


def _dir_proto_port(out: bytearray, size: int, offset: int, keys: Sequence[MapStateKey]) -> None:
    """The last word of both key structs: direction, proto, dport_be (network order)."""
    out[offset::size] = bytes([k.direction for k in keys])
    out[offset + 1::size] = bytes([k.proto for k in keys])
    ports = array("H", [k.port for k in keys])
    ports.byteswap()  # native (little-endian, checked by FAST) -> network order
    raw = ports.tobytes()
    out[offset + 2::size] = raw[0::2]
    out[offset + 3::size] = raw[1::2]


def encode_policy_keys(endpoint_id: int, keys: Sequence[MapStateKey]) -> bytes:
    """`struct policy_key` of every key of `endpoint_id`, concatenated (16 bytes each)."""
    if not FAST:
        return b"".join(encode_map_state_key(endpoint_id, k) for k in keys)
    n = len(keys)
    prefixlen = array("I", [_EXACT + (8 if k.proto else 0) + k.port_prefix for k in keys])
    out = _words(n, 16, ((0, prefixlen), (1, array("I", [endpoint_id]) * n),
                         (2, array("I", [k.identity for k in keys]))))
    _dir_proto_port(out, 16, 12, keys)
    return bytes(out)


def encode_policy_exact_keys(endpoint_id: int, keys: Sequence[MapStateKey]) -> bytes:
    """`struct policy_exact_key` of every (exact) key of `endpoint_id`, concatenated (12 bytes
    each). The caller has checked that every key is exact (`partition`)."""
    if not FAST:
        return b"".join(encode_map_state_exact_key(endpoint_id, k) for k in keys)
    n = len(keys)
    out = _words(n, 12, ((0, array("I", [endpoint_id]) * n),
                         (1, array("I", [k.identity for k in keys]))))
    _dir_proto_port(out, 12, 8, keys)
    return bytes(out)


def _encode_entries(entries: Sequence[MapStateEntry], first_word: array[int]) -> bytes:
    """`struct policy_entry` of every entry, given its first word as one little-endian u32
    (FAST checks the host): proxy_port (bits 0-15), flags (16-23: `deny` is the DENY bit),
    prefix_bits (24-31). One expression per entry costs less than three byte columns."""
    out = _words(len(entries), 12, ((0, first_word),
                                    (1, array("I", [e.precedence for e in entries])),
                                    (2, array("I", [e.cookie for e in entries]))))
    return bytes(out)


def encode_policy_entries(keys: Sequence[MapStateKey], entries: Sequence[MapStateEntry]) -> bytes:
    """`struct policy_entry` of every (key, entry) pair, concatenated (12 bytes each).

    The key gives `prefix_bits`; only what the kernel stores is encoded (no `audit`).
    """
    if len(keys) != len(entries):
        raise ValueError(f"{len(keys)} keys but {len(entries)} entries")
    if not FAST:
        return b"".join(encode_map_state_entry(k, e) for k, e in zip(keys, entries, strict=True))
    first = array("I", [e.proxy_port | e.deny << 16 | ((8 if k.proto else 0) + k.port_prefix) << 24
                        for k, e in zip(keys, entries, strict=True)])
    return _encode_entries(entries, first)


def encode_policy_exact_entries(entries: Sequence[MapStateEntry]) -> bytes:
    """`struct policy_entry` of the entries of exact keys (`prefix_bits` 24), concatenated."""
    if not FAST:
        return b"".join(encode_map_state_entry(_ANY_EXACT_KEY, e) for e in entries)
    bits = _EXACT_BITS << 24
    return _encode_entries(entries, array("I", [e.proxy_port | e.deny << 16 | bits
                                                for e in entries]))


_ANY_EXACT_KEY: Final = MapStateKey(Direction.INGRESS, 0, 6, 0, EXACT_PORT_PREFIX)
"""Stands in for an exact key where only its `prefix_bits` (24) matters."""

__all__ = [
    "FAST",
    "encode_policy_entries",
    "encode_policy_exact_entries",
    "encode_policy_exact_keys",
    "encode_policy_keys",
    "exact_mask",
    "partition",
]
