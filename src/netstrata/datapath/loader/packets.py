"""Crafted Ethernet/IPv4 frames for BPF_PROG_TEST_RUN.

The programs read only headers, so payloads are short and L4 checksums are left zero; the IPv4
header checksum is correct so a frame is also valid on a real link. Used by the differential
tests and by anything that asks the kernel for a verdict without sending traffic.
"""

from __future__ import annotations

import struct
from ipaddress import IPv4Address
from typing import Final

ETH_P_IP: Final = 0x0800
ETH_P_ARP: Final = 0x0806
ETH_P_IPV6: Final = 0x86DD
IPPROTO_ICMP: Final = 1
IPPROTO_TCP: Final = 6
IPPROTO_UDP: Final = 17
IPPROTO_SCTP: Final = 132

TCP_SYN: Final = 0x02
TCP_ACK: Final = 0x10
TCP_FIN: Final = 0x01
TCP_RST: Final = 0x04

_SRC_MAC: Final = bytes.fromhex("020000000001")
_DST_MAC: Final = bytes.fromhex("020000000002")


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return int(~total & 0xFFFF)


def ethernet(payload: bytes, ethertype: int = ETH_P_IP) -> bytes:
    return _DST_MAC + _SRC_MAC + struct.pack("!H", ethertype) + payload


def ipv4(src: IPv4Address | str, dst: IPv4Address | str, proto: int, payload: bytes, *,
         frag_offset: int = 0, more_fragments: bool = False, ttl: int = 64) -> bytes:
    """An IPv4 header (no options) + `payload`; `frag_offset` in 8-byte units."""
    flags_frag = (0x2000 if more_fragments else 0) | (frag_offset & 0x1FFF)
    head = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0x1234, flags_frag, ttl,
                       proto, 0, IPv4Address(src).packed, IPv4Address(dst).packed)
    head = head[:10] + struct.pack("!H", _checksum(head)) + head[12:]
    return head + payload


def tcp(sport: int, dport: int, flags: int = TCP_SYN) -> bytes:
    return struct.pack("!HHIIBBHHH", sport, dport, 1, 0, 5 << 4, flags, 65535, 0, 0)


def udp(sport: int, dport: int, payload: bytes = b"x") -> bytes:
    return struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload


def sctp(sport: int, dport: int) -> bytes:
    """An SCTP common header (ports, verification tag, checksum) with an empty INIT chunk."""
    return struct.pack("!HHII", sport, dport, 0, 0) + struct.pack("!BBH", 1, 0, 4)


def icmp(icmp_type: int, code: int = 0, ident: int = 0x42, seq: int = 1,
         payload: bytes = b"") -> bytes:
    body = struct.pack("!BBHHH", icmp_type, code, 0, ident, seq) + payload
    return body[:2] + struct.pack("!H", _checksum(body)) + body[4:]


def frame(src: IPv4Address | str, dst: IPv4Address | str, proto: int, *, sport: int = 40000,
          dport: int = 0, icmp_type: int = 8, tcp_flags: int = TCP_SYN) -> bytes:
    """One frame for a policy question: `dport` is the port (or unused for ICMP/other)."""
    if proto == IPPROTO_TCP:
        l4 = tcp(sport, dport, tcp_flags)
    elif proto == IPPROTO_UDP:
        l4 = udp(sport, dport)
    elif proto == IPPROTO_SCTP:
        l4 = sctp(sport, dport)
    elif proto == IPPROTO_ICMP:
        l4 = icmp(icmp_type)
    else:
        l4 = b"\0" * 8
    return ethernet(ipv4(src, dst, proto, l4))
