"""TLS 1.3 contexts for the mesh tunnel, built from the current workload certificates.

Both ends require a certificate from the peer (`CERT_REQUIRED`) chained to a root of the
trust bundle; host names are not checked (`check_hostname=False`): mesh peers are named by
the SPIFFE URI SAN, which `mesh.ca.verify_workload_certificate` checks after the handshake.

Rotation without restarting a listener: the server context's SNI callback, which OpenSSL calls
for every ClientHello (with or without SNI), swaps in the context holding the certificate that
is current at that moment. Client contexts are made per certificate and cached by serial, so
every new connection presents the current certificate and established ones keep theirs.

`ssl` only loads key material from files; each load writes the PEM into a private temporary
directory (mode 0700) and removes it right after.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Final, final

from netstrata.mesh.ca import IssuedCertificate, TrustBundle, VerifiedCertificates
from netstrata.mesh.rotation import WorkloadCertificates
from netstrata.mesh.spiffe import SpiffeId

log = logging.getLogger(__name__)

Clock = Callable[[], float]
MIN_ROTATION_SLEEP_S: Final = 1.0
"""Floor of the rotation loop's sleep, so a clock jump cannot make it spin."""
_CACHE_LIMIT: Final = 64
"""Contexts kept per cache: a few rotations' worth for every identity on a busy node."""


def _load_certificate(ctx: ssl.SSLContext, cert: IssuedCertificate) -> None:
    with tempfile.TemporaryDirectory(prefix="netstrata-mesh-") as tmp:
        path = Path(tmp) / "workload.pem"
        path.write_bytes(cert.chain_pem())
        ctx.load_cert_chain(path)  # read now; the directory is removed on exit


def _base(purpose: int, bundle: TrustBundle) -> ssl.SSLContext:
    ctx = ssl.SSLContext(purpose)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_3
    if purpose == ssl.PROTOCOL_TLS_SERVER:
        # clients never resume (asyncio cannot offer a session), so issuing the two default
        # TLS 1.3 session tickets per handshake is work and a record for nothing
        ctx.num_tickets = 0
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_REQUIRED
    ctx.load_verify_locations(cadata=bundle.pem())
    return ctx


def client_context(cert: IssuedCertificate, bundle: TrustBundle) -> ssl.SSLContext:
    """A source-side context presenting `cert` and trusting `bundle`."""
    ctx = _base(ssl.PROTOCOL_TLS_CLIENT, bundle)
    _load_certificate(ctx, cert)
    return ctx


def server_context(cert: IssuedCertificate, bundle: TrustBundle) -> ssl.SSLContext:
    """A destination-side context presenting `cert` and requiring a client certificate."""
    ctx = _base(ssl.PROTOCOL_TLS_SERVER, bundle)
    _load_certificate(ctx, cert)
    return ctx


def _remember(cache: dict[int, ssl.SSLContext], serial: int, ctx: ssl.SSLContext) -> None:
    cache[serial] = ctx
    while len(cache) > _CACHE_LIMIT:
        del cache[next(iter(cache))]  # dicts keep insertion order: drop the oldest


@final
class MeshCredentials:
    """TLS contexts for the identities of one node proxy, always from the current certificates."""

    def __init__(
        self,
        certificates: WorkloadCertificates,
        bundle: TrustBundle,
        clock: Clock = time.time,
        *,
        handshake_bundle: TrustBundle | None = None,
    ) -> None:
        """
        Args:
            certificates: this proxy's workload certificates.
            bundle: the trust domains a peer is accepted from (local first, then aliases).
            clock: Unix time.
            handshake_bundle: the roots the TLS handshake itself accepts, when wider than
                `bundle` (a lab whose clusters share one mesh: the handshake completes, so
                the destination's kernel policy speaks first, and `peers` still refuses a
                trust domain that is not aliased); `bundle` by default.
        """
        self.certificates = certificates
        self.bundle = bundle
        self.handshake_bundle = handshake_bundle
        self.clock = clock
        self._peers = VerifiedCertificates(bundle)
        self._clients: dict[int, ssl.SSLContext] = {}
        self._servers: dict[int, ssl.SSLContext] = {}

    @property
    def peers(self) -> VerifiedCertificates:
        """Peer certificate checks, kept per certificate (both directions share them) for the
        current bundle: a replaced bundle starts an empty cache."""
        if self._peers.bundle is not self.bundle:
            self._peers = VerifiedCertificates(self.bundle)
        return self._peers

    def current(self, identity: SpiffeId) -> IssuedCertificate:
        return self.certificates.current(identity, now=self.clock())

    def client(self, identity: SpiffeId) -> ssl.SSLContext:
        """A context presenting the current certificate of `identity` (source side)."""
        cert = self.current(identity)
        ctx = self._clients.get(cert.serial)
        if ctx is None:
            ctx = client_context(cert, self.handshake_bundle or self.bundle)
            _remember(self._clients, cert.serial, ctx)
        return ctx

    def _server_now(self, identity: SpiffeId) -> ssl.SSLContext:
        cert = self.current(identity)
        ctx = self._servers.get(cert.serial)
        if ctx is None:
            ctx = server_context(cert, self.handshake_bundle or self.bundle)
            _remember(self._servers, cert.serial, ctx)
        return ctx

    def server(self, identity: SpiffeId) -> ssl.SSLContext:
        """A listener context that presents the certificate current at each handshake."""

        def pick(
            obj: ssl.SSLObject | ssl.SSLSocket, _name: str | None, _ctx: ssl.SSLContext
        ) -> None:
            obj.context = self._server_now(identity)

        # a fresh context object for the listener, so its callback never leaks into the cache
        ctx = server_context(self.current(identity), self.handshake_bundle or self.bundle)
        ctx.sni_callback = pick
        return ctx


async def run_rotation(
    certificates: WorkloadCertificates,
    clock: Clock = time.time,
    *,
    on_rotated: Callable[[tuple[SpiffeId, ...]], None] | None = None,
) -> None:
    """Rotate certificates when due, forever; the owner runs it as a named task and cancels it.

    The loop only replaces certificates in the store: new handshakes pick them up through
    `MeshCredentials`, and established connections are not disturbed.
    """
    while True:
        rotated = certificates.rotate_due(now=clock())
        if rotated:
            log.info("rotated workload certificates: %s", ", ".join(map(str, rotated)))
            if on_rotated is not None:
                on_rotated(rotated)
        due = certificates.next_rotation()
        delay = 60.0 if due is None else max(MIN_ROTATION_SLEEP_S, due - clock())
        await asyncio.sleep(delay)


__all__ = [
    "Clock",
    "MeshCredentials",
    "client_context",
    "run_rotation",
    "server_context",
]
