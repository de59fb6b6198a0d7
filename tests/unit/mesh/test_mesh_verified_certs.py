"""VerifiedCertificates keeps what a peer certificate proved, but never its validity."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.serialization import Encoding

from netstrata.mesh.ca import CertificateAuthority, PeerCertificateError, VerifiedCertificates
from netstrata.mesh.spiffe import SpiffeId

NOW = 1_800_000_000.0


def test_a_kept_certificate_is_still_refused_once_expired():
    ca = CertificateAuthority.create("cluster.local", now=NOW)
    cert = ca.issue(SpiffeId("cluster.local", "foo", "sleep"), now=NOW, ttl_s=600)
    der = cert.certificate.public_bytes(Encoding.DER)
    peers = VerifiedCertificates(ca.bundle())
    assert peers.verify(der, now=NOW).principal == "cluster.local/ns/foo/sa/sleep"
    assert peers.verify(der, now=NOW + 60).principal == "cluster.local/ns/foo/sa/sleep"
    with pytest.raises(PeerCertificateError, match="not valid now"):
        peers.verify(der, now=NOW + 3600)


def test_a_certificate_of_another_ca_is_refused_every_time():
    ours = CertificateAuthority.create("cluster.local", now=NOW)
    theirs = CertificateAuthority.create("cluster.local", now=NOW)
    der = theirs.issue(SpiffeId("cluster.local", "foo", "sleep"), now=NOW).certificate.public_bytes(
        Encoding.DER
    )
    peers = VerifiedCertificates(ours.bundle())
    for _ in range(2):
        with pytest.raises(PeerCertificateError, match="not signed"):
            peers.verify(der, now=NOW)
