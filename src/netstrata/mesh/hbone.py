"""The tunnel preamble: which original destination a mesh tunnel carries (sans-IO).

Istio's ambient mode (HBONE) opens an HTTP/2 `CONNECT` stream to the destination node's
ztunnel on port 15008 inside mutual TLS, with the original destination `ip:port` as the
`:authority`. We keep the idea and drop the multiplexing: one TLS 1.3 connection per tunnelled
connection, starting with an HTTP/1.1 CONNECT (RFC 9110 §9.3.6, authority form):

    source -> destination   CONNECT 10.1.0.7:8080 HTTP/1.1\\r\\nHost: 10.1.0.7:8080\\r\\n
                            Forwarded: for=10.2.0.5\\r\\n\\r\\n
    destination -> source   HTTP/1.1 200 OK\\r\\n\\r\\n          then raw bytes both ways
                            HTTP/1.1 403 Forbidden\\r\\n...\\r\\n  and close (refused)

`Forwarded: for=<ip>` (RFC 7239 §5.2, as ztunnel sends it) names the source workload's
address, so the destination delivers from it and its kernel policy sees the source's identity.
Any bytes after the blank line belong to the tunnelled stream. Pure: bytes in, values out;
errors are ValueError (the peer sent garbage), which the adapter answers with 400 and a close.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final

MAX_PREAMBLE_BYTES: Final = 8192
"""A CONNECT head is one short line plus Host; 8 KiB is nginx's request-line buffer and far
above anything legitimate, and it bounds what an unauthenticated-yet peer can make us hold."""
_END: Final = b"\r\n\r\n"
REASONS: Final = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    502: "Bad Gateway",
    503: "Service Unavailable",
}


@dataclass(frozen=True, slots=True)
class Preamble:
    """A complete head and what followed it."""

    line: str
    """The request or status line."""
    headers: tuple[tuple[str, str], ...]
    """Header fields after the line, names lower-cased, in order."""
    trailing: bytes
    """Bytes after the blank line: the start of the tunnelled stream."""


def split_head(buffer: bytes) -> Preamble | None:
    """The first line of a complete head in `buffer`, or None while the head is incomplete.

    Raises:
        ValueError: the head is longer than MAX_PREAMBLE_BYTES or not ASCII.
    """
    end = buffer.find(_END)
    if end < 0:
        if len(buffer) > MAX_PREAMBLE_BYTES:
            raise ValueError(f"tunnel preamble longer than {MAX_PREAMBLE_BYTES} bytes")
        return None
    if end > MAX_PREAMBLE_BYTES:
        raise ValueError(f"tunnel preamble longer than {MAX_PREAMBLE_BYTES} bytes")
    try:
        head = buffer[:end].decode("ascii")
    except UnicodeDecodeError as exc:
        raise ValueError("tunnel preamble is not ASCII") from exc
    line, *fields = head.split("\r\n")
    headers = []
    for field in fields:
        name, sep, value = field.partition(":")
        if not sep or not name or name != name.strip():
            raise ValueError(f"tunnel preamble: bad header field {field[:80]!r}")
        headers.append((name.lower(), value.strip()))
    return Preamble(line, tuple(headers), buffer[end + len(_END) :])


def format_authority(host: str, port: int) -> str:
    """`ip:port`, with IPv6 addresses in brackets (RFC 3986 §3.2.2)."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def parse_authority(text: str) -> tuple[str, int]:
    """`ip:port` or `[v6]:port` to (ip, port); only IP literals, the tunnel carries no names."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(f"CONNECT target: expected ip:port, found {text!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        ipaddress.ip_address(host)
    except ValueError as exc:
        raise ValueError(f"CONNECT target: expected an IP address, found {host!r}") from exc
    return host, int(port_text)


def encode_connect(host: str, port: int, forwarded_for: str | None = None) -> bytes:
    """The CONNECT head; `forwarded_for` is the source workload's IP address."""
    authority = format_authority(host, port)
    extra = ""
    if forwarded_for is not None:
        ipaddress.ip_address(forwarded_for)  # ValueError: only addresses travel
        node = f'"[{forwarded_for}]"' if ":" in forwarded_for else forwarded_for
        extra = f"Forwarded: for={node}\r\n"
    return f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n{extra}\r\n".encode("ascii")


def forwarded_for(preamble: Preamble) -> str | None:
    """The source address of the `Forwarded` field (its first `for=`), None when absent.

    Raises:
        ValueError: the field names something other than an IP address.
    """
    for name, value in preamble.headers:
        if name != "forwarded":
            continue
        for pair in value.split(",")[0].split(";"):
            key, _, node = pair.strip().partition("=")
            if key.lower() == "for":
                node = node.strip('"')
                if node.startswith("[") and node.endswith("]"):
                    node = node[1:-1]
                try:
                    return str(ipaddress.ip_address(node))
                except ValueError as exc:
                    raise ValueError(f"Forwarded: expected for=<ip>, found {node[:60]!r}") from exc
    return None


def decode_connect(line: str) -> tuple[str, int]:
    """The original destination named by a CONNECT request line."""
    parts = line.split(" ")
    if len(parts) != 3 or parts[0] != "CONNECT" or parts[2] != "HTTP/1.1":
        raise ValueError(
            f"tunnel preamble: expected 'CONNECT ip:port HTTP/1.1', found {line[:80]!r}"
        )
    return parse_authority(parts[1])


def encode_status(status: int) -> bytes:
    close = "" if status == 200 else "Connection: close\r\n"
    return f"HTTP/1.1 {status} {REASONS.get(status, 'Error')}\r\n{close}\r\n".encode("ascii")


def decode_status(line: str) -> int:
    parts = line.split(" ", 2)
    if len(parts) < 2 or parts[0] != "HTTP/1.1" or not parts[1].isdigit():
        raise ValueError(f"tunnel reply: expected 'HTTP/1.1 <status>', found {line[:80]!r}")
    return int(parts[1])


__all__ = [
    "MAX_PREAMBLE_BYTES",
    "Preamble",
    "decode_connect",
    "decode_status",
    "encode_connect",
    "encode_status",
    "format_authority",
    "forwarded_for",
    "parse_authority",
    "split_head",
]
