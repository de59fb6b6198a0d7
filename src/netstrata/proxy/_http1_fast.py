"""The common request head in one pass, for the HTTP/1.1 core's per-request fast path.

`parse_request_head` (`_http1_head.py`) validates a head field by field in Python: about a
dozen regex calls and a tuple per line, then framing and Host checks that walk the headers
again. Nearly every request a pod sends is the plain case: an origin-form target, HTTP/1.1,
one Host, at most one Content-Length, no Transfer-Encoding. `parse_plain_request_head`
recognizes exactly that case with one anchored regex over the whole head (RFC 9112's grammar
for it, so CRLF-only line endings, no obs-fold, token names directly followed by the colon and
field values of VCHAR/SP/HTAB/obs-text are checked in C) plus one `findall` for the fields,
and returns the `RequestHead` the full parser would return for the same bytes.

Anything else returns None and the caller hands the bytes to the full parser, which accepts or
refuses them with its usual status hints: bare LF/CR, obs-fold, `#`/absolute/asterisk targets,
HTTP/1.0, Transfer-Encoding, repeated or comma-listed Content-Length, a missing, repeated or
malformed Host, heads, targets or field counts over the limits, a body over `max_body`. The
fast path therefore never accepts what the full parser refuses, and never refuses anything
itself (a property test in tests/unit/proxy compares the two on generated heads).
"""

from __future__ import annotations

import re
from typing import Final

from netstrata.proxy._http1_head import connection_tokens, is_keep_alive
from netstrata.proxy.http1_events import RequestHead, ResponseHead

_TOKEN: Final = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_VALUE_CHARS: Final = rb"[\t\x20-\x7e\x80-\xff]"
# request-line for origin-form targets (no `#`, RFC 9112 §3.2.1), then field lines, then CRLF
_PLAIN_HEAD_RE: Final = re.compile(
    rb"(" + _TOKEN + rb") (/[\x21\x22\x24-\x7e]*) HTTP/1\.1\r\n"
    rb"((?:" + _TOKEN + rb":" + _VALUE_CHARS + rb"*\r\n)*)\r\n"
)
# one field line of a block `_PLAIN_HEAD_RE` accepted; OWS around the value is not part of it
_FIELD_RE: Final = re.compile(rb"(" + _TOKEN + rb"):[ \t]*(" + _VALUE_CHARS + rb"*?)[ \t]*\r\n")
# a final response's status line with a reason phrase (possibly empty), then field lines
_PLAIN_RESPONSE_RE: Final = re.compile(
    rb"HTTP/1\.1 ([2-9][0-9][0-9]) (" + _VALUE_CHARS + rb"*)\r\n"
    rb"((?:" + _TOKEN + rb":" + _VALUE_CHARS + rb"*\r\n)*)\r\n"
)
_DIGITS_RE: Final = re.compile(r"[0-9]{1,18}\Z")
# the full parser's Host grammar (uri-host [":" port]); kept identical to `_http1_head._HOST_RE`
_HOST_RE: Final = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)(?::[0-9]*)?\Z")
_SPECIAL: Final = frozenset({"host", "content-length", "transfer-encoding", "connection"})


def parse_plain_request_head(
    head: bytes, *, max_target: int, max_fields: int, max_body: int | None
) -> RequestHead | None:
    """The `RequestHead` of a plain request head (see the module docstring), else None.

    `head` is one complete head, request line through the blank line, exactly as received.
    """
    match = _PLAIN_HEAD_RE.fullmatch(head)
    if match is None:
        return None
    raw_method, raw_target, block = match.groups()
    if len(raw_target) > max_target:
        return None
    fields = _FIELD_RE.findall(block)
    if len(fields) > max_fields:
        return None
    headers = tuple((n.decode("ascii"), v.decode("latin-1")) for n, v in fields)
    host: str | None = None
    length: int | None = None
    keep_alive = True
    for name, value in headers:
        lower = name.lower()
        if lower not in _SPECIAL:
            continue
        if lower == "host":
            if host is not None or not _HOST_RE.match(value):
                return None
            host = value
        elif lower == "content-length":
            if length is not None or not _DIGITS_RE.match(value):
                return None
            length = int(value)
        elif lower == "connection":
            keep_alive = keep_alive and "close" not in connection_tokens(((name, value),))
        else:
            return None  # Transfer-Encoding: the full parser's framing rules decide
    if host is None or (max_body is not None and length is not None and length > max_body):
        return None
    return RequestHead(
        method=raw_method.decode("ascii"),
        target=raw_target.decode("ascii"),
        version="1.1",
        headers=headers,
        host=host,
        keep_alive=keep_alive,
        content_length=length,
        chunked=False,
    )


def parse_plain_response_head(head: bytes, *, max_fields: int) -> ResponseHead | None:
    """The `ResponseHead` the full parser gives for an HTTP/1.1 final response head with
    CRLF line endings and well-formed fields, else None (1xx, HTTP/1.0, anything odd: the
    full parser decides). Framing is not judged here: the core does that for every head."""
    match = _PLAIN_RESPONSE_RE.fullmatch(head)
    if match is None:
        return None
    raw_status, raw_reason, block = match.groups()
    fields = _FIELD_RE.findall(block)
    if len(fields) > max_fields:
        return None
    headers = tuple((n.decode("ascii"), v.decode("latin-1")) for n, v in fields)
    return ResponseHead(
        status=int(raw_status),
        reason=raw_reason.decode("latin-1"),
        version="1.1",
        headers=headers,
        keep_alive=is_keep_alive("1.1", headers),
    )


__all__ = ["parse_plain_request_head", "parse_plain_response_head"]
