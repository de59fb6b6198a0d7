"""`LocalIdentityAllocator`: node-local CIDR and FQDN identities (reference §2.4).

They live in the local scope, 0x01000001..0x01FFFFFF, never leave the node, and need no kvstore:
each node allocates one per prefix its policies reference and per IP its DNS proxy learned.

Labels:

* CIDR `P`: `cidr:<P>` plus the world label. `/0` has no `cidr:` label; it is plain world, which
  is a reserved identity, so `allocate_cidr("0.0.0.0/0")` returns 2 (not a local identity).
* FQDN IP: `fqdn:<selector>` for every selector matching the name, plus the world label. By
  default no `cidr:` label; `with_cidr_label=True` adds `cidr:<ip>/32` (or `/128`).

World label: single-stack by default, so every CIDR/FQDN identity carries `reserved:world`
(Cilium collapses world-ipv4/world-ipv6, 9/10, into world, 2, when the datapath is single-stack).
That keeps "`world` selects every CIDR identity" true with one label and matches the reference
datapath, which knows one world. With `dual_stack=True` the label is `reserved:world-ipv4` or
`reserved:world-ipv6` by family, as Cilium does in dual-stack clusters.

Identities are handed out from a cursor that only moves forward (wrapping), so a released identity
is not reused while stale ipcache or policy entries may still name it.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Iterable
from dataclasses import dataclass

from netstrata.identity._errors import IdentityAllocationError
from netstrata.identity._numeric import LOCAL_IDENTITY_RANGE
from netstrata.identity._reserved import labels_of_reserved, reserved_identity_for
from netstrata.labels import SOURCE_CIDR, SOURCE_FQDN, Label, LabelSet, reserved

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address


def world_label(version: int, dual_stack: bool) -> Label:
    """`reserved:world`, or the per-family label in dual-stack mode."""
    if not dual_stack:
        return reserved("world")
    return reserved("world-ipv4" if version == 4 else "world-ipv6")


def cidr_labels(prefix: str | Network, *, dual_stack: bool = False) -> LabelSet:
    """Labels of the identity for a CIDR prefix (host bits are masked off).

    Raises:
        ValueError: not a prefix.
    """
    net = prefix if not isinstance(prefix, str) else ipaddress.ip_network(prefix, strict=False)
    labels = [world_label(net.version, dual_stack)]
    if net.prefixlen > 0:
        labels.append(Label(SOURCE_CIDR, str(net)))
    return LabelSet(labels)


def fqdn_labels(ip: str | Address, selectors: Iterable[str], *, dual_stack: bool = False,
                with_cidr_label: bool = False) -> LabelSet:
    """Labels of the identity for an IP learned from DNS, matched by `selectors`.

    Raises:
        ValueError: not an IP, or no selector (an IP no selector matches needs no identity).
    """
    addr = ipaddress.ip_address(ip) if isinstance(ip, str) else ip
    names = sorted(set(selectors))
    if not names:
        raise ValueError(f"FQDN identity for {addr} needs at least one selector")
    labels = [world_label(addr.version, dual_stack), *(Label(SOURCE_FQDN, s) for s in names)]
    if with_cidr_label:
        labels.append(Label(SOURCE_CIDR, str(ipaddress.ip_network(addr))))
    return LabelSet(labels)


@dataclass(frozen=True, slots=True)
class LocalAllocatorStatistics:
    """A snapshot for metrics."""

    identities: int
    """Local identities currently allocated."""
    references: int
    """Sum of their reference counts."""
    allocations: int
    """Identities handed out since construction."""


@dataclass(slots=True)
class _Local:
    labels: LabelSet
    count: int


class LocalIdentityAllocator:
    """Reference-counted node-local identities, thread-safe, in memory."""

    def __init__(self, *, dual_stack: bool = False,
                 identity_range: range = LOCAL_IDENTITY_RANGE) -> None:
        """Args:
            dual_stack: use world-ipv4/world-ipv6 labels instead of world (module docstring).
            identity_range: a sub-range of the local scope to allocate from (tests shrink it).
        """
        if (identity_range.step != 1 or not identity_range
                or identity_range.start < LOCAL_IDENTITY_RANGE.start
                or identity_range.stop > LOCAL_IDENTITY_RANGE.stop):
            raise ValueError(f"{identity_range} is not a sub-range of the local identity scope")
        self.dual_stack = dual_stack
        self._range = identity_range
        self._lock = threading.Lock()
        self._by_id: dict[int, _Local] = {}
        self._by_labels: dict[LabelSet, int] = {}
        self._cursor = identity_range.start
        self._allocations = 0

    def allocate(self, labels: LabelSet) -> int:
        """The local identity of `labels`, adding one reference (reserved sets: their id).

        Raises:
            ValueError: empty label set.
            IdentityAllocationError: the local range is exhausted.
        """
        found = reserved_identity_for(labels)
        if found is not None:
            return found
        if not labels:
            raise ValueError("an empty label set has no identity")
        labels = LabelSet(labels)
        with self._lock:
            ident = self._by_labels.get(labels)
            if ident is not None:
                self._by_id[ident].count += 1
                return ident
            ident = self._next_free_locked()
            self._by_id[ident] = _Local(labels, 1)
            self._by_labels[labels] = ident
            self._allocations += 1
            return ident

    def _next_free_locked(self) -> int:
        # caller holds self._lock
        first, size = self._range.start, len(self._range)
        if len(self._by_id) >= size:
            raise IdentityAllocationError(
                f"local identity range {first:#x}..{self._range[-1]:#x} is exhausted: all "
                f"{size} CIDR/FQDN identities of this node are in use")
        for step in range(size):
            candidate = first + (self._cursor - first + step) % size
            if candidate not in self._by_id:
                self._cursor = candidate + 1 if candidate + 1 in self._range else first
                return candidate
        raise AssertionError("unreachable: a free identity exists")

    def allocate_cidr(self, prefix: str | Network) -> int:
        """The identity for a CIDR prefix (see `cidr_labels`); /0 returns world."""
        return self.allocate(cidr_labels(prefix, dual_stack=self.dual_stack))

    def allocate_fqdn(self, ip: str | Address, selectors: Iterable[str], *,
                      with_cidr_label: bool = False) -> int:
        """The identity for a DNS-learned IP matched by `selectors` (see `fqdn_labels`)."""
        return self.allocate(fqdn_labels(ip, selectors, dual_stack=self.dual_stack,
                                         with_cidr_label=with_cidr_label))

    def release(self, identity_or_labels: int | LabelSet) -> bool:
        """Drop one reference; True when the identity was freed. Reserved/unknown: False."""
        with self._lock:
            if isinstance(identity_or_labels, int):
                ident: int | None = identity_or_labels
            else:
                ident = self._by_labels.get(LabelSet(identity_or_labels))
            entry = self._by_id.get(ident) if ident is not None else None
            if ident is None or entry is None:
                return False
            entry.count -= 1
            if entry.count > 0:
                return False
            del self._by_id[ident]
            del self._by_labels[entry.labels]
            return True

    def lookup(self, identity: int) -> LabelSet | None:
        """Labels of a local (or reserved) identity, or None."""
        found = labels_of_reserved(identity)
        if found is not None:
            return found
        with self._lock:
            entry = self._by_id.get(identity)
            return None if entry is None else entry.labels

    def lookup_by_labels(self, labels: LabelSet) -> int | None:
        found = reserved_identity_for(labels)
        if found is not None:
            return found
        with self._lock:
            return self._by_labels.get(labels)

    def lookup_cidr(self, prefix: str | Network) -> int | None:
        return self.lookup_by_labels(cidr_labels(prefix, dual_stack=self.dual_stack))

    def list(self) -> list[tuple[int, LabelSet]]:
        """Allocated local identities, sorted by id."""
        with self._lock:
            return sorted(((i, e.labels) for i, e in self._by_id.items()), key=lambda t: t[0])

    def statistics(self) -> LocalAllocatorStatistics:
        with self._lock:
            return LocalAllocatorStatistics(len(self._by_id),
                                            sum(e.count for e in self._by_id.values()),
                                            self._allocations)
