"""The tunnel preamble codec, fed whole, byte by byte and with trailing bytes."""

from __future__ import annotations

import pytest

from netstrata.mesh import hbone


def _feed_bytewise(data: bytes) -> hbone.Preamble:
    buf = b""
    for i in range(len(data)):
        buf += data[i : i + 1]
        head = hbone.split_head(buf)
        if head is not None:
            assert i == len(data) - 1 or data.endswith(head.trailing)
            return head
    raise AssertionError("never complete")


@pytest.mark.parametrize("host,port", [("10.1.0.7", 8080), ("fd00::7", 443)])
def test_connect_round_trip(host: str, port: int) -> None:
    wire = hbone.encode_connect(host, port)
    assert hbone.decode_connect(_feed_bytewise(wire).line) == (host, port)
    head = hbone.split_head(wire + b"GET / HTTP/1.1\r\n")
    assert head is not None and head.trailing == b"GET / HTTP/1.1\r\n"


def test_status_round_trip() -> None:
    assert hbone.decode_status(_feed_bytewise(hbone.encode_status(200)).line) == 200
    assert b"Connection: close" in hbone.encode_status(403)


@pytest.mark.parametrize(
    "line",
    [
        "GET / HTTP/1.1",
        "CONNECT host.example:80 HTTP/1.1",
        "CONNECT 10.0.0.1:0 HTTP/1.1",
        "CONNECT 10.0.0.1 HTTP/1.1",
        "CONNECT 10.0.0.1:80 HTTP/1.0",
    ],
)
def test_connect_rejects_garbage(line: str) -> None:
    with pytest.raises(ValueError):
        hbone.decode_connect(line)


def test_oversized_preamble_is_refused() -> None:
    with pytest.raises(ValueError, match="longer than"):
        hbone.split_head(b"CONNECT " + b"x" * hbone.MAX_PREAMBLE_BYTES)
    assert hbone.split_head(b"CONNECT 10.0.0.1:80 HTTP/1.1\r\n") is None
