"""DNS core: query names as `rules.dns` sees them, answers with TTLs for `toFQDNs`, REFUSED and
NXDOMAIN refusals, miekg/dns-style screening, and TCP length-prefix framing."""

from __future__ import annotations

import struct

import dns.flags
import dns.message
import dns.opcode
import dns.rcode
import dns.rrset
import pytest
from proxyfeed import SPLITS, chunks, every_split, feed

from netstrata.proxy.dns import (
    AAAA,
    CNAME,
    FORMERR,
    NOTIMP,
    NXDOMAIN,
    REFUSED,
    A,
    DNSAnswer,
    DNSQuery,
    DNSResponse,
    DNSStreamParser,
    MalformedDNSMessage,
    build_answer,
    build_error_reply,
    build_refusal,
    parse_query,
    parse_response,
    tcp_frame,
)
from netstrata.proxy.errors import RemoteProtocolError
from netstrata.proxy.sansio import NEED_DATA, ConnectionClosed


def query(name: str = "www.example.com", rdtype: str = "A", **kwargs: object) -> bytes:
    return dns.message.make_query(name, rdtype, **kwargs).to_wire()  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "name,expected",
    [
        ("WWW.Example.COM", "www.example.com."),
        ("api.example.com.", "api.example.com."),
        (".", "."),
        ("under_score.example", "under_score.example."),
        ("with\\.dot.example", "with\\.dot.example."),
    ],
)
def test_query_name_is_lower_case_fqdn(name: str, expected: str) -> None:
    q = parse_query(query(name))
    assert q.qname == expected and q.qtype == A and q.qclass == 1 and q.opcode == 0


def test_query_fields() -> None:
    wire = query("cilium.io", "AAAA")
    q = parse_query(wire)
    assert q.qtype == AAAA and q.qtype_name == "AAAA" and q.recursion_desired
    assert q.wire == wire and q.id == struct.unpack(">H", wire[:2])[0]


def test_query_with_edns_is_accepted() -> None:
    assert parse_query(query("a.example", use_edns=0)).qname == "a.example."


def test_answers_carry_ttls_and_cname_chains() -> None:
    q = parse_query(query("WWW.Example.COM"))
    answers = [
        DNSAnswer("www.example.com.", CNAME, 300, "Web.Example.NET."),
        DNSAnswer("web.example.net.", A, 30, "192.0.2.10"),
        DNSAnswer("web.example.net.", A, 30, "192.0.2.11"),
        DNSAnswer("web.example.net.", AAAA, 60, "2001:db8::10"),
    ]
    response = parse_response(build_answer(q, answers))
    assert response.id == q.id and response.rcode == 0
    assert response.qname == "www.example.com." and response.qtype == A
    # RRsets keep their order; records inside one RRset have none (dnspython shuffles them)
    assert response.answers[0] == DNSAnswer("www.example.com.", CNAME, 300, "web.example.net.")
    assert set(response.answers[1:3]) == {
        DNSAnswer("web.example.net.", A, 30, "192.0.2.10"),
        DNSAnswer("web.example.net.", A, 30, "192.0.2.11"),
    }
    assert response.answers[3] == DNSAnswer("web.example.net.", AAAA, 60, "2001:db8::10")


def test_other_record_types_are_left_out_of_answers() -> None:
    msg = dns.message.make_response(dns.message.make_query("example.com", "TXT"))
    msg.answer.append(dns.rrset.from_text("example.com.", 60, "IN", "TXT", '"v=spf1"'))
    msg.answer.append(dns.rrset.from_text("example.com.", 60, "IN", "A", "192.0.2.1"))
    assert parse_response(msg.to_wire()).answers == (DNSAnswer("example.com.", A, 60, "192.0.2.1"),)


@pytest.mark.parametrize("rcode", [REFUSED, NXDOMAIN])
def test_refusal_keeps_id_and_question(rcode: int) -> None:
    wire = query("Denied.Example.com")
    q = parse_query(wire)
    reply = dns.message.from_wire(build_refusal(q, rcode))
    assert reply.id == q.id and reply.rcode() == rcode
    assert reply.flags & dns.flags.QR and reply.flags & dns.flags.RD
    assert reply.question[0].name.to_text() == "Denied.Example.com."  # echoed as asked
    assert not reply.answer and not reply.authority
    assert parse_response(build_refusal(q, rcode)).rcode == rcode


def test_default_refusal_is_refused() -> None:
    assert parse_response(build_refusal(parse_query(query()))).rcode == REFUSED == 5


def _with_header(
    wire: bytes, *, flags: int | None = None, counts: tuple[int, ...] | None = None
) -> bytes:
    ident, old_flags, *old_counts = struct.unpack(">HHHHHH", wire[:12])
    new_counts = counts if counts is not None else tuple(old_counts)
    return (
        struct.pack(">HHHHHH", ident, old_flags if flags is None else flags, *new_counts)
        + wire[12:]
    )


@pytest.mark.parametrize(
    "mutate,rcode",
    [
        (lambda w: _with_header(w, flags=0x8100), None),  # QR set: ignored, no reply
        (lambda w: _with_header(w, flags=dns.opcode.to_flags(dns.opcode.UPDATE)), NOTIMP),
        (lambda w: _with_header(w, flags=dns.opcode.to_flags(dns.opcode.STATUS)), NOTIMP),
        (lambda w: _with_header(w, counts=(0, 0, 0, 0)), FORMERR),
        (lambda w: _with_header(w, counts=(2, 0, 0, 0)), FORMERR),
        (lambda w: _with_header(w, counts=(1, 2, 0, 0)), FORMERR),
        (lambda w: _with_header(w, counts=(1, 0, 0, 3)), FORMERR),
        (lambda w: w[:-1], FORMERR),  # truncated question
        (lambda w: w + b"junk", FORMERR),  # trailing bytes
        (lambda w: w[:12] + b"\xc0\x0c" + w[-4:], FORMERR),  # compression pointer loop
        (lambda w: w[:12] + b"\x41" + w[13:], FORMERR),  # bad label type
    ],
)
def test_screening_and_malformed_queries(mutate: object, rcode: int | None) -> None:
    wire = mutate(query())  # type: ignore[operator]
    with pytest.raises(MalformedDNSMessage) as info:
        parse_query(wire)
    assert isinstance(info.value, RemoteProtocolError)
    assert info.value.rcode == rcode and info.value.query_id == struct.unpack(">H", wire[:2])[0]
    reply = build_error_reply(info.value)
    if rcode is None:
        assert reply is None
    else:
        assert reply is not None
        parsed = dns.message.from_wire(reply)
        assert parsed.id == info.value.query_id and parsed.rcode() == rcode
        assert parsed.flags & dns.flags.QR


def test_too_short_for_a_header_gets_no_reply() -> None:
    with pytest.raises(MalformedDNSMessage) as info:
        parse_query(b"\x12\x34\x01")
    assert info.value.query_id is None and build_error_reply(info.value) is None
    assert info.value.hint == FORMERR


def test_a_response_must_have_qr_set() -> None:
    with pytest.raises(MalformedDNSMessage):
        parse_response(query())


# ---- TCP framing --------------------------------------------------------------------------------


def test_tcp_stream_whole_bytewise_and_split() -> None:
    queries = [query(n) for n in ("a.example", "B.example", "c.example")]
    stream = b"".join(tcp_frame(q) for q in queries)
    events = every_split(DNSStreamParser, stream)
    assert [e.qname for e in events] == ["a.example.", "b.example.", "c.example."]
    assert all(isinstance(e, DNSQuery) for e in events)


def test_tcp_trailing_partial_message_waits() -> None:
    parser = DNSStreamParser()
    events = feed(parser, tcp_frame(query()) + b"\x00\x20\x12")
    assert len(events) == 1 and parser.next_event() is NEED_DATA and parser.buffered_bytes == 3


def test_tcp_responses_on_the_client_side() -> None:
    q = parse_query(query())
    stream = tcp_frame(build_refusal(q)) + tcp_frame(
        build_answer(q, [DNSAnswer("www.example.com.", A, 5, "192.0.2.1")])
    )
    events = every_split(lambda: DNSStreamParser("client"), stream)
    assert [type(e) for e in events] == [DNSResponse, DNSResponse]
    assert [e.rcode for e in events] == [REFUSED, 0]


@pytest.mark.parametrize("how", SPLITS)
def test_tcp_garbage_message_raises_and_the_stream_goes_on(how: str) -> None:
    parser = DNSStreamParser()
    stream = tcp_frame(b"\x00\x01garbage-garbage") + tcp_frame(query("ok.example"))
    errors, events = [], []
    for piece in chunks(stream, how):
        parser.receive_data(piece)
        while True:
            try:
                event = parser.next_event()
            except MalformedDNSMessage as exc:
                errors.append(exc)
                continue
            if event is NEED_DATA:
                break
            events.append(event)
    assert len(errors) == 1 and [e.qname for e in events] == ["ok.example."]


def test_tcp_eof_at_a_boundary_and_inside_a_message() -> None:
    assert feed(DNSStreamParser(), tcp_frame(query()), eof=True)[-1] == ConnectionClosed()
    with pytest.raises(RemoteProtocolError) as info:
        feed(DNSStreamParser(), tcp_frame(query())[:-3], eof=True)
    assert info.value.hint == FORMERR


def test_tcp_frame_refuses_oversized_messages() -> None:
    from netstrata.proxy.errors import LocalProtocolError

    with pytest.raises(LocalProtocolError):
        tcp_frame(b"x" * 65536)
    assert tcp_frame(b"x" * 3) == b"\x00\x03xxx"


def test_rcode_constants_match_dnspython() -> None:
    assert (REFUSED, NXDOMAIN, FORMERR, NOTIMP) == (
        dns.rcode.REFUSED,
        dns.rcode.NXDOMAIN,
        dns.rcode.FORMERR,
        dns.rcode.NOTIMP,
    )
