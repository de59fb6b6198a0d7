"""The multi-protocol server every lab workload runs: TCP/UDP echo, HTTP/1.1, DNS, TLS.

One `LabServers` object serves any number of workloads from one event loop: each listening
socket is created inside its workload's namespace (a socket keeps the namespace it was made
in), so one process can stand in for a server in every pod without a process per pod. What
a connection gets depends on what the client sends first, since every lab client speaks
first:

* an HTTP/1.1 request line: one response, with the status `lab/apps.py` gives (the reference
  run reads the same table) and a JSON echo of the request as the body;
* the HTTP/2 connection preface (gRPC clients): spliced to the real grpcio service of
  `grpc_doors.py` (Cilium's Cloud City door manager), which one `grpc.aio` server in this
  process serves on a Unix socket (a Unix socket path is reachable from every namespace);
* on Kafka ports (9092, `kafka_broker.KAFKA_PORTS`): the Kafka-protocol broker of
  `kafka_broker.py`, one topic store for the whole lab;
* on port 53 (TCP or UDP): DNS, answered from the lab's records (A records; NXDOMAIN for
  names it does not know), with the DNS core of `proxy/dns.py`;
* anything else: echoed back (TCP and UDP echo).

Ports 443, 6443 and 8443 (or any port marked `tls`) speak TLS with a self-signed certificate
made at start, so `curl -k https://…` completes a real handshake.

`python -m netstrata.lab.servers CONFIG.json` runs the servers of a `lab up` until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import logging
import re
import signal
import socket
import ssl
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from netstrata.lab.apps import http_status
from netstrata.lab.grpc_doors import start_door_server
from netstrata.lab.kafka_broker import KAFKA_PORTS, Broker, serve_kafka
from netstrata.netns import socket_in_netns

log = logging.getLogger(__name__)

TLS_PORTS: Final = frozenset({443, 6443, 8443})
DNS_PORT: Final = 53
MAX_HEAD: Final = 64 * 1024
"""Largest request head buffered (lab clients send a few hundred bytes; this bounds a stuck one)."""
IDLE_S: Final = 10.0
"""A connection that sends nothing for this long is closed."""
H2_PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
H2_SETTINGS: Final = b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"
"""An empty SETTINGS frame (RFC 9113 §6.5): what a server sends first."""
_REQUEST_LINE = re.compile(rb"^[A-Z]{3,10} \S+ HTTP/1\.[01]\r?\n")
_REASONS: Final = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 404: "Not Found"}


@dataclass(frozen=True, slots=True)
class Listen:
    port: int
    proto: str = "TCP"
    """`TCP` or `UDP` (SCTP has no sockets in this kernel: the lab judges it without one)."""
    tls: bool = False


@dataclass(frozen=True, slots=True)
class ServerSpec:
    """The server of one workload: where it runs and what it listens on."""

    name: str
    netns: str
    listens: tuple[Listen, ...]


def listens_for(ports: Iterable[tuple[int, str]], tls_names: Iterable[int] = ()) -> tuple[Listen, ...]:
    """(port, protocol) pairs -> listeners; TLS on the usual HTTPS ports and on `tls_names`."""
    tls = TLS_PORTS | set(tls_names)
    out = {(p, proto.upper()) for p, proto in ports if proto.upper() in ("TCP", "UDP")}
    return tuple(Listen(p, proto, proto == "TCP" and p in tls) for p, proto in sorted(out))


@dataclass
class ServerStatistics:
    connections: int = 0
    http_requests: int = 0
    datagrams: int = 0
    dns_queries: int = 0


# ------------------------------------------------------------------------------ protocol cores


DNS_TTL: Final = 30
"""Seconds of TTL on the lab DNS server's A records (what the toFQDNs IPs live for)."""


def dns_reply(wire: bytes, records: Mapping[str, tuple[str, ...]],
              ttl: int = DNS_TTL) -> bytes | None:
    """The answer to one DNS query from `records` (name without trailing dot -> IPs)."""
    from netstrata.proxy.dns import (
        NXDOMAIN,
        DNSAnswer,
        MalformedDNSMessage,
        build_answer,
        build_error_reply,
        parse_query,
    )

    try:
        query = parse_query(wire)
    except MalformedDNSMessage as exc:
        return build_error_reply(exc)
    name = query.qname.rstrip(".")
    if name not in records:
        return build_answer(query, [], rcode=NXDOMAIN)
    ips = records[name] if query.qtype == 1 else ()
    return build_answer(query, [DNSAnswer(query.qname, 1, ttl, ip) for ip in ips if ":" not in ip])


def http_response(head: bytes, server: str) -> bytes:
    """One HTTP/1.1 response to a request head (the body, if any, is not needed)."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        return _http(400, b"bad request line\n", False)
    method, target, _ = parts
    headers = tuple((k.strip(), v.strip()) for k, _, v in
                    (ln.partition(":") for ln in lines[1:] if ln))
    status = http_status(method, target, headers)
    body = json.dumps({"server": server, "method": method, "path": target,
                       "headers": dict(headers)}).encode() + b"\n"
    return _http(status, body, method == "HEAD")


def _http(status: int, body: bytes, head_only: bool) -> bytes:
    head = (f"HTTP/1.1 {status} {_REASONS.get(status, 'Status')}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            "Connection: close\r\n\r\n").encode()
    return head if head_only else head + body


# ---------------------------------------------------------------------------------- handlers


class _Udp(asyncio.DatagramProtocol):
    def __init__(self, servers: LabServers, port: int) -> None:
        self.servers, self.port = servers, port
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        stats = self.servers.stats
        stats.datagrams += 1
        if self.port == DNS_PORT:
            stats.dns_queries += 1
            reply = dns_reply(data, self.servers.dns_records, self.servers.dns_ttl)
        else:
            reply = data
        if reply is not None and self.transport is not None:
            self.transport.sendto(reply, addr)


@dataclass
class LabServers:
    """The servers of many workloads in one event loop."""

    dns_records: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    """Name (no trailing dot) -> IPv4 addresses; may be replaced between cases."""
    dns_ttl: int = DNS_TTL
    """TTL of every A record answered (tests shorten it to watch toFQDNs entries expire)."""
    stats: ServerStatistics = field(default_factory=ServerStatistics)
    _closers: list[Any] = field(default_factory=list)
    _listening: set[tuple[str, int, str]] = field(default_factory=set)
    _tls: ssl.SSLContext | None = None
    kafka: Broker = field(default_factory=Broker)
    """The lab's Kafka topics (shared by every Kafka port)."""
    _grpc: Any = None
    _grpc_dir: tempfile.TemporaryDirectory[str] | None = None
    _grpc_path: str = ""

    async def start(self, specs: Iterable[ServerSpec]) -> None:
        """Listen on every port of every spec (sockets made inside each spec's namespace).

        Ports already listened on are kept: a lab reused by several cases only gains
        listeners (an extra one answers nothing a policy would not let through anyway), so a
        port is never closed and bound again while connections to it may linger.
        """
        for spec in specs:
            for listen in spec.listens:
                key = (spec.netns, listen.port, listen.proto)
                if key not in self._listening:
                    await self._listen(spec, listen)
                    self._listening.add(key)

    async def _listen(self, spec: ServerSpec, listen: Listen) -> None:
        loop = asyncio.get_running_loop()
        kind = socket.SOCK_STREAM if listen.proto == "TCP" else socket.SOCK_DGRAM
        sock = await asyncio.to_thread(socket_in_netns, spec.netns, socket.AF_INET, kind)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("0.0.0.0", listen.port))
        sock.setblocking(False)
        if kind == socket.SOCK_DGRAM:
            transport, _ = await loop.create_datagram_endpoint(
                lambda: _Udp(self, listen.port), sock=sock)
            self._closers.append(transport)
            return
        sock.listen(128)

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await self._handle_tcp(spec.name, listen.port, reader, writer)

        server = await asyncio.start_server(handle, sock=sock,
                                            ssl=self._tls_context() if listen.tls else None)
        self._closers.append(server)

    def _tls_context(self) -> ssl.SSLContext:
        if self._tls is None:
            self._tls = self_signed_context()
        return self._tls

    async def _handle_tcp(self, name: str, port: int, reader: asyncio.StreamReader,
                          writer: asyncio.StreamWriter) -> None:
        self.stats.connections += 1
        try:
            if port in KAFKA_PORTS:
                await serve_kafka(self.kafka, reader, writer)
                return
            async with asyncio.timeout(IDLE_S):
                if port == DNS_PORT:
                    await self._dns_tcp(reader, writer)
                    return
                first = await reader.read(MAX_HEAD)
                if first.startswith(H2_PREFACE[:len(first)]) and first:
                    pass  # spliced below, outside the whole-connection timeout
                elif _REQUEST_LINE.match(first):
                    head = first
                    while b"\r\n\r\n" not in head and len(head) < MAX_HEAD:
                        more = await reader.read(MAX_HEAD)
                        if not more:
                            break
                        head += more
                    self.stats.http_requests += 1
                    writer.write(http_response(head.split(b"\r\n\r\n", 1)[0], name))
                else:
                    data = first
                    while data:
                        writer.write(data)
                        await writer.drain()
                        data = await reader.read(65536)
                await writer.drain()
            if first.startswith(H2_PREFACE[:len(first)]) and first:
                await self._splice_grpc(first, reader, writer)
        except (TimeoutError, ConnectionError, ssl.SSLError, OSError):
            pass
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError, ssl.SSLError, OSError):
                await writer.wait_closed()

    async def _grpc_address(self) -> str:
        if self._grpc is None:
            self._grpc_dir = tempfile.TemporaryDirectory(prefix="netstrata-grpc-")
            self._grpc_path = str(Path(self._grpc_dir.name) / "doors.sock")
            self._grpc = await start_door_server(f"unix:{self._grpc_path}")
        return self._grpc_path

    async def _splice_grpc(self, first: bytes, reader: asyncio.StreamReader,
                           writer: asyncio.StreamWriter) -> None:
        """Relay an HTTP/2 connection to the grpcio service, bytes unchanged both ways."""
        up_reader, up_writer = await asyncio.open_unix_connection(await self._grpc_address())
        up_writer.write(first)

        async def pump(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            while True:
                async with asyncio.timeout(IDLE_S * 6):
                    data = await src.read(65536)
                if not data:
                    break
                dst.write(data)
                await dst.drain()
            with contextlib.suppress(OSError):
                if dst.can_write_eof():
                    dst.write_eof()

        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(pump(reader, up_writer), name="grpc splice up")
                tg.create_task(pump(up_reader, writer), name="grpc splice down")
        except* (TimeoutError, ConnectionError, OSError):
            pass
        finally:
            up_writer.close()

    async def _dns_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                size = int.from_bytes(await reader.readexactly(2), "big")
                wire = await reader.readexactly(size)
            except asyncio.IncompleteReadError:
                return
            self.stats.dns_queries += 1
            reply = dns_reply(wire, self.dns_records, self.dns_ttl)
            if reply is not None:
                writer.write(len(reply).to_bytes(2, "big") + reply)
                await writer.drain()

    async def stop(self) -> None:
        for closer in self._closers:
            closer.close()
        for closer in self._closers:
            if isinstance(closer, asyncio.Server):
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await closer.wait_closed()
        self._closers.clear()
        self._listening.clear()
        if self._grpc is not None:
            await self._grpc.stop(0.5)
            self._grpc = None
        if self._grpc_dir is not None:
            self._grpc_dir.cleanup()
            self._grpc_dir = None


def self_signed_context() -> ssl.SSLContext:
    """A server TLS context with a fresh self-signed certificate (the lab's clients use -k)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "netstrata-lab")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=7))
            .sign(key, hashes.SHA256()))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.TemporaryDirectory(prefix="netstrata-tls-") as tmp:
        pem = Path(tmp) / "server.pem"
        pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM) + key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption()))
        ctx.load_cert_chain(pem)  # read now; the file is not needed afterwards
    return ctx


# ------------------------------------------------------------------------------- process mode


def config_of(specs: Iterable[ServerSpec], dns_records: Mapping[str, tuple[str, ...]],
              ready_file: str) -> dict[str, Any]:
    """The JSON a `python -m netstrata.lab.servers` process reads."""
    return {
        "ready_file": ready_file,
        "dns_records": {k: list(v) for k, v in dns_records.items()},
        "servers": [{"name": s.name, "netns": s.netns,
                     "listens": [[x.port, x.proto, x.tls] for x in s.listens]} for s in specs],
    }


async def _serve_forever(config: Mapping[str, Any]) -> None:
    specs = [ServerSpec(s["name"], s["netns"], tuple(Listen(p, proto, tls)
                                                   for p, proto, tls in s["listens"]))
             for s in config["servers"]]
    servers = LabServers({k: tuple(v) for k, v in config.get("dns_records", {}).items()})
    await servers.start(specs)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await asyncio.to_thread(Path(config["ready_file"]).write_text, "ready\n")
    log.info("serving %d workloads", len(specs))
    await stop.wait()
    await servers.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m netstrata.lab.servers")
    parser.add_argument("config", help="JSON written by `netstrata lab up`")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = json.loads(Path(args.config).read_text())
    asyncio.run(_serve_forever(config))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
