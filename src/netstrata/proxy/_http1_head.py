"""HTTP/1.1 head parsing, validation and message framing (RFC 9112), for `proxy/http1.py`.

This module turns one complete head (start line + field lines + blank line, as bytes) into a
`RequestHead`/`ResponseHead`, and decides how the body that follows is framed. It knows nothing
about connection state. Every rejection is a `RemoteProtocolError` whose hint is the status a
server answers with (or 502 when the bytes came from an upstream server).

Decisions, each a place where RFC 9112 lets a recipient choose and a proxy must choose strictly,
because a proxy and the server behind it disagreeing about message boundaries is request
smuggling:

* Line endings: only CRLF. A bare LF (which §2.2 lets a recipient accept) or a bare CR (§2.2:
  MUST reject or replace) anywhere in the head is 400. Accepting bare LF is what lets
  `Transfer-Encoding` hide from one hop and not the other; Envoy's strict mode and h11 reject it.
* obs-fold (§5.2): 400. Whitespace between a field name and its colon (§5.1): 400.
* Field names must be tokens; values may hold VCHAR, SP, HTAB and obs-text, never NUL/CR/LF/CTL.
* Transfer-Encoding together with Content-Length: 400 (§6.3 allows dropping Content-Length;
  Envoy rejects unless `allow_chunked_length`, and so do we). Transfer-Encoding in an HTTP/1.0
  request: 400 (§6.1 says its framing is faulty). Any coding list other than exactly `chunked`:
  501 if it ends in `chunked` (a coding we do not implement), else 400 (§6.3 item 4).
* Several Content-Length values (field lines or a comma list): accepted only when all are the
  same decimal number (RFC 9110 §8.6), else 400. Signs, spaces inside and more than 18 digits
  are 400.
* HTTP/1.1 requests need exactly one valid Host (§3.2): missing, repeated or malformed is 400.
* A request-target with `#`, with a non-ASCII or control byte, or of an unknown form is 400;
  an HTTP major version other than 1 is 505.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Final, Literal

from netstrata.proxy.errors import RemoteProtocolError
from netstrata.proxy.http1_events import (
    Headers,
    InformationalResponse,
    RequestHead,
    ResponseHead,
    get_all_headers,
)

_TOKEN: Final = rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_TOKEN_RE: Final = re.compile(_TOKEN + rb"\Z")
# field-value = *field-content, trimmed of OWS; VCHAR / obs-text / SP / HTAB (RFC 9110 §5.5)
_FIELD_VALUE_RE: Final = re.compile(rb"[\t\x20-\x7e\x80-\xff]*\Z")
_TARGET_RE: Final = re.compile(rb"[\x21-\x7e]+\Z")
_VERSION_RE: Final = re.compile(rb"HTTP/([0-9])\.([0-9])\Z")
_STATUS_LINE_RE: Final = re.compile(
    rb"HTTP/([0-9])\.([0-9]) ([0-9]{3})(?: ([\t\x20-\x7e\x80-\xff]*))?\Z"
)
# Host = uri-host [ ":" port ] (RFC 9110 §7.2); reg-name or IP-literal, no userinfo.
_HOST_RE: Final = re.compile(r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-._~%!$&'()*+,;=]*)(?::[0-9]*)?\Z")
_ABSOLUTE_RE: Final = re.compile(r"([A-Za-z][A-Za-z0-9+\-.]*)://([^/?#]*)")
_CONTENT_LENGTH_RE: Final = re.compile(r"[0-9]{1,18}\Z")
BLANK_LINE_RE: Final = re.compile(rb"\n\r?\n")
"""The end of a head or trailer section: a line break followed by an empty line. Bare-LF
variants are found too, so that they are rejected at once instead of waiting for a CRLF."""

BodyKind = Literal["none", "length", "chunked", "close"]


@dataclass(frozen=True, slots=True)
class Framing:
    """How the body after a head is delimited."""

    kind: BodyKind
    """`none`, `length` (Content-Length), `chunked`, or `close` (read until EOF, responses)."""
    length: int = 0
    """Body length for `length`."""


def is_valid_field(name: str, value: str) -> bool:
    """True when `name: value` may be written as one field line (no CR/LF injection)."""
    try:
        raw_name, raw_value = name.encode("ascii"), value.encode("latin-1")
    except UnicodeEncodeError:
        return False
    return bool(
        _TOKEN_RE.match(raw_name)
        and _FIELD_VALUE_RE.match(raw_value)
        and raw_value == raw_value.strip(b" \t")
    )


def is_valid_token(text: str) -> bool:
    """True when `text` is an RFC 9110 token (a method, a field name)."""
    return text.isascii() and bool(_TOKEN_RE.match(text.encode("ascii")))


def check_crlf(head: bytes, status: int) -> None:
    """Reject a head whose lines are not all terminated by CRLF (bare LF or bare CR)."""
    stripped = head.replace(b"\r\n", b"")
    if b"\n" in stripped:
        raise RemoteProtocolError("bare LF line ending in message head", hint=status)
    if b"\r" in stripped:
        raise RemoteProtocolError("bare CR in message head", hint=status)


def parse_fields(lines: list[bytes], *, max_count: int, status: int) -> Headers:
    """Parse field lines (no line terminators) into (name, value) pairs.

    Raises:
        RemoteProtocolError: obs-fold, a malformed name or value (hint `status`), or more than
            `max_count` fields (431 for requests, `status` otherwise).
    """
    if len(lines) > max_count:
        hint = 431 if status == 400 else status
        raise RemoteProtocolError(f"more than {max_count} header fields", hint=hint)
    out: list[tuple[str, str]] = []
    for line in lines:
        if line[:1] in (b" ", b"\t"):
            raise RemoteProtocolError("obs-fold (folded header line) is not accepted", hint=status)
        name, colon, value = line.partition(b":")
        if not colon or not _TOKEN_RE.match(name):
            raise RemoteProtocolError(f"invalid header name {name[:40]!r}", hint=status)
        value = value.strip(b" \t")
        if not _FIELD_VALUE_RE.match(value):
            raise RemoteProtocolError(f"invalid value for header {name[:40]!r}", hint=status)
        out.append((name.decode("ascii"), value.decode("latin-1")))
    return tuple(out)


def split_head(head: bytes, status: int) -> tuple[bytes, list[bytes]]:
    """Split a complete head (ending in the blank line) into start line and field lines."""
    check_crlf(head, status)
    # after check_crlf every LF follows a CR, so a complete head ends in CRLF CRLF
    lines = head[:-4].split(b"\r\n")
    return lines[0], lines[1:]


def connection_tokens(headers: Headers) -> set[str]:
    """Lower-cased tokens of every Connection field (RFC 9110 §7.6.1)."""
    tokens: set[str] = set()
    for value in get_all_headers(headers, "connection"):
        tokens.update(t.strip().lower() for t in value.split(",") if t.strip())
    return tokens


def is_keep_alive(version: str, headers: Headers) -> bool:
    """Persistence per RFC 9112 §9.3: 1.1 unless `close`; 1.0 only with `keep-alive`."""
    if version == "1.1" and not any(k.lower() == "connection" for k, _ in headers):
        return True  # the common case, without building the token set
    tokens = connection_tokens(headers)
    if "close" in tokens:
        return False
    return version == "1.1" or "keep-alive" in tokens


def _content_length(values: list[str], status: int) -> int | None:
    if not values:
        return None
    seen: set[str] = set()
    for value in values:
        for item in value.split(","):
            item = item.strip(" \t")
            if not _CONTENT_LENGTH_RE.match(item):
                raise RemoteProtocolError(f"invalid Content-Length {value[:40]!r}", hint=status)
            seen.add(item.lstrip("0") or "0")
    if len(seen) != 1:
        raise RemoteProtocolError("conflicting Content-Length values", hint=status)
    return int(seen.pop())


def _transfer_codings(values: list[str]) -> list[str] | None:
    if not values:
        return None
    return [c.strip(" \t").lower() for v in values for c in v.split(",")]


def body_framing(headers: Headers, version: str, *, status: int, is_request: bool) -> Framing:
    """Framing from Transfer-Encoding/Content-Length (RFC 9112 §6.3 items 3-6).

    Raises:
        RemoteProtocolError: the smuggling-prone combinations listed in the module docstring.
    """
    te: list[str] = []
    cl: list[str] = []
    for key, value in headers:  # one pass: framing is decided for every message, twice per hop
        lower = key.lower()
        if lower == "content-length":
            cl.append(value)
        elif lower == "transfer-encoding":
            te.append(value)
    codings = _transfer_codings(te)
    length = _content_length(cl, status)
    if codings is not None:
        if length is not None:
            raise RemoteProtocolError(
                "both Transfer-Encoding and Content-Length (request smuggling risk)", hint=status
            )
        if version == "1.0":
            raise RemoteProtocolError("Transfer-Encoding in an HTTP/1.0 message", hint=status)
        if codings == ["chunked"]:
            return Framing("chunked")
        if codings.count("chunked") > 1 or "" in codings:  # §6.1: chunked at most once
            raise RemoteProtocolError(f"invalid Transfer-Encoding {codings!r}", hint=status)
        if codings[-1] == "chunked" and is_request:
            raise RemoteProtocolError(f"unsupported transfer coding {codings!r}", hint=501)
        if is_request or codings.count("chunked"):
            raise RemoteProtocolError(f"invalid Transfer-Encoding {codings!r}", hint=status)
        return Framing("close")  # a response with a non-chunked coding runs until close
    if length is not None:
        return Framing("length", length)
    return Framing("none") if is_request else Framing("close")


def _check_target(method: str, target: str, limits_target: int) -> None:
    if len(target) > limits_target:
        raise RemoteProtocolError(f"request-target longer than {limits_target} bytes", hint=414)
    if "#" in target:
        raise RemoteProtocolError("fragment in request-target", hint=400)
    if target.startswith("/"):
        return
    if target == "*" and method == "OPTIONS":
        return
    if method == "CONNECT":
        if _HOST_RE.match(target) and ":" in target:
            return
        raise RemoteProtocolError("CONNECT target must be host:port", hint=400)
    match = _ABSOLUTE_RE.match(target)
    if match and match.group(1).lower() in ("http", "https") and _HOST_RE.match(match.group(2)):
        return
    raise RemoteProtocolError(f"unsupported request-target form {target[:40]!r}", hint=400)


def _version(major: bytes, minor: bytes, status: int) -> str:
    if major != b"1":
        raise RemoteProtocolError(f"HTTP/{major.decode()} is not supported", hint=505)
    return "1.0" if minor == b"0" else "1.1"


def _request_host(method: str, target: str, version: str, headers: Headers) -> str | None:
    hosts = get_all_headers(headers, "host")
    if len(hosts) > 1:
        raise RemoteProtocolError("more than one Host header", hint=400)
    if hosts and not _HOST_RE.match(hosts[0]):
        raise RemoteProtocolError(f"invalid Host {hosts[0][:40]!r}", hint=400)
    if not hosts and version == "1.1":
        raise RemoteProtocolError("HTTP/1.1 request without Host", hint=400)
    match = _ABSOLUTE_RE.match(target)
    if match:  # RFC 9112 §3.2.2: the target's authority replaces Host
        return match.group(2)
    if method == "CONNECT":
        return target
    return hosts[0] if hosts else None


def parse_request_head(
    head: bytes, *, max_target: int, max_fields: int, max_body: int | None
) -> RequestHead:
    """Parse one complete request head (start line through the blank line).

    Raises:
        RemoteProtocolError: hint 400, 413, 414, 431, 501 or 505.
    """
    start, field_lines = split_head(head, 400)
    parts = start.split(b" ")
    if len(parts) != 3:
        if len(parts) >= 2 and len(parts[1]) > max_target:
            raise RemoteProtocolError(f"request-target longer than {max_target} bytes", hint=414)
        raise RemoteProtocolError(f"malformed request line {start[:60]!r}", hint=400)
    raw_method, raw_target, raw_version = parts
    version_match = _VERSION_RE.match(raw_version)
    if not _TOKEN_RE.match(raw_method) or not version_match:
        raise RemoteProtocolError(f"malformed request line {start[:60]!r}", hint=400)
    if len(raw_target) > max_target:
        raise RemoteProtocolError(f"request-target longer than {max_target} bytes", hint=414)
    if not _TARGET_RE.match(raw_target):
        raise RemoteProtocolError("request-target holds a byte outside visible ASCII", hint=400)
    method, target = raw_method.decode("ascii"), raw_target.decode("ascii")
    version = _version(version_match.group(1), version_match.group(2), 400)
    _check_target(method, target, max_target)
    headers = parse_fields(field_lines, max_count=max_fields, status=400)
    host = _request_host(method, target, version, headers)
    framing = body_framing(headers, version, status=400, is_request=True)
    if max_body is not None and framing.kind == "length" and framing.length > max_body:
        raise RemoteProtocolError(f"request body larger than {max_body} bytes", hint=413)
    return RequestHead(
        method=method,
        target=target,
        version=version,
        headers=headers,
        host=host,
        keep_alive=is_keep_alive(version, headers),
        content_length=framing.length if framing.kind == "length" else None,
        chunked=framing.kind == "chunked",
    )


def parse_response_head(head: bytes, *, max_fields: int) -> ResponseHead | InformationalResponse:
    """Parse one complete response head; errors carry hint 502 (the upstream misbehaved)."""
    start, field_lines = split_head(head, 502)
    match = _STATUS_LINE_RE.match(start)
    if not match:
        raise RemoteProtocolError(f"malformed status line {start[:60]!r}", hint=502)
    version = _version(match.group(1), match.group(2), 502)
    status = int(match.group(3))
    if status < 100:
        raise RemoteProtocolError(f"invalid status code {status}", hint=502)
    reason = (match.group(4) or b"").decode("latin-1")
    headers = parse_fields(field_lines, max_count=max_fields, status=502)
    if status < 200:
        return InformationalResponse(status=status, reason=reason, headers=headers)
    return ResponseHead(
        status=status,
        reason=reason,
        version=version,
        headers=headers,
        keep_alive=is_keep_alive(version, headers),
    )


def response_framing(head: ResponseHead, request_method: str) -> Framing:
    """Body framing of a final response to `request_method` (RFC 9112 §6.3 items 1-2)."""
    if request_method == "HEAD" or head.status in (204, 304):
        return Framing("none")
    if request_method == "CONNECT" and 200 <= head.status < 300:
        return Framing("none")  # the connection becomes a tunnel
    return body_framing(head.headers, head.version, status=502, is_request=False)


__all__ = [
    "BLANK_LINE_RE",
    "Framing",
    "body_framing",
    "check_crlf",
    "connection_tokens",
    "is_keep_alive",
    "is_valid_field",
    "is_valid_token",
    "parse_fields",
    "parse_request_head",
    "parse_response_head",
    "response_framing",
    "split_head",
]
