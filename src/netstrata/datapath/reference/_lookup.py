"""The policy-map lookup, in Python, exactly as the kernel program does it.

Precedence (the kernel's `policy_lookup()` in `bpf/policy.h` carries the same numbered list):

1. A = longest-prefix match among entries for the exact peer identity.
2. B = longest-prefix match among entries for identity 0 (any peer).
3. A is a deny -> DENY (A).  B is a deny -> DENY (B).
4. Neither found -> DROP, reason POLICY_DENIED.
5. Only one found -> that one.
6. Both allow: higher precedence wins; then the longer protocol/port prefix; then A.

The resolver guarantees that an allow covered by any deny is itself a deny, so step 3 never misses a
broader deny hidden behind a longer allow of the same identity.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from netstrata.datapath.drop_reasons import DropReason
from netstrata.policy.types import Direction, MapStateEntry, MapStateKey


@dataclass(frozen=True, slots=True)
class LookupResult:
    allowed: bool
    key: MapStateKey | None
    entry: MapStateEntry | None
    drop_reason: DropReason | None = None

    @property
    def proxy_port(self) -> int:
        return self.entry.proxy_port if (self.allowed and self.entry) else 0


def _longest(
    entries: Mapping[MapStateKey, MapStateEntry],
    direction: Direction,
    identity: int,
    proto: int,
    port: int,
) -> tuple[MapStateKey, MapStateEntry] | None:
    best: tuple[MapStateKey, MapStateEntry] | None = None
    for key, entry in entries.items():
        if key.direction != direction or key.identity != identity:
            continue
        if not key.matches(identity, proto, port):
            continue
        if best is None or key.prefix_bits > best[0].prefix_bits:
            best = (key, entry)
    return best


def policy_lookup(
    entries: Mapping[MapStateKey, MapStateEntry],
    direction: Direction,
    identity: int,
    proto: int,
    port: int,
) -> LookupResult:
    """Decide one packet: `port` is the destination port (or ICMP type << 8), host order."""
    a = _longest(entries, direction, identity, proto, port) if identity else None
    b = _longest(entries, direction, 0, proto, port)
    for hit in (a, b):  # 3.
        if hit is not None and hit[1].deny:
            return LookupResult(False, hit[0], hit[1], DropReason.POLICY_DENY)
    if a is None and b is None:  # 4.
        return LookupResult(False, None, None, DropReason.POLICY_DENIED)
    if a is None or b is None:  # 5.
        key, entry = a or b  # type: ignore[misc]
        return LookupResult(True, key, entry)
    if a[1].precedence != b[1].precedence:  # 6.
        key, entry = a if a[1].precedence > b[1].precedence else b
    elif a[0].prefix_bits != b[0].prefix_bits:
        key, entry = a if a[0].prefix_bits > b[0].prefix_bits else b
    else:
        key, entry = a
    return LookupResult(True, key, entry)
