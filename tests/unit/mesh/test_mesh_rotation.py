"""Workload certificate rotation: when a certificate is replaced, with the time passed in."""

from __future__ import annotations

import pytest

from netstrata.mesh.ca import CertificateAuthority
from netstrata.mesh.rotation import RotationPolicy, WorkloadCertificates
from netstrata.mesh.spiffe import SpiffeId

NOW = 1_800_000_000.0
A = SpiffeId("cluster.local", "foo", "a")
B = SpiffeId("cluster.local", "foo", "b")


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("cluster.local", now=NOW)


def test_rotates_at_the_configured_fraction(ca: CertificateAuthority) -> None:
    store = WorkloadCertificates(ca, RotationPolicy(ttl_s=100, rotate_fraction=0.5))
    first = store.current(A, now=NOW)
    assert store.next_rotation() == NOW + 50
    assert store.current(A, now=NOW + 49.9) is first
    second = store.current(A, now=NOW + 50)
    assert second.serial != first.serial and second.issued_at == NOW + 50
    assert store.statistics().rotated == 1


def test_rotate_due_replaces_only_due_certificates(ca: CertificateAuthority) -> None:
    store = WorkloadCertificates(ca, RotationPolicy(ttl_s=100, rotate_fraction=0.8))
    a0, b0 = store.current(A, now=NOW), store.current(B, now=NOW + 30)
    assert store.rotate_due(now=NOW + 79) == ()
    assert store.rotate_due(now=NOW + 80) == (A,)
    assert store.current(A, now=NOW + 80).serial != a0.serial
    assert store.current(B, now=NOW + 80) is b0
    assert store.next_rotation() == NOW + 30 + 80


@pytest.mark.parametrize("kw", [{"ttl_s": 0}, {"rotate_fraction": 0}, {"rotate_fraction": 1.0}])
def test_policy_rejects_nonsense(kw: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        RotationPolicy(**kw)
