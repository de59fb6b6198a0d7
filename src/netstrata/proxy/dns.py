"""DNS core for the node proxy: message parsing and answer building on dnspython, no sockets.

What the proxy needs (reference §1.5.1, §6): the query name of each query (lower-cased, fully
qualified, the only thing `rules.dns` looks at), the answers of each response (A/AAAA/CNAME with
their TTLs, which feed `toFQDNs` in `fqdn/`), and the refusal a denied query gets: REFUSED (5),
or NXDOMAIN (3) with `--tofqdns-dns-reject-response-code=nameError`.

Queries are screened the way Cilium's DNS proxy screens them, since it is a miekg/dns server
using that library's default accept function: a message with QR set is ignored (no reply); an
opcode other than QUERY or NOTIFY gets NOTIMP; QDCOUNT other than 1 (RFC 9619), more than one
answer or authority record, or more than two additional records get FORMERR. These raise
`MalformedDNSMessage` (a `RemoteProtocolError`) whose `hint` is the RCODE to answer with, or
None when the message must be ignored; `build_error_reply` writes that answer.

TCP (RFC 1035 §4.2.2, RFC 7766): each message is preceded by a 2-byte big-endian length.
`DNSStreamParser` splits a stream; since the length field cannot exceed 65535 the parser never
holds more than 65537 bytes. A garbage message inside intact framing raises and the stream goes
on with the next message, as in the Kafka core. Over UDP a datagram is one message.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Final, Literal

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from netstrata.proxy.errors import LocalProtocolError, RemoteProtocolError
from netstrata.proxy.sansio import NEED_DATA, ConnectionClosed, Sentinel

NOERROR: Final = 0
FORMERR: Final = 1
SERVFAIL: Final = 2
NXDOMAIN: Final = 3
NOTIMP: Final = 4
REFUSED: Final = 5

A: Final = 1
CNAME: Final = 5
AAAA: Final = 28

MAX_MESSAGE_SIZE: Final = 65535
"""The largest message a TCP length prefix (or a UDP datagram) can carry."""

_HEADER: Final = struct.Struct(">HHHHHH")
_QR: Final = 0x8000


@dataclass(frozen=True, slots=True)
class DNSQuery:
    """One query, as the DNS proxy sees it."""

    id: int
    """Message ID (16 bits)."""
    qname: str
    """Question name, lower-cased and fully qualified (`www.example.com.`), escapes as in
    presentation format."""
    qtype: int
    """Question type (1 A, 28 AAAA, 5 CNAME, ...)."""
    qclass: int = 1
    """Question class (1 IN)."""
    opcode: int = 0
    """0 QUERY or 4 NOTIFY (others are refused before parsing)."""
    recursion_desired: bool = True
    """RD flag."""
    wire: bytes = field(default=b"", repr=False)
    """The message as received, to forward unchanged."""

    @property
    def qtype_name(self) -> str:
        """Mnemonic of `qtype` (`A`, `AAAA`, `TYPE65280`)."""
        return dns.rdatatype.to_text(dns.rdatatype.RdataType.make(self.qtype))


@dataclass(frozen=True, slots=True)
class DNSAnswer:
    """One A, AAAA or CNAME record from an answer section."""

    name: str
    """Owner name, lower-cased and fully qualified."""
    rtype: int
    """1 A, 28 AAAA or 5 CNAME."""
    ttl: int
    """Time to live, seconds."""
    value: str
    """The address text for A/AAAA, the lower-cased target name for CNAME."""


@dataclass(frozen=True, slots=True)
class DNSResponse:
    """One response, as the DNS proxy sees it on its way back to the client."""

    id: int
    """Message ID."""
    rcode: int
    """Response code (0 NOERROR, 3 NXDOMAIN, 5 REFUSED, ...)."""
    qname: str | None
    """Question name (lower-cased FQDN), if the response carries its question."""
    qtype: int | None
    """Question type, if present."""
    answers: tuple[DNSAnswer, ...] = ()
    """A/AAAA/CNAME records of the answer section, in order; other types are left out."""
    wire: bytes = field(default=b"", repr=False)
    """The message as received."""


class MalformedDNSMessage(RemoteProtocolError):
    """A message the proxy will not process; `hint` is the RCODE to answer, None to ignore."""

    def __init__(
        self, message: str, *, rcode: int | None, query_id: int | None, opcode: int = 0
    ) -> None:
        super().__init__(message, hint=FORMERR if rcode is None else rcode)
        self.rcode = rcode
        """RCODE of the reply to send, or None when the message gets no reply at all."""
        self.query_id = query_id
        """Message ID when the 12-byte header was readable."""
        self.opcode = opcode
        """Opcode from the header (echoed in the reply)."""


def _lower_fqdn(name: dns.name.Name) -> str:
    # to_text escapes every non-printable byte as \DDD, so lower() only touches ASCII letters
    return name.to_text().lower()


def _screen_header(wire: bytes, *, query: bool) -> tuple[int, int]:
    """(id, opcode) after miekg/dns's default accept checks; raises MalformedDNSMessage."""
    if len(wire) < _HEADER.size:
        raise MalformedDNSMessage("message shorter than a DNS header", rcode=None, query_id=None)
    if len(wire) > MAX_MESSAGE_SIZE:
        raise MalformedDNSMessage("message over 65535 bytes", rcode=None, query_id=None)
    ident, flags, qd, an, ns, ar = _HEADER.unpack_from(wire)
    opcode = (flags >> 11) & 0xF
    if not query:
        return ident, opcode
    problem: tuple[str, int | None] | None = None
    if flags & _QR:
        problem = ("QR set on a query", None)
    elif opcode not in (dns.opcode.QUERY, dns.opcode.NOTIFY):
        problem = (f"opcode {opcode} not implemented", NOTIMP)
    elif qd != 1:
        problem = (f"QDCOUNT {qd} (must be 1)", FORMERR)
    elif an > 1 or ns > 1 or ar > 2:
        problem = (f"unexpected record counts an={an} ns={ns} ar={ar}", FORMERR)
    if problem:
        raise MalformedDNSMessage(problem[0], rcode=problem[1], query_id=ident, opcode=opcode)
    return ident, opcode


def _from_wire(wire: bytes, ident: int, opcode: int) -> dns.message.Message:
    try:
        return dns.message.from_wire(wire, ignore_trailing=False)
    except (dns.exception.DNSException, ValueError, struct.error, IndexError) as exc:
        raise MalformedDNSMessage(
            f"malformed DNS message: {exc}", rcode=FORMERR, query_id=ident, opcode=opcode
        ) from exc


def parse_query(wire: bytes) -> DNSQuery:
    """Parse one query message (a UDP datagram, or one message out of `DNSStreamParser`).

    Raises:
        MalformedDNSMessage: rejected or unparsable; `rcode` says how to answer.
    """
    ident, opcode = _screen_header(wire, query=True)
    message = _from_wire(wire, ident, opcode)
    question = message.question[0]
    return DNSQuery(
        id=ident,
        qname=_lower_fqdn(question.name),
        qtype=int(question.rdtype),
        qclass=int(question.rdclass),
        opcode=opcode,
        recursion_desired=bool(message.flags & dns.flags.RD),
        wire=wire,
    )


def _answers(message: dns.message.Message) -> tuple[DNSAnswer, ...]:
    out: list[DNSAnswer] = []
    for rrset in message.answer:
        if rrset.rdclass != dns.rdataclass.IN or rrset.rdtype not in (A, AAAA, CNAME):
            continue
        owner = _lower_fqdn(rrset.name)
        for rdata in rrset:
            if rrset.rdtype == CNAME:
                value = _lower_fqdn(rdata.target)
            else:
                value = str(rdata.address)
            out.append(DNSAnswer(owner, int(rrset.rdtype), int(rrset.ttl), value))
    return tuple(out)


def parse_response(wire: bytes) -> DNSResponse:
    """Parse one response from an upstream server.

    Raises:
        MalformedDNSMessage: unparsable (`rcode` FORMERR) or too short (`rcode` None).
    """
    ident, opcode = _screen_header(wire, query=False)
    message = _from_wire(wire, ident, opcode)
    if not message.flags & dns.flags.QR:
        raise MalformedDNSMessage("QR not set on a response", rcode=None, query_id=ident)
    question = message.question[0] if message.question else None
    return DNSResponse(
        id=ident,
        rcode=int(message.rcode()),
        qname=_lower_fqdn(question.name) if question is not None else None,
        qtype=int(question.rdtype) if question is not None else None,
        answers=_answers(message),
        wire=wire,
    )


def _reply_to(query: DNSQuery) -> dns.message.Message:
    try:
        message = dns.message.from_wire(query.wire)
    except dns.exception.DNSException as exc:
        raise LocalProtocolError("DNSQuery.wire is not a valid query") from exc
    return dns.message.make_response(message)


def build_refusal(query: DNSQuery, rcode: int = REFUSED) -> bytes:
    """The reply a denied query gets: same ID and question, `rcode`, no records.

    Args:
        query: the denied query.
        rcode: REFUSED (Cilium's default) or NXDOMAIN (`nameError`).
    """
    response = _reply_to(query)
    response.set_rcode(dns.rcode.Rcode(rcode))
    return response.to_wire()


def build_answer(query: DNSQuery, answers: Iterable[DNSAnswer], rcode: int = NOERROR) -> bytes:
    """A response carrying `answers` (for the lab's DNS server and tests); authoritative."""
    response = _reply_to(query)
    response.flags |= dns.flags.AA
    response.set_rcode(dns.rcode.Rcode(rcode))
    for answer in answers:
        rdtype = dns.rdatatype.RdataType.make(answer.rtype)
        rdata = dns.rdata.from_text(dns.rdataclass.IN, rdtype, answer.value)
        rrset = response.find_rrset(
            response.answer,
            dns.name.from_text(answer.name),
            dns.rdataclass.IN,
            rdtype,
            create=True,
        )
        rrset.add(rdata, answer.ttl)
    return response.to_wire()


def build_error_reply(error: MalformedDNSMessage) -> bytes | None:
    """Header-only reply (ID, opcode, QR, `error.rcode`) to a rejected message, or None when
    it must be ignored (no readable ID, or miekg/dns would drop it silently)."""
    if error.rcode is None or error.query_id is None:
        return None
    flags = _QR | (error.opcode << 11) | (error.rcode & 0xF)
    return _HEADER.pack(error.query_id, flags, 0, 0, 0, 0)


def tcp_frame(message: bytes) -> bytes:
    """Prefix a message with its 2-byte length for DNS over TCP."""
    if len(message) > MAX_MESSAGE_SIZE:
        raise LocalProtocolError("DNS message over 65535 bytes")
    return struct.pack(">H", len(message)) + message


class DNSStreamParser:
    """Length-prefixed DNS messages over TCP: queries (`server`) or responses (`client`)."""

    def __init__(self, role: Literal["server", "client"] = "server") -> None:
        self.role: Final = role
        self._buf = bytearray()
        self._eof = False

    @property
    def buffered_bytes(self) -> int:
        """Bytes of an incomplete message held (at most 65537)."""
        return len(self._buf)

    def receive_data(self, data: bytes) -> None:
        """Add received bytes; b"" means the peer closed its sending side."""
        if data:
            if self._eof:
                raise LocalProtocolError("received data after EOF")
            self._buf += data
        else:
            self._eof = True

    def next_event(self) -> DNSQuery | DNSResponse | ConnectionClosed | Sentinel:
        """The next message, ConnectionClosed, or NEED_DATA.

        Raises:
            MalformedDNSMessage: one bad message (the stream continues after it).
            RemoteProtocolError: EOF inside a message (hint FORMERR).
        """
        if len(self._buf) >= 2:
            size = struct.unpack_from(">H", self._buf)[0]
            if len(self._buf) >= 2 + size:
                wire = bytes(self._buf[2 : 2 + size])
                del self._buf[: 2 + size]
                return parse_query(wire) if self.role == "server" else parse_response(wire)
        if not self._eof:
            return NEED_DATA
        if self._buf:
            self._buf.clear()
            raise RemoteProtocolError("connection closed inside a DNS message", hint=FORMERR)
        return ConnectionClosed()


__all__ = [
    "AAAA",
    "CNAME",
    "FORMERR",
    "MAX_MESSAGE_SIZE",
    "NOERROR",
    "NOTIMP",
    "NXDOMAIN",
    "REFUSED",
    "SERVFAIL",
    "A",
    "DNSAnswer",
    "DNSQuery",
    "DNSResponse",
    "DNSStreamParser",
    "MalformedDNSMessage",
    "build_answer",
    "build_error_reply",
    "build_refusal",
    "parse_query",
    "parse_response",
    "tcp_frame",
]
