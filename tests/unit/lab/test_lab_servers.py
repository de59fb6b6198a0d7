"""The lab server's protocol cores: DNS answers, HTTP responses, listener choice."""

from __future__ import annotations

import json

import dns.message
import dns.rcode

from netstrata.lab.servers import Listen, dns_reply, http_response, listens_for

RECORDS = {"api.example.com": ("192.0.2.10", "192.0.2.11", "2001:db8::1")}


def _ask(name: str, qtype: str = "A") -> dns.message.Message:
    wire = dns.message.make_query(name, qtype).to_wire()
    reply = dns_reply(wire, RECORDS)
    assert reply is not None
    return dns.message.from_wire(reply)


def test_dns_answers_known_names_with_their_ipv4_addresses() -> None:
    answer = _ask("api.example.com.")
    assert answer.rcode() == dns.rcode.NOERROR
    assert sorted(r.address for rr in answer.answer for r in rr) == ["192.0.2.10", "192.0.2.11"]


def test_dns_unknown_name_is_nxdomain_and_other_types_are_empty() -> None:
    assert _ask("nope.example.com.").rcode() == dns.rcode.NXDOMAIN
    aaaa = _ask("api.example.com.", "AAAA")
    assert aaaa.rcode() == dns.rcode.NOERROR and not aaaa.answer


def test_dns_garbage_gets_formerr_or_nothing() -> None:
    reply = dns_reply(b"\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xff", RECORDS)
    assert reply is None or reply[:2] == b"\x12\x34"


def _status(head: bytes) -> tuple[int, bytes]:
    response = http_response(head, "pod-a")
    status_line, _, rest = response.partition(b"\r\n")
    return int(status_line.split()[1]), rest.split(b"\r\n\r\n", 1)[1]


def test_http_answers_what_the_shared_app_table_says() -> None:
    status, body = _status(b"GET /anything?x=1 HTTP/1.1\r\nHost: a")
    assert status == 200 and json.loads(body)["path"] == "/anything?x=1"
    assert _status(b"GET /auth-header-required HTTP/1.1\r\nHost: a")[0] == 401
    ok = b"GET /auth-header-required HTTP/1.1\r\nAuthorization: Bearer 123456"
    assert _status(ok)[0] == 200
    assert _status(b"nonsense")[0] == 400


def test_head_gets_no_body() -> None:
    assert http_response(b"HEAD / HTTP/1.1\r\nHost: a", "p").endswith(b"\r\n\r\n")


def test_listeners_tls_on_https_ports_and_no_sctp_sockets() -> None:
    got = listens_for([(443, "TCP"), (80, "tcp"), (53, "UDP"), (132, "SCTP"), (80, "TCP")])
    assert got == (Listen(53, "UDP"), Listen(80, "TCP"), Listen(443, "TCP", tls=True))
