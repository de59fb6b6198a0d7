"""Value types of resolved policy: what `policy/` hands to every datapath.

A resolved endpoint policy is a MapState: a set of (key -> entry) pairs with Cilium's policy-map
semantics (reference §3.1-3.2), plus the L7 rule sets for ports that redirect to the proxy.
The kernel encodes these keys and entries byte for byte (`datapath/maps`); the reference
datapath looks them up in Python with the same algorithm (`datapath/reference`). Nothing here
knows about eBPF, sockets or asyncio.

Key semantics (an LPM over the protocol and port, identity and direction always exact):

* `identity == 0` means any peer identity ("L4-only" entries).
* `proto == 0` means any protocol; then `port` and `port_prefix` are 0.
* `port_prefix` is how many leading bits of the 16-bit destination port are significant:
  16 = exactly `port`, 0 = any port, k = the aligned block of 2**(16-k) ports starting at
  `port`. Port ranges are split into such blocks, as Cilium does.
* For ICMP/ICMPv6 the "port" is the ICMP type in the high byte (`type << 8`, prefix 8), as in
  Cilium.

Entry semantics: `deny` entries always win (the resolver also rewrites every allow that a deny
covers into a deny, so an LPM lookup can never prefer a narrower allow). Among allows the higher
`precedence` wins (a proxy redirect outranks a plain allow), then the longer protocol/port prefix,
then the identity-specific entry. No entry at all means `POLICY_DENIED` (133); a chosen deny
means `POLICY_DENY` (181).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import IntEnum
from typing import Final, NewType

NumericIdentity = NewType("NumericIdentity", int)
"""A 32-bit security identity. Bits 24-31: scope (0 global, 1 local CIDR/FQDN, 2 remote-node);
for global identities bits 16-23 hold the cluster id (default max-connected-clusters 255) and
bits 0-15 the cluster-local id. 0 is invalid; 1-14 are reserved (reference §2)."""

ANY_IDENTITY: Final = NumericIdentity(0)


class Direction(IntEnum):
    INGRESS = 0
    EGRESS = 1


class Proto(IntEnum):
    """IANA protocol numbers used in policy keys; ANY (0) is the wildcard."""

    ANY = 0
    ICMP = 1
    IGMP = 2
    TCP = 6
    UDP = 17
    ICMPV6 = 58
    VRRP = 112
    SCTP = 132


PROTO_BY_NAME: Final[Mapping[str, Proto]] = {p.name: p for p in Proto}

# Precedence of entries (higher wins among allows; deny always wins). Mirrors Cilium 1.19's
# low byte: 255 deny, 2-254 proxy listener priority, 1 plain allow, 0 synthetic allow-all.
PRECEDENCE_DENY: Final = 255
PRECEDENCE_REDIRECT: Final = 100
# allow-localhost entries outrank redirects so host traffic (kubelet probes) bypasses L7 filtering
# (reference §1.10 item 5); denies still win.
PRECEDENCE_LOCALHOST: Final = 254
PRECEDENCE_ALLOW: Final = 1
PRECEDENCE_DEFAULT_ALLOW: Final = 0


class MatchType(IntEnum):
    """Hubble's `policy_match_type` (reference §4.1)."""

    NONE = 0
    L3_ONLY = 1
    L3_L4 = 2
    L4_ONLY = 3
    ALL = 4
    L3_PROTO = 5
    PROTO_ONLY = 6


@dataclass(frozen=True, slots=True, order=True)
class MapStateKey:
    """One policy-map key. See the module docstring for the wildcard rules."""

    direction: Direction
    identity: int
    proto: int = 0
    port: int = 0
    port_prefix: int = 0

    def __post_init__(self) -> None:
        if self.proto == 0 and (self.port or self.port_prefix):
            raise ValueError("a key with any protocol cannot name a port")
        if not 0 <= self.port_prefix <= 16:
            raise ValueError("port_prefix must be 0..16")
        if self.port_prefix < 16 and self.port & ((1 << (16 - self.port_prefix)) - 1):
            raise ValueError("port must be aligned to its prefix")

    @property
    def prefix_bits(self) -> int:
        """Significant protocol+port bits (0..24): the LPM prefix beyond the exact part."""
        return (8 if self.proto else 0) + self.port_prefix

    def covers(self, other: MapStateKey) -> bool:
        """True when every packet matching `other` also matches this key."""
        if self.direction != other.direction:
            return False
        if self.identity not in (0, other.identity):
            return False
        if self.proto == 0:
            return True
        if self.proto != other.proto or other.port_prefix < self.port_prefix:
            return False
        shift = 16 - self.port_prefix
        return (other.port >> shift) == (self.port >> shift) if self.port_prefix else True

    def matches(self, identity: int, proto: int, port: int) -> bool:
        if self.identity not in (0, identity):
            return False
        if self.proto == 0:
            return True
        if self.proto != proto:
            return False
        shift = 16 - self.port_prefix
        return self.port_prefix == 0 or (port >> shift) == (self.port >> shift)

    def match_type(self) -> MatchType:
        if self.identity == 0:
            if self.proto == 0:
                return MatchType.ALL
            return MatchType.L4_ONLY if self.port_prefix else MatchType.PROTO_ONLY
        if self.proto == 0:
            return MatchType.L3_ONLY
        return MatchType.L3_L4 if self.port_prefix else MatchType.L3_PROTO


@dataclass(frozen=True, slots=True)
class MapStateEntry:
    """What a key decides. Only `deny`, `proxy_port`, `precedence` and `cookie` reach the kernel."""

    deny: bool = False
    proxy_port: int = 0
    """Non-zero: redirect to the node proxy listener on this port (host order)."""
    precedence: int = PRECEDENCE_ALLOW
    cookie: int = 0
    """Names the deciding rule(s); `ResolvedPolicy.cookies` maps it to text."""
    audit: bool = False
    """Reserved for per-entry audit; endpoint-wide audit mode lives on the endpoint."""

    @property
    def is_redirect(self) -> bool:
        return self.proxy_port != 0 and not self.deny


@dataclass(frozen=True, slots=True)
class L7Entry:
    """One `{remote identities, L7 rules}` pair the proxy checks for a redirected port.

    `identities` None means any peer. `rules` None means "no L7 restriction" (every request of
    this parser allowed); otherwise a tuple of api rule objects (HTTPRule, KafkaRule, DNSRule),
    OR-ed. `cookie` names the rule that contributed this entry.
    """

    identities: frozenset[int] | None
    rules: tuple[object, ...] | None
    cookie: int = 0


@dataclass(frozen=True, slots=True)
class L7Policy:
    """The L7 rule set of one redirected (direction, proto, port) of one endpoint."""

    parser: str
    """`http`, `kafka` or `dns`."""
    entries: tuple[L7Entry, ...]


@dataclass(frozen=True, slots=True)
class ResolvedPolicy:
    """The immutable policy of one endpoint at one repository revision."""

    endpoint_id: int
    identity: int
    revision: int
    entries: Mapping[MapStateKey, MapStateEntry]
    ingress_enforced: bool
    egress_enforced: bool
    audit: bool = False
    l7: Mapping[tuple[Direction, int, int, int], L7Policy] = field(default_factory=dict)
    """Keyed by (direction, proto, port, port_prefix) of every port block whose entries redirect."""
    cookies: Mapping[int, str] = field(default_factory=dict)
    """Rule cookie -> `CiliumNetworkPolicy ns/name ingress[0]`-style description."""
    sources: Mapping[MapStateKey, tuple[str, ...]] = field(default_factory=dict)
    """Every element that contributed to a key (for `policy get` and explanations)."""

    def find_l7(self, direction: Direction, proto: int, port: int) -> L7Policy | None:
        """The L7 rule set covering a redirected destination port, if any."""
        best: tuple[int, L7Policy] | None = None
        for (d, p, start, prefix), pol in self.l7.items():
            if d != direction or p != proto:
                continue
            shift = 16 - prefix
            if prefix and (port >> shift) != (start >> shift):
                continue
            if best is None or prefix > best[0]:
                best = (prefix, pol)
        return best[1] if best else None


__all__ = [
    "ANY_IDENTITY",
    "PRECEDENCE_ALLOW",
    "PRECEDENCE_DEFAULT_ALLOW",
    "PRECEDENCE_DENY",
    "PRECEDENCE_LOCALHOST",
    "PRECEDENCE_REDIRECT",
    "PROTO_BY_NAME",
    "Direction",
    "L7Entry",
    "L7Policy",
    "MapStateEntry",
    "MapStateKey",
    "MatchType",
    "NumericIdentity",
    "Proto",
    "ResolvedPolicy",
]
