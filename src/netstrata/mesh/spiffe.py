"""SPIFFE workload identities as the mesh writes them: `spiffe://<td>/ns/<ns>/sa/<sa>`.

Istio names a Kubernetes workload by its trust domain, namespace and service account
(`pkg/spiffe/spiffe.go`); the AuthorizationPolicy `principals` field holds the same ID without
the scheme (`<td>/ns/<ns>/sa/<sa>`), which is what `principal` returns and what the evaluator
receives as `source.principal`. Syntax follows the SPIFFE ID spec §2.1-2.2: a trust domain is
lower-case letters, digits, `.`, `-`, `_`; path segments are letters, digits, `.`, `-`, `_`
and are neither empty, `.` nor `..`. Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final

SCHEME: Final = "spiffe://"
_TRUST_DOMAIN: Final = re.compile(r"[a-z0-9._-]+")
_SEGMENT: Final = re.compile(r"[A-Za-z0-9._-]+")
MAX_ID_LENGTH: Final = 2048
"""SPIFFE ID spec §2.3: implementations must accept at least 2048 bytes; we reject beyond it."""


def check_trust_domain(trust_domain: str) -> str:
    """Return `trust_domain` if it is a valid SPIFFE trust domain name, else raise ValueError."""
    if not trust_domain or _TRUST_DOMAIN.fullmatch(trust_domain) is None:
        raise ValueError(
            f"trust domain: expected lower-case letters, digits, '.', '-', '_', "
            f"found {trust_domain!r}"
        )
    return trust_domain


def _check_segment(what: str, value: str) -> str:
    if value in (".", "..") or _SEGMENT.fullmatch(value) is None:
        raise ValueError(f"{what}: expected letters, digits, '.', '-', '_', found {value!r}")
    return value


@dataclass(frozen=True, slots=True, order=True)
class SpiffeId:
    """The identity of one Kubernetes-style workload (a service account in a namespace)."""

    trust_domain: str
    namespace: str
    service_account: str

    def __post_init__(self) -> None:
        check_trust_domain(self.trust_domain)
        _check_segment("namespace", self.namespace)
        _check_segment("service account", self.service_account)

    @property
    def uri(self) -> str:
        """The URI SAN of the workload certificate."""
        return f"{SCHEME}{self.principal}"

    @property
    def principal(self) -> str:
        """The AuthorizationPolicy principal (`source.principal`): the URI without scheme."""
        return f"{self.trust_domain}/ns/{self.namespace}/sa/{self.service_account}"

    def __str__(self) -> str:
        return self.uri


def parse_spiffe_id(uri: str) -> SpiffeId:
    """Parse `spiffe://<td>/ns/<ns>/sa/<sa>`; raise ValueError naming what is wrong."""
    if len(uri) > MAX_ID_LENGTH:
        raise ValueError(f"SPIFFE ID longer than {MAX_ID_LENGTH} bytes")
    if not uri.startswith(SCHEME):
        raise ValueError(f"SPIFFE ID: expected the scheme {SCHEME!r}, found {uri[:40]!r}")
    parts = uri[len(SCHEME) :].split("/")
    if len(parts) != 5 or parts[1] != "ns" or parts[3] != "sa":
        raise ValueError(f"SPIFFE ID: expected spiffe://<td>/ns/<ns>/sa/<sa>, found {uri!r}")
    return SpiffeId(parts[0], parts[2], parts[4])


__all__ = ["MAX_ID_LENGTH", "SCHEME", "SpiffeId", "check_trust_domain", "parse_spiffe_id"]
