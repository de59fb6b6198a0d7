"""Workload certificates held by a node proxy, issued on first use and rotated before expiry.

Istio's agent renews a workload certificate once a fixed fraction of its lifetime has passed
(`SECRET_GRACE_PERIOD_RATIO`, 0.5 by default, `security/pkg/nodeagent/cache/secretcache.go`),
so a certificate is always replaced long before a peer could see it expire. `RotationPolicy`
holds that fraction and the TTL; `WorkloadCertificates` is the sans-IO store: every call takes
`now` and nothing here sleeps. The adapter (`mesh.tls.run_rotation`) asks `next_rotation()`
when to wake up and calls `rotate_due(now)` then.

A rotation never touches established connections: TLS authenticated them once, at the handshake.
Only handshakes after the rotation present the new certificate.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, final

from netstrata.mesh.ca import DEFAULT_WORKLOAD_TTL_S, CertificateAuthority, IssuedCertificate
from netstrata.mesh.spiffe import SpiffeId

DEFAULT_ROTATE_FRACTION: Final = 0.5


@dataclass(frozen=True, slots=True)
class RotationPolicy:
    """How long workload certificates live and when they are replaced."""

    ttl_s: float = DEFAULT_WORKLOAD_TTL_S
    rotate_fraction: float = DEFAULT_ROTATE_FRACTION
    """Fraction of the lifetime after which a certificate is replaced (0 < f < 1)."""

    def __post_init__(self) -> None:
        if self.ttl_s <= 0:
            raise ValueError(f"certificate TTL: expected > 0 seconds, found {self.ttl_s}")
        if not 0 < self.rotate_fraction < 1:
            raise ValueError(f"rotation fraction: expected 0 < f < 1, found {self.rotate_fraction}")

    def rotate_at(self, cert: IssuedCertificate) -> float:
        """Unix seconds at which `cert` is due for replacement."""
        return cert.issued_at + self.rotate_fraction * (cert.not_after - cert.issued_at)


@dataclass(frozen=True, slots=True)
class CertificateStatistics:
    """A snapshot for metrics."""

    identities: int
    issued: int
    rotated: int
    next_rotation: float | None


@final
class WorkloadCertificates:
    """The current certificate of every workload identity this proxy speaks for."""

    def __init__(self, ca: CertificateAuthority, policy: RotationPolicy | None = None) -> None:
        self.ca = ca
        self.policy = policy or RotationPolicy()
        self._current: dict[SpiffeId, IssuedCertificate] = {}
        self._issued = 0
        self._rotated = 0

    def _issue(self, identity: SpiffeId, now: float) -> IssuedCertificate:
        cert = self.ca.issue(identity, now=now, ttl_s=self.policy.ttl_s)
        self._current[identity] = cert
        self._issued += 1
        return cert

    def current(self, identity: SpiffeId, *, now: float) -> IssuedCertificate:
        """The certificate to present for `identity` in a handshake at `now`.

        Issues one on first use, and a fresh one when the held one is due (so a proxy that
        missed a rotation tick never presents a certificate past its rotation point).
        """
        cert = self._current.get(identity)
        if cert is None:
            return self._issue(identity, now)
        if now >= self.policy.rotate_at(cert):
            self._rotated += 1
            return self._issue(identity, now)
        return cert

    def rotate_due(self, *, now: float) -> tuple[SpiffeId, ...]:
        """Replace every certificate due at `now`; returns the rotated identities, sorted."""
        due = sorted(i for i, c in self._current.items() if now >= self.policy.rotate_at(c))
        for identity in due:
            self._rotated += 1
            self._issue(identity, now)
        return tuple(due)

    def forget(self, identity: SpiffeId) -> None:
        """Drop a workload that left the node; its next use issues afresh."""
        self._current.pop(identity, None)

    def next_rotation(self) -> float | None:
        """The earliest rotation point of the held certificates; None when none is held."""
        return min((self.policy.rotate_at(c) for c in self._current.values()), default=None)

    def statistics(self) -> CertificateStatistics:
        return CertificateStatistics(
            len(self._current), self._issued, self._rotated, self.next_rotation()
        )


__all__ = [
    "DEFAULT_ROTATE_FRACTION",
    "CertificateStatistics",
    "RotationPolicy",
    "WorkloadCertificates",
]
