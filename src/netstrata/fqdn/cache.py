"""The node's DNS cache for toFQDNs: which learned IP may stay in the ipcache until when.

Sans-IO (the caller passes the clock). An answer records each of its IPs under the name asked
for, until `now + ttl` (the proxy already raised the TTL to `--tofqdns-min-ttl`, whose default
is 0: the upstream's TTL is honoured, reference §6 item 5). An IP stays while any name holds it
(several names may answer with one address); `expire(now)` removes the names whose time is up
and returns the IPs that no name holds any more: the caller takes them out of the ipcache and
the policy maps. A later answer for the same name and IP extends its time, never shortens it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field


@dataclass
class DNSCache:
    """name -> IP -> expiry (Unix seconds); see the module docstring."""

    _expires: dict[str, dict[str, float]] = field(default_factory=dict)

    def learn(self, name: str, ips: Iterable[str], ttl: float, now: float) -> list[str]:
        """Record an answer; returns the IPs no name held before (new to the ipcache)."""
        known = self.ips()
        held = self._expires.setdefault(name, {})
        until = now + max(0.0, ttl)
        for ip in ips:
            held[ip] = max(held.get(ip, until), until)
        return [ip for ip in held if ip not in known]

    def expire(self, now: float) -> list[str]:
        """Drop every record whose time is up; returns the IPs no name holds any more."""
        before = self.ips()
        for name in list(self._expires):
            held = self._expires[name]
            for ip in [ip for ip, until in held.items() if until <= now]:
                del held[ip]
            if not held:
                del self._expires[name]
        return sorted(before - self.ips())

    def ips(self) -> set[str]:
        """Every IP some name holds."""
        return {ip for held in self._expires.values() for ip in held}

    def names_of(self, ip: str) -> list[str]:
        """The names that hold `ip`."""
        return sorted(name for name, held in self._expires.items() if ip in held)

    def next_expiry(self) -> float | None:
        """When the earliest record runs out (None: nothing held)."""
        return min((u for held in self._expires.values() for u in held.values()), default=None)

    def clear(self) -> None:
        self._expires.clear()


__all__ = ["DNSCache"]
