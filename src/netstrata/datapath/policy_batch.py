"""Policy-map keys and values encoded in bulk, for one BPF_MAP_UPDATE_BATCH of many entries.

The shared codecs (`maps.policy_key_of` + `POLICY_KEY.encode`) build two dataclasses and walk
their fields per entry: about 20 us for a key and its value, two seconds for 100,000. Here
each struct is laid out as 32-bit words (and bytes) and every field is one column, filled with
one list comprehension and strided into a buffer (no per-entry objects besides the column ints), so
100,000 entries take tens of milliseconds.

The word layout is derived from `_layout.py`, not restated: at import the struct formats of
`policy_key` and `policy_entry` are compared with the layout this module packs, and on any
difference (or a big-endian host) `FAST` is False and the shared per-entry codecs are used,
so a layout change can make this slower but never wrong. A unit test checks both paths
byte for byte against the shared codecs.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from typing import Final

from netstrata.datapath.maps import (
    POLICY_ENTRY,
    POLICY_KEY,
    PolicyFlag,
    PolicyPrefix,
    encode_map_state_entry,
    encode_map_state_key,
)
from netstrata.policy.types import MapStateEntry, MapStateKey

_KEY_FIELDS: Final = (
    "prefixlen:I",
    "endpoint_id:I",
    "identity:I",
    "direction:B",
    "proto:B",
    "dport_be:H",
)
_ENTRY_FIELDS: Final = ("proxy_port:H", "flags:B", "prefix_bits:B", "precedence:I", "cookie:I")


def _fields(spec_fields: Sequence[object]) -> tuple[str, ...]:
    return tuple(f"{f.c_name}:{f.fmt}" for f in spec_fields)  # type: ignore[attr-defined]


FAST: Final = (
    sys.byteorder == "little"
    and _fields(POLICY_KEY.fields) == _KEY_FIELDS
    and _fields(POLICY_ENTRY.fields) == _ENTRY_FIELDS
    and array("I").itemsize == 4
)
"""The word layout below matches `_layout.py` on this host (else: per-entry codecs)."""

_EXACT: Final = int(PolicyPrefix.EXACT)
_DENY: Final = int(PolicyFlag.DENY)


def _words(columns: Sequence[array[int] | None], n: int) -> bytearray:
    """n structs of len(columns) native 32-bit words; a None column stays zero (for bytes)."""
    words = array("I", bytes(4 * len(columns) * n))
    for i, column in enumerate(columns):
        if column is not None:
            words[i :: len(columns)] = column
    return bytearray(words.tobytes())


def encode_policy_keys(endpoint_id: int, keys: Sequence[MapStateKey]) -> bytes:
    """`struct policy_key` of every key of `endpoint_id`, concatenated (16 bytes each)."""
    if not FAST:
        return b"".join(encode_map_state_key(endpoint_id, k) for k in keys)
    n = len(keys)
    out = _words(
        (
            array("I", [_EXACT + (8 if k.proto else 0) + k.port_prefix for k in keys]),
            array("I", [endpoint_id]) * n,
            array("I", [k.identity for k in keys]),
            None,
        ),
        n,
    )
    # the last word is four single bytes: direction, proto, dport_be (network order)
    out[12::16] = bytes([k.direction for k in keys])
    out[13::16] = bytes([k.proto for k in keys])
    out[14::16] = bytes([k.port >> 8 for k in keys])
    out[15::16] = bytes([k.port & 0xFF for k in keys])
    return bytes(out)


def encode_policy_entries(keys: Sequence[MapStateKey], entries: Sequence[MapStateEntry]) -> bytes:
    """`struct policy_entry` of every (key, entry) pair, concatenated (12 bytes each).

    The key gives `prefix_bits`; only what the kernel stores is encoded (no `audit`).
    """
    if not FAST:
        return b"".join(encode_map_state_entry(k, e) for k, e in zip(keys, entries, strict=True))
    if len(keys) != len(entries):
        raise ValueError(f"{len(keys)} keys but {len(entries)} entries")
    out = _words(
        (
            None,
            array("I", [e.precedence for e in entries]),
            array("I", [e.cookie for e in entries]),
        ),
        len(keys),
    )
    # the first word: proxy_port (native 16 bits), flags, prefix_bits
    ports = array("H", [e.proxy_port for e in entries]).tobytes()
    out[0::12] = ports[0::2]
    out[1::12] = ports[1::2]
    out[2::12] = bytes([_DENY if e.deny else 0 for e in entries])
    out[3::12] = bytes([(8 if k.proto else 0) + k.port_prefix for k in keys])
    return bytes(out)


__all__ = ["FAST", "encode_policy_entries", "encode_policy_keys"]
