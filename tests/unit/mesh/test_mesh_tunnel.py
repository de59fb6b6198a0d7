"""The mTLS tunnel on loopback: real TLS 1.3 between a source and a destination node proxy."""

from __future__ import annotations

import asyncio
import ssl
import time

import pytest
from meshtestkit import objects
from tunnelkit import (
    NODE,
    SLEEP,
    TD,
    Clock,
    client,
    credentials,
    destination,
    echo_server,
    roundtrip,
)

from netstrata.mesh import hbone
from netstrata.mesh.ca import CertificateAuthority
from netstrata.mesh.spiffe import SpiffeId
from netstrata.mesh.tls import client_context
from netstrata.mesh.tunnel import OutboundListener, OutboundRoute, TunnelRefused

REFUSED = (ssl.SSLError, ConnectionError, asyncio.IncompleteReadError)


@pytest.fixture(scope="module")
def ca() -> CertificateAuthority:
    return CertificateAuthority.create(TD, now=time.time())


def pa(name: str, spec: str) -> str:
    return (
        f"apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n"
        f"  name: {name}\n  namespace: foo\nspec:\n{spec}\n---\n"
    )


def test_tunnel_carries_bytes_and_the_source_principal(ca) -> None:
    async def run() -> None:
        app, app_addr = await echo_server()
        clock = Clock()
        async with destination(credentials(ca, ca.bundle(), clock), [app_addr[1]]) as dest:
            src = client(credentials(ca, ca.bundle(), clock))
            reader, writer = await src.open(SLEEP, app_addr, dest.tunnel)
            assert await roundtrip(reader, writer, b"hello mesh") == b"hello mesh"
            writer.close()
        app.close()
        (conn,) = dest.seen
        assert conn.peer.mtls and conn.peer.principal == "cluster.local/ns/foo/sa/sleep"
        assert conn.target == app_addr and conn.decision.mode == "PERMISSIVE"

    asyncio.run(run())


def test_rotation_under_traffic(ca) -> None:
    """An open tunnel survives a rotation; the next tunnel presents the new certificate."""

    async def run() -> None:
        app, app_addr = await echo_server()
        # OpenSSL checks validity against real time, so the story starts in the past: the
        # first certificates are issued 1801 s ago, and "now" is past half their lifetime.
        clock = Clock()
        clock.offset = -1801.0
        src_creds = credentials(ca, ca.bundle(), clock, ttl_s=3600)
        async with destination(credentials(ca, ca.bundle(), clock), [app_addr[1]]) as dest:
            src = client(src_creds)
            r1, w1 = await src.open(SLEEP, app_addr, dest.tunnel)
            assert await roundtrip(r1, w1, b"before") == b"before"
            first = src_creds.current(SLEEP).serial
            clock.offset = 0.0  # past half of the lifetime: due for rotation
            assert src_creds.certificates.rotate_due(now=clock()) == (SLEEP,)
            # the established tunnel keeps working on the old certificate
            assert await roundtrip(r1, w1, b"during") == b"during"
            r2, w2 = await src.open(SLEEP, app_addr, dest.tunnel)
            assert await roundtrip(r2, w2, b"after") == b"after"
            assert await roundtrip(r1, w1, b"still") == b"still"
            for w in (w1, w2):
                w.close()
        app.close()
        assert dest.peer_serials == [first, src_creds.current(SLEEP).serial]
        assert dest.peer_serials[0] != dest.peer_serials[1]

    asyncio.run(run())


def test_wrong_trust_domain_peer_is_refused(ca) -> None:
    async def run() -> None:
        evil = CertificateAuthority.create("evil.example", now=time.time())
        clock = Clock()
        async with destination(credentials(ca, ca.bundle(), clock), [9]) as dest:
            # the intruder trusts our root, but our bundle does not hold evil.example
            intruder = client(credentials(evil, evil.bundle([ca]), clock))
            with pytest.raises(REFUSED):
                reader, writer = await intruder.open(
                    SpiffeId("evil.example", "foo", "sleep"), ("127.0.0.1", 9), dest.tunnel
                )
            assert dest.seen == []

    asyncio.run(run())


def test_alias_trust_domain_is_accepted(ca) -> None:
    async def run() -> None:
        app, app_addr = await echo_server()
        west = CertificateAuthority.create("west.example", now=time.time())
        clock = Clock()
        server_creds = credentials(ca, ca.bundle([west]), clock)
        async with destination(server_creds, [app_addr[1]]) as dest:
            remote = client(credentials(west, west.bundle([ca]), clock))
            reader, writer = await remote.open(
                SpiffeId("west.example", "bar", "client"), app_addr, dest.tunnel
            )
            assert await roundtrip(reader, writer, b"x") == b"x"
            writer.close()
        app.close()
        assert dest.seen[0].peer.principal == "west.example/ns/bar/sa/client"

    asyncio.run(run())


def test_expired_certificate_is_refused(ca) -> None:
    async def run() -> None:
        clock = Clock()
        async with destination(credentials(ca, ca.bundle(), clock), [9]) as dest:
            stale = ca.issue(SLEEP, now=time.time() - 7200, ttl_s=3600)
            ctx = client_context(stale, ca.bundle())
            with pytest.raises(REFUSED):
                reader, writer = await asyncio.open_connection(*dest.tunnel, ssl=ctx)
                writer.write(hbone.encode_connect("127.0.0.1", 9))
                await writer.drain()
                async with asyncio.timeout(5):
                    await reader.readexactly(1)
            assert dest.seen == []

    asyncio.run(run())


async def _plaintext_echoes(addr: tuple[str, int]) -> bool:
    reader, writer = await asyncio.open_connection(*addr)
    try:
        writer.write(b"ping")
        await writer.drain()
        async with asyncio.timeout(5):
            return await reader.read(4) == b"ping"
    except ConnectionError:
        return False
    finally:
        writer.close()


def test_plaintext_strict_permissive_and_port_override(ca) -> None:
    async def run() -> None:
        app_a, addr_a = await echo_server()
        app_b, addr_b = await echo_server()
        clock = Clock()
        objs = objects(
            pa(
                "wl",
                f"  selector: {{matchLabels: {{app: httpbin}}}}\n"
                f"  mtls: {{mode: STRICT}}\n  portLevelMtls:\n"
                f"    {addr_b[1]}: {{mode: PERMISSIVE}}",
            )
        )
        async with destination(
            credentials(ca, ca.bundle(), clock), [addr_a[1], addr_b[1]], objects=objs
        ) as dest:
            strict = await dest.server.start_plaintext(
                "127.0.0.1", original_destination=lambda w: addr_a
            )
            permissive = await dest.server.start_plaintext(
                "127.0.0.1", original_destination=lambda w: addr_b
            )
            assert not await _plaintext_echoes(strict)
            assert await _plaintext_echoes(permissive)
            # mTLS to the STRICT port is fine
            reader, writer = await client(credentials(ca, ca.bundle(), clock)).open(
                SLEEP, addr_a, dest.tunnel
            )
            assert await roundtrip(reader, writer, b"m") == b"m"
            writer.close()
            # the same namespace-wide PERMISSIVE accepts plaintext on both ports
            objs[:] = objects(pa("ns", "  mtls: {mode: PERMISSIVE}"))
            assert await _plaintext_echoes(strict)
            stats = dest.server.statistics()
        for app in (app_a, app_b):
            app.close()
        assert (stats.plaintext_refused, stats.plaintext_accepted, stats.accepted) == (1, 2, 1)
        assert [c.peer.mtls for c in dest.seen] == [False, True, False]

    asyncio.run(run())


def test_unknown_destination_is_refused_with_403(ca) -> None:
    async def run() -> None:
        clock = Clock()
        async with destination(credentials(ca, ca.bundle(), clock), [9]) as dest:
            with pytest.raises(TunnelRefused) as err:
                await client(credentials(ca, ca.bundle(), clock)).open(
                    SLEEP, ("127.0.0.2", 9), dest.tunnel
                )
        assert err.value.status == 403

    asyncio.run(run())


def test_outbound_listener_routes_through_the_tunnel(ca) -> None:
    async def run() -> None:
        app, app_addr = await echo_server()
        clock = Clock()
        async with destination(credentials(ca, ca.bundle(), clock), [app_addr[1]]) as dest:
            out = OutboundListener(
                client(credentials(ca, ca.bundle(), clock)),
                lambda w: OutboundRoute(app_addr, SLEEP, dest.tunnel),
            )
            local = await out.start("127.0.0.1")
            reader, writer = await asyncio.open_connection(*local)
            assert await roundtrip(reader, writer, b"via") == b"via"
            writer.close()
            await out.close()
        app.close()
        assert dest.seen[0].peer.principal == SLEEP.principal
        assert NODE.trust_domain == TD

    asyncio.run(run())
