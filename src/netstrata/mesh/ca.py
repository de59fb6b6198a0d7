"""The built-in mesh CA: one self-signed EC P-256 root per trust domain, issuing workload
certificates with a single SPIFFE URI SAN, and the trust bundle that verifies them.

What a workload certificate looks like follows Istio's CA (`security/pkg/pki/util/generate_cert.go`)
and the X.509-SVID spec (SPIFFE `X509-SVID.md` §4): an empty subject, exactly one URI SAN
marked critical (because the subject is empty, RFC 5280 §4.2.1.6), `CA:FALSE`, key usage
digitalSignature + keyEncipherment, extended key usage serverAuth + clientAuth (every workload is
both a client and a server in the mesh). The root carries `CA:TRUE, pathlen:0` and the SPIFFE
ID of its trust domain, `spiffe://<td>`, as its URI SAN.

A trust bundle maps each trust domain to its roots: the local one plus those of
`trustDomainAliases` (other clusters or a migrated domain). A peer is accepted only when its
certificate chains to a root *of its own trust domain*, so one cluster's CA cannot mint
identities in another's domain (SPIFFE Trust Domain and Bundle spec §4).

Time is passed in (`now`, Unix seconds) everywhere; only `load_or_create` touches the disk.
"""

from __future__ import annotations

import datetime
import fcntl
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from netstrata.mesh.spiffe import SCHEME, SpiffeId, check_trust_domain, parse_spiffe_id

ROOT_TTL_S: Final = 10 * 365 * 86400
"""Istio's self-signed root lives ten years (`CITADEL_SELF_SIGNED_CA_CERT_TTL`)."""
DEFAULT_WORKLOAD_TTL_S: Final = 86400
"""Istio's default workload certificate lifetime (`DEFAULT_WORKLOAD_CERT_TTL`, 24 h)."""
BACKDATE_S: Final = 60
"""Certificates start a minute in the past so a peer whose clock lags slightly accepts them
(Istio backdates by the same idea, `security/pkg/pki/ca`)."""
CA_KEY_FILE: Final = "ca-key.pem"
CA_CERT_FILE: Final = "ca-cert.pem"
CA_LOCK_FILE: Final = ".lock"
"""Held (flock) while a CA is loaded or created, so concurrent agents share one root."""


def _utc(ts: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(ts, datetime.UTC)


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


class PeerCertificateError(ValueError):
    """A peer's certificate is not acceptable; `str()` says why (never the key material)."""


@dataclass(frozen=True, slots=True)
class IssuedCertificate:
    """A workload's key pair and certificate, as a proxy presents it."""

    identity: SpiffeId
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)
    not_before: float
    """Unix seconds (backdated by BACKDATE_S)."""
    not_after: float
    """Unix seconds."""
    issued_at: float
    """The `now` it was issued at; rotation fractions count from here."""

    @property
    def serial(self) -> int:
        return self.certificate.serial_number

    def chain_pem(self) -> bytes:
        """Leaf certificate then key, PEM, the form `ssl.SSLContext.load_cert_chain` reads."""
        return _pem(self.certificate) + _key_pem(self.private_key)


@dataclass(frozen=True, slots=True)
class TrustBundle:
    """Roots by trust domain; the first trust domain is the local one, the others aliases."""

    roots: Mapping[str, tuple[x509.Certificate, ...]]

    @property
    def trust_domains(self) -> tuple[str, ...]:
        return tuple(self.roots)

    def pem(self) -> str:
        """Every root, PEM, for `ssl.SSLContext.load_verify_locations(cadata=...)`."""
        return "".join(_pem(c).decode() for certs in self.roots.values() for c in certs)

    def merged(self, other: TrustBundle) -> TrustBundle:
        """This bundle plus the trust domains and roots of `other` (local domain kept first)."""
        roots = {td: tuple(certs) for td, certs in self.roots.items()}
        for td, certs in other.roots.items():
            roots[td] = roots.get(td, ()) + tuple(c for c in certs if c not in roots.get(td, ()))
        return TrustBundle(roots)


@dataclass(frozen=True, slots=True)
class CertificateAuthority:
    """The CA of one trust domain."""

    trust_domain: str
    certificate: x509.Certificate
    private_key: ec.EllipticCurvePrivateKey = field(repr=False)

    @classmethod
    def create(cls, trust_domain: str, *, now: float) -> CertificateAuthority:
        """A fresh self-signed root for `trust_domain` (raises ValueError on a bad name)."""
        check_trust_domain(trust_domain)
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, trust_domain),
                x509.NameAttribute(NameOID.COMMON_NAME, "netstrata mesh root CA"),
            ]
        )
        ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_utc(now - BACKDATE_S))
            .not_valid_after(_utc(now + ROOT_TTL_S))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(ski, critical=False)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier(SCHEME + trust_domain)]
                ),
                critical=False,
            )
            .sign(key, hashes.SHA256())
        )
        return cls(trust_domain, cert, key)

    @classmethod
    def load_or_create(
        cls, state_dir: Path, trust_domain: str, *, now: float
    ) -> CertificateAuthority:
        """The CA kept under `state_dir/<trust_domain>/`, created (key mode 0600) if absent.

        Raises:
            ValueError: the stored files do not hold an EC key and a root for `trust_domain`.
        """
        directory = state_dir / check_trust_domain(trust_domain)
        key_path, cert_path = directory / CA_KEY_FILE, directory / CA_CERT_FILE
        directory.mkdir(parents=True, exist_ok=True)
        # several agents (one process per node) may start at once: the first to hold the lock
        # creates the root, the others load it (two roots for one trust domain would split
        # the mesh)
        lock = os.open(directory / CA_LOCK_FILE, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if key_path.exists() and cert_path.exists():
                return cls._load(trust_domain, key_path, cert_path)
            ca = cls.create(trust_domain, now=now)
            # the key file is created 0600 before a byte is written, so it is never
            # world-readable
            fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(_key_pem(ca.private_key))
            cert_path.write_bytes(_pem(ca.certificate))
            return ca
        finally:
            os.close(lock)  # releases the lock

    @classmethod
    def _load(cls, trust_domain: str, key_path: Path, cert_path: Path) -> CertificateAuthority:
        try:
            key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
            cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        except ValueError as exc:
            raise ValueError(f"{key_path.parent}: unreadable CA key or certificate: {exc}") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{key_path}: expected an EC private key, found {type(key).__name__}")
        uris = _uri_sans(cert)
        if uris != [SCHEME + trust_domain]:
            raise ValueError(
                f"{cert_path}: expected a root for {SCHEME}{trust_domain}, found {uris}"
            )
        return cls(trust_domain, cert, key)

    def bundle(
        self,
        aliases: Iterable[CertificateAuthority | tuple[str, x509.Certificate]] = (),
    ) -> TrustBundle:
        """This CA's root first, then alias trust domains (their CA or `(td, root)` pairs)."""
        roots: dict[str, tuple[x509.Certificate, ...]] = {self.trust_domain: (self.certificate,)}
        for alias in aliases:
            td, root = (
                (alias.trust_domain, alias.certificate)
                if isinstance(alias, CertificateAuthority)
                else alias
            )
            roots[td] = roots.get(td, ()) + (root,)
        return TrustBundle(roots)

    def issue(
        self, identity: SpiffeId, *, now: float, ttl_s: float = DEFAULT_WORKLOAD_TTL_S
    ) -> IssuedCertificate:
        """A workload certificate for `identity`, valid from now-BACKDATE_S to now+ttl_s."""
        if identity.trust_domain != self.trust_domain:
            raise ValueError(f"CA of {self.trust_domain} cannot issue {identity.uri}")
        if ttl_s <= 0:
            raise ValueError(f"certificate TTL: expected > 0 seconds, found {ttl_s}")
        key = ec.generate_private_key(ec.SECP256R1())
        not_before, not_after = now - BACKDATE_S, now + ttl_s
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(_utc(not_before))
            .not_valid_after(_utc(not_after))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=True,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=False,
                    crl_sign=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(
                x509.ExtendedKeyUsage(
                    [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
                ),
                critical=False,
            )
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.private_key.public_key()),
                critical=False,
            )
            .add_extension(
                x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity.uri)]),
                critical=True,
            )
            .sign(self.private_key, hashes.SHA256())
        )
        return IssuedCertificate(identity, cert, key, not_before, not_after, now)


def _uri_sans(cert: x509.Certificate) -> list[str]:
    try:
        ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return []
    return list(ext.value.get_values_for_type(x509.UniformResourceIdentifier))


def _signed_by(cert: x509.Certificate, root: x509.Certificate) -> bool:
    if cert.issuer != root.subject:
        return False
    public = root.public_key()
    if not isinstance(public, ec.EllipticCurvePublicKey):
        return False  # the mesh CA only ever uses EC P-256 roots
    algorithm = cert.signature_hash_algorithm
    if algorithm is None:
        return False
    try:
        public.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))
    except InvalidSignature:
        return False
    return True


def verify_workload_certificate(der: bytes, bundle: TrustBundle, *, now: float) -> SpiffeId:
    """Check a peer's leaf certificate against the bundle and return its SPIFFE ID.

    The TLS library has already checked that the chain reaches *some* bundle root; this adds
    what it cannot know: exactly one SPIFFE URI SAN, a trust domain in the bundle, a signature
    by a root of that same trust domain, and validity at `now`.

    Raises:
        PeerCertificateError: naming the first failed check.
    """
    try:
        cert = x509.load_der_x509_certificate(der)
    except ValueError as exc:
        raise PeerCertificateError(f"unparsable peer certificate: {exc}") from exc
    uris = [u for u in _uri_sans(cert) if u.startswith(SCHEME)]
    if len(uris) != 1:
        raise PeerCertificateError(f"expected exactly one SPIFFE URI SAN, found {len(uris)}")
    try:
        identity = parse_spiffe_id(uris[0])
    except ValueError as exc:
        raise PeerCertificateError(str(exc)) from exc
    roots = bundle.roots.get(identity.trust_domain)
    if not roots:
        raise PeerCertificateError(
            f"trust domain {identity.trust_domain!r} is not trusted "
            f"(bundle: {', '.join(bundle.trust_domains)})"
        )
    if not any(_signed_by(cert, root) for root in roots):
        raise PeerCertificateError(
            f"{identity.uri} is not signed by a root of {identity.trust_domain}"
        )
    if not cert.not_valid_before_utc.timestamp() <= now <= cert.not_valid_after_utc.timestamp():
        raise PeerCertificateError(
            f"certificate of {identity.uri} is not valid now (expired or not yet valid)"
        )
    return identity


@dataclass(frozen=True, slots=True)
class _Verified:
    identity: SpiffeId
    not_before: float
    not_after: float


class VerifiedCertificates:
    """`verify_workload_certificate` with its result kept per certificate (DER bytes).

    A node proxy sees the same few peer certificates on every new connection; parsing one and
    checking its signature costs more than the rest of connection setup in Python. What does
    not depend on time (SAN, trust domain, the root's signature) is kept for the bundle this
    object was made with; validity at `now` is checked on every call. Failures are not kept.
    """

    __slots__ = ("_known", "bundle", "limit")

    def __init__(self, bundle: TrustBundle, limit: int = 1024) -> None:
        self.bundle = bundle
        self.limit = limit
        self._known: dict[bytes, _Verified] = {}

    def verify(self, der: bytes, *, now: float) -> SpiffeId:
        """As `verify_workload_certificate(der, self.bundle, now=now)`."""
        known = self._known.get(der)
        if known is None:
            identity = verify_workload_certificate(der, self.bundle, now=now)
            cert = x509.load_der_x509_certificate(der)
            known = _Verified(identity, cert.not_valid_before_utc.timestamp(),
                              cert.not_valid_after_utc.timestamp())
            if len(self._known) >= self.limit:
                self._known.clear()
            self._known[der] = known
        if not known.not_before <= now <= known.not_after:
            raise PeerCertificateError(
                f"certificate of {known.identity.uri} is not valid now (expired or not yet valid)"
            )
        return known.identity


__all__ = [
    "BACKDATE_S",
    "CA_CERT_FILE",
    "CA_KEY_FILE",
    "DEFAULT_WORKLOAD_TTL_S",
    "ROOT_TTL_S",
    "CertificateAuthority",
    "IssuedCertificate",
    "PeerCertificateError",
    "TrustBundle",
    "VerifiedCertificates",
    "verify_workload_certificate",
]
