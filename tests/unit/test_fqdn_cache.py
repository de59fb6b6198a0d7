"""fqdn.DNSCache: how long a learned IP stays programmed, and when it must go."""

from __future__ import annotations

import socket
import struct

from netstrata.fqdn.cache import DNSCache
from netstrata.proxy.dnsproxy import original_destination


def test_an_ip_stays_while_any_name_holds_it() -> None:
    cache = DNSCache()
    assert cache.learn("a.example.", ["192.0.2.1", "192.0.2.2"], 10, now=0) == [
        "192.0.2.1",
        "192.0.2.2",
    ]
    assert cache.learn("b.example.", ["192.0.2.2"], 30, now=0) == []
    assert cache.next_expiry() == 10
    assert cache.expire(9.9) == []
    assert cache.expire(10) == ["192.0.2.1"]  # 192.0.2.2 is still held by b.example.
    assert cache.names_of("192.0.2.2") == ["b.example."]
    assert cache.expire(30) == ["192.0.2.2"]
    assert cache.ips() == set() and cache.next_expiry() is None


def test_a_later_answer_extends_never_shortens() -> None:
    cache = DNSCache()
    cache.learn("a.example.", ["192.0.2.1"], 60, now=0)
    cache.learn("a.example.", ["192.0.2.1"], 5, now=10)  # would end at 15: keeps 60
    assert cache.expire(59) == []
    cache.learn("a.example.", ["192.0.2.1"], 5, now=59)  # extends to 64
    assert cache.expire(60) == [] and cache.expire(64) == ["192.0.2.1"]


def test_original_destination_reads_ip_origdstaddr() -> None:
    sockaddr = struct.pack("=H", socket.AF_INET) + struct.pack("!H", 53)
    sockaddr += socket.inet_aton("10.0.0.53") + b"\0" * 8
    assert original_destination([(socket.SOL_IP, 20, sockaddr)]) == ("10.0.0.53", 53)
    assert original_destination([(socket.SOL_IP, 8, sockaddr)]) is None  # not ORIGDSTADDR
    assert original_destination([]) is None
