"""A small schema-driven codec for Kafka protocol messages, for `proxy/kafka.py`.

Kafka describes every message as versioned fields in JSON (`clients/src/main/resources/common/
message/*.json` in apache/kafka). `_kafka_schemas.py` restates the fields the proxy needs in the
`Field` form below, and this module reads and writes them for any version, in both encodings:

* classic: INT16-length strings, INT32-length bytes and INT32-count arrays, -1 meaning null;
* flexible (KIP-482, the message's `flexibleVersions`): unsigned-varint length+1 for compact
  strings, bytes and arrays (0 meaning null), and a tagged-field section after every struct.

Tagged fields are skipped on read and written empty: none of them carries a topic name, and an
omitted tagged field means its default. All integers are big-endian (network order).

Decoding failures raise `ValueError`; the caller that knows the frame re-raises it as a
`RemoteProtocolError`. An array count is checked against the bytes left before anything is
allocated, so a forged count of 2**31 costs nothing.
"""

from __future__ import annotations

import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Final

MAX_VERSION: Final = 0x7FFF
ZERO_UUID: Final = bytes(16)

FieldType = str | tuple["Field", ...]
"""A primitive type name (`int8` `int16` `int32` `int64` `bool` `string` `bytes` `records`
`uuid`) or the fields of a nested struct."""


@dataclass(frozen=True, slots=True)
class Field:
    """One field of a message schema, as in Kafka's JSON message definitions."""

    name: str
    type: FieldType
    versions: tuple[int, int]
    array: bool = False
    nullable: tuple[int, int] | None = None
    default: object = None

    def present(self, version: int) -> bool:
        return self.versions[0] <= version <= self.versions[1]

    def is_nullable(self, version: int) -> bool:
        return self.nullable is not None and self.nullable[0] <= version <= self.nullable[1]


def _range(spec: str) -> tuple[int, int]:
    if spec.endswith("+"):
        return int(spec[:-1]), MAX_VERSION
    low, _, high = spec.partition("-")
    return int(low), int(high or low)


def F(  # noqa: N802 - reads like a schema table, as in Kafka's JSON
    name: str,
    type: FieldType,
    versions: str = "0+",
    *,
    nullable: str | None = None,
    default: object = None,
) -> Field:
    """A scalar or struct field; `versions` and `nullable` use Kafka's `"3+"`/`"0-7"` syntax."""
    return Field(
        name, type, _range(versions), False, _range(nullable) if nullable else None, default
    )


def A(  # noqa: N802
    name: str,
    type: FieldType,
    versions: str = "0+",
    *,
    nullable: str | None = None,
    default: object = None,
) -> Field:
    """An array field of `type` elements."""
    return Field(
        name, type, _range(versions), True, _range(nullable) if nullable else None, default
    )


_FIXED: Final = {"int8": ">b", "int16": ">h", "int32": ">i", "int64": ">q"}


class Reader:
    """Cursor over one message body; every read checks the bytes left."""

    def __init__(self, data: bytes, pos: int = 0) -> None:
        self.data = data
        self.pos = pos

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def take(self, n: int) -> bytes:
        if n < 0 or n > self.remaining:
            raise ValueError(f"need {n} bytes at offset {self.pos}, {self.remaining} left")
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def fixed(self, kind: str) -> int:
        fmt = _FIXED[kind]
        value: int = struct.unpack(fmt, self.take(struct.calcsize(fmt)))[0]
        return value

    def uvarint(self) -> int:
        value, shift = 0, 0
        while True:
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
            if shift > 28:  # KIP-482 lengths and counts are 32-bit unsigned varints
                raise ValueError("unsigned varint longer than 5 bytes")

    def length(self, compact: bool, wide: bool) -> int:
        """A string/bytes length or array count; -1 means null."""
        if compact:
            return self.uvarint() - 1
        return self.fixed("int32" if wide else "int16")

    def skip_tagged_fields(self) -> None:
        for _ in range(self.uvarint()):
            self.uvarint()  # tag
            self.take(self.uvarint())


def _read_scalar(r: Reader, kind: str, compact: bool, nullable: bool) -> object:
    if kind in _FIXED:
        return r.fixed(kind)
    if kind == "bool":
        return r.take(1) != b"\x00"
    if kind == "uuid":
        return r.take(16)
    size = r.length(compact, wide=kind != "string")
    if size < 0:
        if size != -1 or not nullable:
            raise ValueError(f"invalid {kind} length {size}")
        return None
    raw = r.take(size)
    if kind == "records":
        return None  # record batches are forwarded, never inspected
    if kind == "bytes":
        return raw
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError("string is not UTF-8") from exc


def _read_value(r: Reader, f: Field, version: int, flexible: bool) -> object:
    nullable = f.is_nullable(version)
    if f.array:
        count = r.length(flexible, wide=True)
        if count < 0:
            if count != -1 or not nullable:
                raise ValueError(f"invalid count {count} for {f.name}")
            return None
        if count > r.remaining:  # every element takes at least one byte
            raise ValueError(f"count {count} for {f.name} exceeds the frame")
        return [_read_element(r, f, version, flexible) for _ in range(count)]
    return _read_element(r, f, version, flexible, nullable)


def _read_element(
    r: Reader, f: Field, version: int, flexible: bool, nullable: bool = False
) -> object:
    if isinstance(f.type, tuple):
        return decode_struct(r, f.type, version, flexible)
    return _read_scalar(r, f.type, flexible, nullable)


def decode_struct(
    r: Reader, fields: Sequence[Field], version: int, flexible: bool
) -> dict[str, object]:
    """Read one struct (fields present in `version`, then tagged fields when flexible)."""
    out: dict[str, object] = {}
    for f in fields:
        if f.present(version):
            out[f.name] = _read_value(r, f, version, flexible)
    if flexible:
        r.skip_tagged_fields()
    return out


def encode_uvarint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _length_prefix(size: int, compact: bool, wide: bool) -> bytes:
    if compact:
        return encode_uvarint(size + 1)
    return struct.pack(">i" if wide else ">h", size)


def _default(f: Field, version: int) -> object:
    if f.default is not None:
        return f.default
    if f.is_nullable(version):
        return None
    if f.array:
        return []
    if isinstance(f.type, tuple):
        return {}
    return {"string": "", "bytes": b"", "uuid": ZERO_UUID, "bool": False}.get(f.type, 0)


def _write_scalar(kind: str, value: object, compact: bool) -> bytes:
    if kind in _FIXED:
        assert isinstance(value, int)
        return struct.pack(_FIXED[kind], value)
    if kind == "bool":
        return b"\x01" if value else b"\x00"
    if kind == "uuid":
        assert isinstance(value, bytes) and len(value) == 16
        return value
    if value is None:
        return _length_prefix(-1, compact, wide=kind != "string")
    raw = value.encode("utf-8") if isinstance(value, str) else value
    assert isinstance(raw, bytes)
    return _length_prefix(len(raw), compact, wide=kind != "string") + raw


def _write_element(f: Field, value: object, version: int, flexible: bool) -> bytes:
    if isinstance(f.type, tuple):
        assert isinstance(value, Mapping)
        return encode_struct(f.type, value, version, flexible)
    return _write_scalar(f.type, value, flexible)


def encode_struct(
    fields: Sequence[Field], values: Mapping[str, object], version: int, flexible: bool
) -> bytes:
    """Write one struct; a field missing from `values` takes its schema default."""
    out = bytearray()
    for f in fields:
        if not f.present(version):
            continue
        value = values.get(f.name, _default(f, version))
        if value is None and not f.is_nullable(version):
            raise ValueError(f"{f.name} may not be null in version {version}")
        if f.array:
            if value is None:
                out += _length_prefix(-1, flexible, wide=True)
                continue
            assert isinstance(value, Sequence)
            out += _length_prefix(len(value), flexible, wide=True)
            for element in value:
                out += _write_element(f, element, version, flexible)
        else:
            out += _write_element(f, value, version, flexible)
    if flexible:
        out += b"\x00"  # no tagged fields
    return bytes(out)


__all__ = [
    "MAX_VERSION",
    "ZERO_UUID",
    "A",
    "F",
    "Field",
    "Reader",
    "decode_struct",
    "encode_struct",
    "encode_uvarint",
]
