"""The mesh CA: workload certificate fields, persistence, and peer certificate checks."""

from __future__ import annotations

import multiprocessing
import stat
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from netstrata.mesh.ca import (
    BACKDATE_S,
    CertificateAuthority,
    PeerCertificateError,
    verify_workload_certificate,
)
from netstrata.mesh.spiffe import SpiffeId, parse_spiffe_id

NOW = 1_800_000_000.0
SLEEP = SpiffeId("cluster.local", "foo", "sleep")


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create("cluster.local", now=NOW)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def test_workload_certificate_fields(ca: CertificateAuthority) -> None:
    issued = ca.issue(SLEEP, now=NOW, ttl_s=3600)
    cert = issued.certificate
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    assert san.critical  # the subject is empty, so the SAN must be critical (RFC 5280)
    assert san.value.get_values_for_type(x509.UniformResourceIdentifier) == [
        "spiffe://cluster.local/ns/foo/sa/sleep"
    ]
    assert len(cert.subject) == 0
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH}
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert cert.not_valid_before_utc.timestamp() == NOW - BACKDATE_S
    assert cert.not_valid_after_utc.timestamp() == NOW + 3600
    assert isinstance(issued.private_key.curve, ec.SECP256R1)
    assert cert.issuer == ca.certificate.subject
    root_bc = ca.certificate.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert root_bc.ca and root_bc.path_length == 0


def test_issue_refuses_foreign_trust_domain_and_bad_ttl(ca: CertificateAuthority) -> None:
    with pytest.raises(ValueError, match="cannot issue"):
        ca.issue(SpiffeId("other.local", "foo", "sleep"), now=NOW)
    with pytest.raises(ValueError, match="TTL"):
        ca.issue(SLEEP, now=NOW, ttl_s=0)


@pytest.mark.parametrize(
    "bad",
    [
        "http://cluster.local/ns/a/sa/b",
        "spiffe://Cluster/ns/a/sa/b",
        "spiffe://td/ns/a",
        "spiffe://td/ns/../sa/b",
        "spiffe://td/namespace/a/sa/b",
    ],
)
def test_spiffe_id_rejects_malformed(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_spiffe_id(bad)


def test_spiffe_id_round_trip() -> None:
    assert parse_spiffe_id(SLEEP.uri) == SLEEP
    assert SLEEP.principal == "cluster.local/ns/foo/sa/sleep"


def test_ca_persists_in_state_dir(tmp_path) -> None:
    first = CertificateAuthority.load_or_create(tmp_path, "cluster.local", now=NOW)
    again = CertificateAuthority.load_or_create(tmp_path, "cluster.local", now=NOW + 10)
    assert again.certificate == first.certificate
    key_file = tmp_path / "cluster.local" / "ca-key.pem"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    # a certificate issued by the reloaded CA verifies against the first CA's bundle
    issued = again.issue(SLEEP, now=NOW)
    assert verify_workload_certificate(_der(issued.certificate), first.bundle(), now=NOW) == SLEEP


def _root_pem(state_dir: str) -> bytes:
    ca = CertificateAuthority.load_or_create(Path(state_dir), "cluster.local", now=NOW)
    return ca.certificate.public_bytes(Encoding.PEM)


def test_agents_starting_at_once_share_one_root(tmp_path) -> None:
    # one process per node agent, as in a `lab up` lab: all must load the same root
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(4) as pool:
        roots = pool.map(_root_pem, [str(tmp_path)] * 8)
    assert len(set(roots)) == 1


def test_ca_load_refuses_root_of_another_trust_domain(tmp_path) -> None:
    CertificateAuthority.load_or_create(tmp_path, "cluster.local", now=NOW)
    (tmp_path / "other.local").mkdir()
    for name in ("ca-key.pem", "ca-cert.pem"):
        (tmp_path / "other.local" / name).write_bytes(
            (tmp_path / "cluster.local" / name).read_bytes()
        )
    with pytest.raises(ValueError, match="expected a root for spiffe://other.local"):
        CertificateAuthority.load_or_create(tmp_path, "other.local", now=NOW)


def test_verify_accepts_own_and_alias_trust_domain(ca: CertificateAuthority) -> None:
    west = CertificateAuthority.create("west.example", now=NOW)
    bundle = ca.bundle([west])
    assert bundle.trust_domains == ("cluster.local", "west.example")
    remote = west.issue(SpiffeId("west.example", "bar", "client"), now=NOW)
    got = verify_workload_certificate(_der(remote.certificate), bundle, now=NOW)
    assert got.principal == "west.example/ns/bar/sa/client"


def test_verify_refuses_untrusted_trust_domain(ca: CertificateAuthority) -> None:
    evil = CertificateAuthority.create("evil.example", now=NOW)
    cert = evil.issue(SpiffeId("evil.example", "foo", "sleep"), now=NOW).certificate
    with pytest.raises(PeerCertificateError, match="evil.example' is not trusted"):
        verify_workload_certificate(_der(cert), ca.bundle(), now=NOW)


def test_verify_refuses_identity_minted_by_another_domains_root(ca: CertificateAuthority) -> None:
    # west is trusted for west.example only: a cert it signs claiming cluster.local is refused
    west = CertificateAuthority.create("west.example", now=NOW)
    forged_ca = CertificateAuthority("cluster.local", west.certificate, west.private_key)
    forged = forged_ca.issue(SLEEP, now=NOW).certificate
    with pytest.raises(PeerCertificateError, match="not signed by a root of cluster.local"):
        verify_workload_certificate(_der(forged), ca.bundle([west]), now=NOW)


def test_verify_refuses_expired_and_not_yet_valid(ca: CertificateAuthority) -> None:
    cert = ca.issue(SLEEP, now=NOW, ttl_s=60).certificate
    assert verify_workload_certificate(_der(cert), ca.bundle(), now=NOW + 59) == SLEEP
    for when in (NOW + 61, NOW - BACKDATE_S - 1):
        with pytest.raises(PeerCertificateError, match="not valid now"):
            verify_workload_certificate(_der(cert), ca.bundle(), now=when)
