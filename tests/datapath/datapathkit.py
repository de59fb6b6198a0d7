"""Helpers for the kernel datapath tests: policies, echo servers and clients inside pod
namespaces, and waiting for ring-buffer events."""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from ipaddress import IPv4Address

from netstrata.datapath.kernel import KernelDatapath
from netstrata.datapath.maps import FlowEvent
from netstrata.netns import PodLink, socket_in_netns
from netstrata.policy.types import Direction, MapStateEntry, MapStateKey, ResolvedPolicy

TCP, UDP, ICMP, SCTP = 6, 17, 1, 132
EP_A, EP_B = 1, 2
ID_A, ID_B = 1001, 1002
DROP_TIMEOUT = 0.6
"""Seconds a connect may take before we call its SYN dropped (veth RTT is microseconds)."""


@dataclass
class Pods:
    """A node namespace and two pods `a` and `b` wired to it; `dp` is the node's datapath."""

    node: str
    a: PodLink
    b: PodLink
    dp: KernelDatapath


def resolved(endpoint_id: int, identity: int, entries: Mapping[MapStateKey, MapStateEntry], *,
             ingress: bool = True, egress: bool = True, audit: bool = False,
             revision: int = 1) -> ResolvedPolicy:
    return ResolvedPolicy(endpoint_id, identity, revision, dict(entries), ingress, egress, audit)


def allow(direction: Direction, identity: int, proto: int = 0, port: int = 0,
          prefix: int | None = None, **entry: int | bool) -> dict[MapStateKey, MapStateEntry]:
    if prefix is None:
        prefix = 16 if port else 0
    return {MapStateKey(direction, identity, proto, port, prefix): MapStateEntry(**entry)}


def attach_both(dp: KernelDatapath, pods: Pods) -> None:
    """Attach pods a and b, both directions enforced, no entries: everything is denied."""
    a, b = pods.a, pods.b
    dp.attach_endpoint(a.host_if, EP_A, a.ip, ID_A, 3)
    dp.attach_endpoint(b.host_if, EP_B, b.ip, ID_B, 3)


@contextlib.contextmanager
def echo_server(netns: str, ip: IPv4Address, port: int, kind: int = socket.SOCK_STREAM
                ) -> Iterator[None]:
    """An echo server (TCP or UDP) in `netns` for the duration of the block."""
    srv = socket_in_netns(netns, socket.AF_INET, kind)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((str(ip), port))
    srv.settimeout(0.1)
    stop = threading.Event()

    def serve_tcp() -> None:
        srv.listen(16)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except (TimeoutError, OSError):
                continue
            threading.Thread(target=_echo_conn, args=(conn, stop), daemon=True).start()

    def serve_udp() -> None:
        while not stop.is_set():
            try:
                data, peer = srv.recvfrom(2048)
            except (TimeoutError, OSError):
                continue
            srv.sendto(data, peer)

    worker = threading.Thread(target=serve_tcp if kind == socket.SOCK_STREAM else serve_udp,
                              daemon=True)
    worker.start()
    try:
        yield
    finally:
        stop.set()
        worker.join()
        srv.close()


def _echo_conn(conn: socket.socket, stop: threading.Event) -> None:
    conn.settimeout(0.1)
    with conn:
        while not stop.is_set():
            try:
                data = conn.recv(2048)
            except TimeoutError:
                continue
            except OSError:
                return
            if not data:
                return
            conn.sendall(data)


def tcp_connect(netns: str, ip: IPv4Address, port: int,
                timeout: float = DROP_TIMEOUT) -> socket.socket | None:
    """A connected socket from `netns`, or None when the SYN got no answer in time."""
    sock = socket_in_netns(netns)
    sock.settimeout(timeout)
    try:
        sock.connect((str(ip), port))
    except (TimeoutError, ConnectionRefusedError):
        sock.close()
        return None
    return sock


def tcp_echo(netns: str, ip: IPv4Address, port: int, payload: bytes = b"ping") -> bytes | None:
    sock = tcp_connect(netns, ip, port)
    if sock is None:
        return None
    with sock:
        return exchange(sock, payload)


def exchange(sock: socket.socket, payload: bytes, timeout: float = DROP_TIMEOUT) -> bytes | None:
    sock.settimeout(timeout)
    try:
        sock.sendall(payload)
        return sock.recv(2048)
    except TimeoutError:
        return None


def udp_echo(netns: str, ip: IPv4Address, port: int, payload: bytes = b"ping") -> bytes | None:
    sock = socket_in_netns(netns, socket.AF_INET, socket.SOCK_DGRAM)
    with sock:
        sock.settimeout(DROP_TIMEOUT)
        sock.sendto(payload, (str(ip), port))
        try:
            return sock.recv(2048)
        except TimeoutError:
            return None


def ping(netns: str, ip: IPv4Address, ident: int = 0x4E53) -> bool:
    """One ICMP echo request from `netns` (raw socket: we are root); True if answered."""
    sock = socket_in_netns(netns, socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    with sock:
        sock.settimeout(DROP_TIMEOUT)
        body = struct.pack("!BBHHH", 8, 0, 0, ident, 1) + os.urandom(8)
        csum = _checksum(body)
        sock.sendto(body[:2] + struct.pack("!H", csum) + body[4:], (str(ip), 0))
        deadline = time.monotonic() + DROP_TIMEOUT
        while time.monotonic() < deadline:
            try:
                data = sock.recv(2048)
            except TimeoutError:
                return False
            ihl = (data[0] & 0x0F) * 4
            if data[ihl] == 0 and struct.unpack("!H", data[ihl + 4:ihl + 6])[0] == ident:
                return True
        return False


def _checksum(data: bytes) -> int:
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def wait_events(dp: KernelDatapath, until: Callable[[FlowEvent], bool],
                timeout: float = 2.0) -> list[FlowEvent]:
    """Events read until one satisfies `until` (all of them, in order); [] on timeout."""
    seen: list[FlowEvent] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen += dp.read_events(timeout_ms=100)
        if any(until(e) for e in seen):
            return seen
    return []


def drain(dp: KernelDatapath) -> list[FlowEvent]:
    return dp.read_events(0)
