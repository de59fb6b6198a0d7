"""A loopback mesh for the tunnel tests: one CA, a destination proxy, a source proxy, an echo
or HTTP app. Everything is real TLS 1.3 over 127.0.0.1; nothing is faked."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass, field

from netstrata.api.istio import IstioObject
from netstrata.mesh.ca import CertificateAuthority, TrustBundle
from netstrata.mesh.rotation import RotationPolicy, WorkloadCertificates
from netstrata.mesh.spiffe import SpiffeId
from netstrata.mesh.tls import MeshCredentials
from netstrata.mesh.tunnel import (
    InboundConnection,
    InboundHandler,
    PeerAuthenticationGate,
    TunnelClient,
    TunnelServer,
    forward_to_target,
)
from netstrata.mesh.types import Workload, WorkloadPort

TD = "cluster.local"
SLEEP = SpiffeId(TD, "foo", "sleep")
NODE = SpiffeId(TD, "istio-system", "node-proxy")


class Clock:
    """Real time plus an offset the test moves forward (rotation without waiting)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def credentials(
    ca: CertificateAuthority, bundle: TrustBundle, clock: Callable[[], float], ttl_s: float = 3600
) -> MeshCredentials:
    store = WorkloadCertificates(ca, RotationPolicy(ttl_s=ttl_s, rotate_fraction=0.5))
    return MeshCredentials(store, bundle, clock)


async def echo_server() -> tuple[asyncio.Server, tuple[str, int]]:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    return server, server.sockets[0].getsockname()[:2]


@dataclass
class Destination:
    """A destination node proxy in front of one workload at 127.0.0.1."""

    server: TunnelServer
    tunnel: tuple[str, int]
    objects: list[IstioObject] = field(default_factory=list)
    seen: list[InboundConnection] = field(default_factory=list)
    peer_serials: list[int] = field(default_factory=list)


def workload(ports: Sequence[int]) -> Workload:
    return Workload(
        name="httpbin",
        namespace="foo",
        labels={"app": "httpbin"},
        ports=tuple(WorkloadPort(p, "http") for p in ports),
        ip="127.0.0.1",
    )


@contextlib.asynccontextmanager
async def destination(
    creds: MeshCredentials,
    app_ports: Sequence[int],
    handler: InboundHandler = forward_to_target,
    objects: list[IstioObject] | None = None,
) -> AsyncIterator[Destination]:
    objs = objects if objects is not None else []
    wl = workload(app_ports)
    gate = PeerAuthenticationGate(lambda: objs, lambda ip: wl if ip == "127.0.0.1" else None)
    holder: list[Destination] = []

    async def recording(
        conn: InboundConnection, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        holder[0].seen.append(conn)
        ssl_object = writer.get_extra_info("ssl_object")
        if ssl_object is not None:
            from cryptography import x509

            der = ssl_object.getpeercert(binary_form=True)
            holder[0].peer_serials.append(x509.load_der_x509_certificate(der).serial_number)
        await handler(conn, reader, writer)

    server = TunnelServer(credentials=creds, identity=NODE, admission=gate, handler=recording)
    dest = Destination(server, await server.start("127.0.0.1"), objs)
    holder.append(dest)
    try:
        yield dest
    finally:
        await server.close()


async def roundtrip(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, data: bytes
) -> bytes:
    writer.write(data)
    await writer.drain()
    async with asyncio.timeout(5):
        return await reader.readexactly(len(data))


def client(creds: MeshCredentials) -> TunnelClient:
    return TunnelClient(creds)
