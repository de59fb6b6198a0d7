"""Real clients for lab probes, run from inside a workload's network namespace.

Every client sends real packets through the lab (veth, node namespace, tc programs, underlay)
and reports what a user would see: an answer (`allowed`), nothing within the timeout
(`dropped`: the kernel drops policy-denied packets silently), or an answer that is an error of
the server's own (`app-error`: an HTTP status >= 400, a refused connection). The tools are the
ones a user would reach for where installed (`curl` for HTTP(S), `ping` for ICMP) and Python
sockets otherwise (TCP/UDP echo, DNS, the HTTP/2 preface of a gRPC client).

Sockets are created inside the namespace (`socket_in_netns`) and then driven by the event
loop; tools run as child processes that enter the namespace before `exec`.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import re
import shutil
import socket
import struct
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Final, Literal

from netstrata.lab.probe_tools import KAFKA_BUDGET
from netstrata.lab.servers import H2_PREFACE, H2_SETTINGS
from netstrata.netns import netns_path, socket_in_netns

Got = Literal["allowed", "dropped", "app-error", "denied-l7", "denied-mesh"]

TIMEOUT_S: Final = 1.0
"""How long a client waits for an answer before it calls the packet dropped. Lab round trips
are microseconds; TCP's first SYN retransmission comes at 1 s, so one SYN is judged."""
_CLONE_NEWNET: Final = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


@dataclass(frozen=True, slots=True)
class Outcome:
    got: Got
    detail: str = ""
    answers: tuple[str, ...] = ()
    """Addresses a DNS answer carried."""


def tool(name: str) -> str | None:
    """The path of `curl`/`ping` when installed (the lab falls back to Python otherwise)."""
    return shutil.which(name)


def move_to_netns(netns: str) -> None:
    """Move the calling thread (for good) into `netns`; threads it starts later follow.

    Raises:
        OSError: the namespace does not exist or setns(2) refused.
    """
    fd = os.open(netns_path(netns), os.O_RDONLY)
    try:
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"setns into {netns}: {os.strerror(code)}")
    finally:
        os.close(fd)


def enter_netns(netns: str) -> Callable[[], None]:
    """A `preexec_fn` moving the child (single-threaded after fork) into `netns`."""
    path = str(netns_path(netns)).encode()

    def enter() -> None:
        fd = os.open(path, os.O_RDONLY)
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            os._exit(126)
        os.close(fd)

    return enter


async def run_in_netns(netns: str, argv: Sequence[str], limit_s: float) -> tuple[int, str]:
    """Run a tool inside `netns`; (exit status, stdout). A tool that overruns is killed (-9)."""
    proc = await asyncio.create_subprocess_exec(
        *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, preexec_fn=enter_netns(netns))
    try:
        async with asyncio.timeout(limit_s):
            out, _ = await proc.communicate()
    except TimeoutError:
        proc.kill()
        await proc.wait()
        return -9, ""
    return int(proc.returncode or 0), out.decode(errors="replace")


async def _socket(netns: str, kind: int, proto: int = 0) -> socket.socket:
    sock = await asyncio.to_thread(socket_in_netns, netns, socket.AF_INET, kind, proto)
    sock.setblocking(False)
    return sock


async def _connect(netns: str, dst: str, port: int) -> socket.socket | Outcome:
    sock = await _socket(netns, socket.SOCK_STREAM)
    try:
        async with asyncio.timeout(TIMEOUT_S):
            await asyncio.get_running_loop().sock_connect(sock, (dst, port))
    except TimeoutError:
        sock.close()
        return Outcome("dropped", "connect timed out")
    except OSError as exc:
        sock.close()
        return Outcome("app-error", f"connect: {exc.strerror or exc}")
    return sock


async def _exchange(sock: socket.socket, payload: bytes, want: int = 1) -> bytes | None:
    loop = asyncio.get_running_loop()
    got = b""
    try:
        async with asyncio.timeout(TIMEOUT_S):
            await loop.sock_sendall(sock, payload)
            while len(got) < want:
                chunk = await loop.sock_recv(sock, 65536)
                if not chunk:
                    break
                got += chunk
    except (TimeoutError, OSError):
        return got or None
    return got


async def tcp_probe(netns: str, dst: str, port: int, payload: bytes = b"netstrata probe\n") -> Outcome:
    """Connect and see the payload echoed."""
    sock = await _connect(netns, dst, port)
    if isinstance(sock, Outcome):
        return sock
    with sock:
        reply = await _exchange(sock, payload, len(payload))
    if reply is None:
        return Outcome("dropped", "connected, no echo")
    return Outcome("allowed", f"echoed {len(reply)} bytes")


async def grpc_probe(netns: str, dst: str, port: int) -> Outcome:
    """A gRPC client's first flight: the HTTP/2 preface and SETTINGS; a SETTINGS frame back."""
    sock = await _connect(netns, dst, port)
    if isinstance(sock, Outcome):
        return sock
    with sock:
        reply = await _exchange(sock, H2_PREFACE + H2_SETTINGS, 9)
    if reply is None:
        return Outcome("dropped", "connected, no HTTP/2 SETTINGS")
    if len(reply) >= 9 and reply[3] == 4:
        return Outcome("allowed", "HTTP/2 SETTINGS received")
    return Outcome("app-error", "not an HTTP/2 server")


async def grpc_call_probe(netns: str, dst: str, port: int, method: str) -> Outcome:
    """A real grpcio call (`probe_tools.py` in a child) of `method`: a `cloudcity.DoorManager`
    method name or a full `/package.Service/Method` path.

    OK is `allowed` (detail: what the guide's client prints); PERMISSION_DENIED (7) with the
    proxy's details `Access denied\r\n` is `denied-l7` (the node proxy's trailers-only reply,
    `proxy/layers/_h2_streams.py`); the mesh proxy's PERMISSION_DENIED `RBAC: access denied` or
    UNAUTHENTICATED for a rejected JWT is `denied-mesh` (`is_mesh_denial`); any other status is
    `app-error` with `gRPC <NAME> (<code>)`;
    no answer at all (DEADLINE_EXCEEDED / UNAVAILABLE after a silent connect) is `dropped`.
    """
    argv = [sys.executable, "-m", "netstrata.lab.probe_tools", "--timeout", str(TIMEOUT_S * 2),
            "grpc", dst, str(port), method]
    return _tool_outcome(await run_in_netns(netns, argv, TIMEOUT_S * 8), grpc=True)


async def kafka_probe(netns: str, dst: str, port: int, role: str, topic: str) -> Outcome:
    """A real aiokafka client doing `role` (`probe_tools.KAFKA_ROLES`: produce, consume,
    fetch, metadata, createtopics) on `topic`. TOPIC_AUTHORIZATION_FAILED (29) is `denied-l7`:
    the lab broker never refuses a topic, so that error is the node proxy's answer."""
    # 3 s per request: a Kafka client makes three or four round trips through the proxy
    # before the one a probe is about (ApiVersions, Metadata, ...). The whole run is bounded
    # by `probe_tools.KAFKA_BUDGET` requests (twice, when a failed produce or consume asks
    # Metadata why); the kill below is only for a tool that hangs past all of that
    request_s = TIMEOUT_S * 3
    argv = [sys.executable, "-m", "netstrata.lab.probe_tools", "--timeout", str(request_s),
            "kafka", dst, str(port), role, topic]
    limit_s = request_s * KAFKA_BUDGET * 2 + TIMEOUT_S * 5
    return _tool_outcome(await run_in_netns(netns, argv, limit_s), grpc=False)


NO_ANSWER: Final = frozenset({"DEADLINE_EXCEEDED", "UNAVAILABLE", "KafkaConnectionError",
                              "TimeoutError", "KafkaTimeoutError", "RequestTimedOutError"})
"""What the gRPC and Kafka clients report when nothing answered (`dropped`; `lab check` asks
the proxy's flows whether it was the proxy that stayed silent)."""


def _tool_outcome(result: tuple[int, str], *, grpc: bool) -> Outcome:
    rc, out = result
    try:
        got = json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return Outcome("dropped" if rc == -9 else "app-error", f"probe tool exit {rc}")
    code = str(got.get("code", ""))
    if code == "OK":
        return Outcome("allowed", str(got.get("response") or got.get("detail") or "OK"))
    if code in NO_ANSWER:
        return Outcome("dropped", f"{code}: {got.get('detail', '')}")
    if grpc:
        detail = str(got.get("detail", ""))
        denied = code == "PERMISSION_DENIED" and detail == L7_DENIED_BODY
        verdict: Got = "denied-l7" if denied else "app-error"
        if is_mesh_denial(403 if code == "PERMISSION_DENIED" else
                          401 if code == "UNAUTHENTICATED" else 0, detail):
            verdict = "denied-mesh"
        return Outcome(verdict, f"gRPC {code} ({got.get('value')}): {detail!r}")
    if code == "TopicAuthorizationFailedError":
        return Outcome("denied-l7", f"Kafka {code}: {got.get('detail', '')}")
    return Outcome("app-error", f"Kafka {code}: {got.get('detail', '')}")


async def udp_probe(netns: str, dst: str, port: int, payload: bytes = b"netstrata probe\n") -> Outcome:
    """One datagram out, its echo back."""
    sock = await _socket(netns, socket.SOCK_DGRAM)
    loop = asyncio.get_running_loop()
    with sock:
        try:
            await loop.sock_sendto(sock, payload, (dst, port))
            async with asyncio.timeout(TIMEOUT_S):
                reply = await loop.sock_recv(sock, 65536)
        except TimeoutError:
            return Outcome("dropped", "no datagram back")
        except OSError as exc:
            return Outcome("app-error", f"udp: {exc.strerror or exc}")
    return Outcome("allowed", f"echoed {len(reply)} bytes")


DNS_TIMEOUT_S: Final = 3.0
"""How long a DNS client waits for its answer: the DNS proxy holds an answer whose names
toFQDNs selects until its IPs are in the kernel, which on a loaded machine can take longer
than `TIMEOUT_S`."""
DNS_LOOKUP_TIMEOUT_S: Final = 6.0
"""How long the lookup in front of a probe's connection waits (`dns_probe(wait_s=...)`). The
lookup is not what such a probe judges, and a held answer is released once its IPs are
programmed, so only a lookup the kernel drops waits this long."""
_DIG_STATUS: Final = re.compile(r"->>HEADER<<- opcode: \w+, status: (\w+)")
_DIG_A: Final = re.compile(r"^\S+\s+\d+\s+IN\s+A\s+(\S+)$", re.MULTILINE)


def dns_got(rcode: str) -> Got:
    """The verdict a DNS answer means: REFUSED is the DNS proxy's L7 denial (the lab's
    DNS server never refuses), any other answer means the query got there."""
    return "denied-l7" if rcode == "REFUSED" else "allowed"


async def dns_probe(netns: str, server: str, port: int, qname: str, qtype: str = "A",
                    transport: str = "UDP", *, wait_s: float = DNS_TIMEOUT_S) -> Outcome:
    """A DNS query over UDP or TCP: dig where installed (a real client, one try), else
    dnspython's wire format on a socket. An answer means it got there; REFUSED is an L7
    denial. `wait_s`: how long to wait for the answer (whole seconds for dig)."""
    dig = tool("dig")
    if dig is not None:
        argv = [dig, f"@{server}", "-p", str(port), "+tries=1", f"+time={max(1, int(wait_s))}",
                "+nocmd", "+noquestion", "+nostats", qname, qtype]
        if transport.upper() == "TCP":
            argv.append("+tcp")
        rc, out = await run_in_netns(netns, argv, wait_s * 2)
        status = _DIG_STATUS.search(out)
        if status is None:
            return Outcome("dropped", f"dig: no DNS answer (exit {rc})")
        return Outcome(dns_got(status.group(1)), f"dig: status {status.group(1)}",
                       tuple(_DIG_A.findall(out)))
    import dns.message
    import dns.rcode
    import dns.rdatatype

    wire = dns.message.make_query(qname, qtype).to_wire()
    if transport.upper() == "TCP":
        sock = await _connect(netns, server, port)
        if isinstance(sock, Outcome):
            return sock
        with sock:
            reply = await _exchange(sock, struct.pack("!H", len(wire)) + wire, 14)
        reply = reply[2:] if reply else None
    else:
        sock = await _socket(netns, socket.SOCK_DGRAM)
        loop = asyncio.get_running_loop()
        with sock:
            try:
                await loop.sock_sendto(sock, wire, (server, port))
                async with asyncio.timeout(wait_s):
                    reply = await loop.sock_recv(sock, 65536)
            except TimeoutError:
                reply = None
    if not reply:
        return Outcome("dropped", "no DNS answer")
    try:
        msg = dns.message.from_wire(reply)
    except Exception as exc:  # a garbled answer is the server's error, not a drop
        return Outcome("app-error", f"undecodable DNS answer: {exc}")
    ips = tuple(str(r.address) for rr in msg.answer if rr.rdtype == dns.rdatatype.A for r in rr)
    rcode = dns.rcode.to_text(msg.rcode())
    return Outcome(dns_got(rcode), f"rcode {rcode}", ips)


async def http_probe(netns: str, dst: str, port: int, *, method: str = "GET", path: str = "/",
                     host: str | None = None, headers: Sequence[tuple[str, str]] = (),
                     tls: bool = False) -> Outcome:
    """One HTTP/1.1 request: curl where installed (a real client), else a socket."""
    curl = tool("curl")
    if curl is None:
        return await _http_socket(netns, dst, port, method, path, host, headers, tls)
    scheme = "https" if tls else "http"
    # the body comes back too: an L7 denial is told apart from a server's own 403 by it
    argv = [curl, "-sS", "-w", "\n%{http_code}", "--path-as-is", "-k",
            "--connect-timeout", str(TIMEOUT_S), "--max-time", str(TIMEOUT_S * 3)]
    # `-X HEAD` would make curl wait for the body the Content-Length announces (exit 18)
    argv += ["--head", "-o", "/dev/null"] if method.upper() == "HEAD" else ["-X", method]
    if host and tls:
        argv += ["--resolve", f"{host}:{port}:{dst}", f"{scheme}://{host}:{port}{path}"]
    else:
        argv.append(f"{scheme}://{dst}:{port}{path}")
        if host:
            argv += ["-H", f"Host: {host}"]
    for k, v in headers:
        argv += ["-H", f"{k}: {v}"]
    rc, out = await run_in_netns(netns, argv, TIMEOUT_S * 4)
    if rc == 28 or rc == -9:
        return Outcome("dropped", "curl: timed out (exit 28)")
    if rc != 0:
        return Outcome("app-error", f"curl exit {rc}")
    body, _, code = out.rpartition("\n")
    status = int(code.strip() or 0)
    return Outcome(http_got(status, body), f"HTTP {status}")


L7_DENIED_BODY: Final = "Access denied\r\n"
"""The body of the proxy's (and Cilium's Envoy's) 403 for a request the L7 rules deny."""


MESH_DENIED_BODY: Final = "RBAC: access denied"
"""The body (gRPC: the grpc-message) of the mesh proxy's 403, Istio's RBAC filter's."""
MESH_JWT_ERRORS: Final = ("Jwt ", "Jwks ")
"""How Istio's JWT filter starts the body of its 401 (`mesh/jwt.py` keeps its messages)."""


def is_mesh_denial(status: int, body: str) -> bool:
    """An answer only the mesh proxy makes: 403 `RBAC: access denied` (gRPC
    PERMISSION_DENIED), or 401 with a JWT error (gRPC UNAUTHENTICATED). Cilium's proxy says
    `Access denied` instead, and the lab's servers answer neither."""
    if status == 403:
        return body.rstrip("\r\n") == MESH_DENIED_BODY
    return status == 401 and body.startswith(MESH_JWT_ERRORS)


def http_got(status: int, body: str) -> Got:
    """The verdict an HTTP answer means: 403 with the proxy's body is an L7 denial, the mesh
    proxy's local replies (`is_mesh_denial`) a mesh denial."""
    if status == 403 and body == L7_DENIED_BODY:
        return "denied-l7"
    if is_mesh_denial(status, body):
        return "denied-mesh"
    return "allowed" if 0 < status < 400 else "app-error"


async def _http_socket(netns: str, dst: str, port: int, method: str, path: str,
                       host: str | None, headers: Sequence[tuple[str, str]], tls: bool) -> Outcome:
    if tls:
        return await tcp_probe(netns, dst, port, b"")  # without curl: the handshake's SYN
    sock = await _connect(netns, dst, port)
    if isinstance(sock, Outcome):
        return sock
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host or dst}", "Connection: close",
             *(f"{k}: {v}" for k, v in headers)]
    with sock:
        reply = await _exchange(sock, ("\r\n".join(lines) + "\r\n\r\n").encode(), 12)
    if not reply:
        return Outcome("dropped", "connected, no HTTP response")
    status = int(reply.split(b" ", 2)[1])
    return Outcome("allowed" if status < 400 else "app-error", f"HTTP {status}")


async def icmp_probe(netns: str, dst: str) -> Outcome:
    """One echo request: iputils `ping` where installed, else a raw ICMP socket."""
    ping = tool("ping")
    if ping is not None:
        rc, _ = await run_in_netns(netns, [ping, "-n", "-q", "-c", "1", "-W",
                                           str(int(TIMEOUT_S)), dst], TIMEOUT_S * 3)
        if rc == 0:
            return Outcome("allowed", "echo reply")
        if rc in (1, -9):
            return Outcome("dropped", "no echo reply")
        return Outcome("app-error", f"ping exit {rc}")
    return await _icmp_socket(netns, dst)


async def _icmp_socket(netns: str, dst: str) -> Outcome:
    ident = os.getpid() & 0xFFFF
    body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + b"netstrata"
    csum = _checksum(body)
    packet = body[:2] + struct.pack("!H", csum) + body[4:]
    sock = await _socket(netns, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    loop = asyncio.get_running_loop()
    with sock:
        await loop.sock_sendto(sock, packet, (dst, 0))
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(TIMEOUT_S):
                while True:
                    data = await loop.sock_recv(sock, 2048)
                    ihl = (data[0] & 0x0F) * 4
                    if data[ihl] == 0 and struct.unpack("!H", data[ihl + 4:ihl + 6])[0] == ident:
                        return Outcome("allowed", "echo reply")
    return Outcome("dropped", "no echo reply")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)
