"""Domain values <-> kernel map structs: MapState keys and entries, ipcache prefixes.

The policy map is one LPM trie for all endpoints. A `MapStateKey` of endpoint `e` becomes a
`policy_key` whose stored prefix length says which bits are significant (reference §3.1):

    72                       endpoint_id + identity + direction (always exact)
    + 8 if proto != 0        the protocol
    + port_prefix (0..16)    the leading bits of the destination port (network order)

So `proto == 0` (any protocol) stores 72 and names no port, and an ICMP type `t` is the port
`t << 8` with prefix 8, exactly as `policy.types` defines them. Lookups use the full 96 bits.

A key that names the protocol and the whole port (`is_exact`: port_prefix 16, so 96 bits) is
not stored in the trie but in the hash `nst_policy_exact`, as a `policy_exact_key` (the same
fields without `prefixlen`): the kernel looks there first, and a hit is the longest prefix of
the union (see bpf/policy.h). A key's map follows from the key alone, so it never moves.

Only `deny`, `proxy_port`, `precedence` and `cookie` of a `MapStateEntry` reach the kernel;
`kernel_view()` is the entry as it comes back from the kernel.
"""

from __future__ import annotations

from dataclasses import replace
from ipaddress import IPv4Address, IPv4Network
from typing import Final

from netstrata.datapath.maps._layout import (
    IPCACHE_KEY,
    POLICY_ENTRY,
    POLICY_EXACT_KEY,
    POLICY_KEY,
    IpcacheKey,
    PolicyEntry,
    PolicyExactKey,
    PolicyFlag,
    PolicyKey,
    PolicyPrefix,
)
from netstrata.policy.types import Direction, MapStateEntry, MapStateKey

PROTO_BITS: Final = 8
EXACT_PORT_PREFIX: Final = 16


def is_exact(key: MapStateKey) -> bool:
    """True when `key` names the protocol and all 16 port bits: it lives in `nst_policy_exact`.
    (port_prefix 16 implies a protocol: a key with any protocol names no port.)"""
    return key.port_prefix == EXACT_PORT_PREFIX


def policy_key_of(endpoint_id: int, key: MapStateKey) -> PolicyKey:
    """The policy-map key storing `key` for `endpoint_id` (see the module docstring)."""
    return PolicyKey(
        prefixlen=PolicyPrefix.EXACT + key.prefix_bits,
        endpoint_id=endpoint_id,
        identity=key.identity,
        direction=int(key.direction),
        proto=key.proto,
        dport_be=key.port,
    )


def map_state_key_of(pk: PolicyKey) -> tuple[int, MapStateKey]:
    """(endpoint_id, MapStateKey) of a stored policy-map key.

    Raises:
        ValueError: the prefix length cannot come from a MapStateKey (73..79, or out of range).
    """
    bits = pk.prefixlen - PolicyPrefix.EXACT
    if bits == 0:
        return pk.endpoint_id, MapStateKey(Direction(pk.direction), pk.identity)
    if not PROTO_BITS <= bits <= PROTO_BITS + 16:
        raise ValueError(f"policy_key prefixlen {pk.prefixlen} is not 72, or 80..96")
    port_prefix = bits - PROTO_BITS
    return pk.endpoint_id, MapStateKey(
        Direction(pk.direction), pk.identity, pk.proto, pk.dport_be, port_prefix
    )


def policy_exact_key_of(endpoint_id: int, key: MapStateKey) -> PolicyExactKey:
    """The `nst_policy_exact` key storing `key` for `endpoint_id`.

    Raises:
        ValueError: `key` is not exact (it belongs in the trie: `policy_key_of`).
    """
    if not is_exact(key):
        raise ValueError(f"{key} does not name a whole port: it belongs in the policy trie")
    return PolicyExactKey(endpoint_id, key.identity, int(key.direction), key.proto, key.port)


def map_state_key_of_exact(pk: PolicyExactKey) -> tuple[int, MapStateKey]:
    """(endpoint_id, MapStateKey) of a stored `nst_policy_exact` key.

    Raises:
        ValueError: the stored key has no protocol (an exact key always names one).
    """
    if not pk.proto:
        raise ValueError("policy_exact_key proto 0: an exact key always names its protocol")
    return pk.endpoint_id, MapStateKey(
        Direction(pk.direction), pk.identity, pk.proto, pk.dport_be, EXACT_PORT_PREFIX
    )


def lookup_key(endpoint_id: int, identity: int, direction: Direction, proto: int,
               port: int) -> PolicyKey:
    """The full-prefix key a packet looks up (`port`: destination port or ICMP type << 8)."""
    return PolicyKey(PolicyPrefix.FULL, endpoint_id, identity, int(direction), proto, port)


def policy_entry_of(key: MapStateKey, entry: MapStateEntry) -> PolicyEntry:
    """The policy-map value for `entry` stored under `key` (the key gives `prefix_bits`)."""
    return PolicyEntry(
        proxy_port=entry.proxy_port,
        flags=int(PolicyFlag.DENY) if entry.deny else 0,
        prefix_bits=key.prefix_bits,
        precedence=entry.precedence,
        cookie=entry.cookie,
    )


def map_state_entry_of(pe: PolicyEntry) -> MapStateEntry:
    return MapStateEntry(
        deny=bool(pe.flags & PolicyFlag.DENY),
        proxy_port=pe.proxy_port,
        precedence=pe.precedence,
        cookie=pe.cookie,
    )


def kernel_view(entry: MapStateEntry) -> MapStateEntry:
    """`entry` reduced to what the kernel stores (endpoint-wide audit lives on the endpoint)."""
    return replace(entry, audit=False) if entry.audit else entry


def encode_map_state_key(endpoint_id: int, key: MapStateKey) -> bytes:
    return POLICY_KEY.encode(policy_key_of(endpoint_id, key))


def decode_map_state_key(raw: bytes) -> tuple[int, MapStateKey]:
    return map_state_key_of(POLICY_KEY.decode(raw))


def encode_map_state_exact_key(endpoint_id: int, key: MapStateKey) -> bytes:
    return POLICY_EXACT_KEY.encode(policy_exact_key_of(endpoint_id, key))


def decode_map_state_exact_key(raw: bytes) -> tuple[int, MapStateKey]:
    return map_state_key_of_exact(POLICY_EXACT_KEY.decode(raw))


def encode_map_state_entry(key: MapStateKey, entry: MapStateEntry) -> bytes:
    return POLICY_ENTRY.encode(policy_entry_of(key, entry))


def decode_map_state_entry(raw: bytes) -> MapStateEntry:
    return map_state_entry_of(POLICY_ENTRY.decode(raw))


def ipcache_key_of(prefix: IPv4Network) -> IpcacheKey:
    return IpcacheKey(prefix.prefixlen, prefix.network_address)


def network_of(key: IpcacheKey) -> IPv4Network:
    """The prefix of an ipcache key. Raises ValueError if host bits are set."""
    return IPv4Network((key.ip_be, key.prefixlen))


def encode_ipcache_prefix(prefix: IPv4Network) -> bytes:
    return IPCACHE_KEY.encode(ipcache_key_of(prefix))


def decode_ipcache_prefix(raw: bytes) -> IPv4Network:
    return network_of(IPCACHE_KEY.decode(raw))


def parse_prefix(prefix: str | IPv4Network | IPv4Address) -> IPv4Network:
    """Accepts `10.0.0.0/8`, `10.0.0.1` (a /32) or ipaddress values; rejects host bits."""
    if isinstance(prefix, IPv4Network):
        return prefix
    if isinstance(prefix, IPv4Address):
        return IPv4Network((prefix, 32))
    return IPv4Network(prefix)
