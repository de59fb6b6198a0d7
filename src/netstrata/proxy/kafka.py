"""Kafka wire protocol core for the node proxy: frames in, requests out, no sockets.

What Cilium's Kafka rules need from a request (reference §1.5.1): apiKey, apiVersion, clientID
and every topic the request names. `KafkaRequestParser` splits the client's byte stream into
frames (a 4-byte big-endian size, then that many bytes), reads the request header and, for the
APIs below, the body far enough to list its topics. `KafkaResponseParser` splits a broker's
stream the same way and reports each response's correlation id, so an adapter can keep
responses in request order when it answers some requests itself.

Request header (`RequestHeader.json`): v0 apiKey, apiVersion, correlationId (ControlledShutdown
v0 only); v1 adds clientId, a nullable INT16-length string; v2 (the API's flexible versions)
adds a tagged-field section. clientId stays a classic string even in v2.

Bodies decoded (`_kafka_schemas.py`, classic and flexible encodings): Produce v0-11, Fetch
v0-17, ListOffsets v0-10, Metadata v0-12, OffsetCommit v0-9, OffsetFetch v0-9,
FindCoordinator v0-6, CreateTopics v0-7, DeleteTopics v0-6. Other API keys and versions come
out with `body_parsed=False` and no topics: an enforcement layer with topic rules must treat
them as unknown (fail closed), never as "names no topic". Requests that name topics by id
(Fetch v13+, Metadata v10+, DeleteTopics v6) list the ids in `topic_ids`.

Denials (scenarios README, Cilium's `CreateAuthErrorResponse`): produce, fetch, list-offsets,
metadata, find-coordinator, offset-commit and offset-fetch get a response with error 29
TOPIC_AUTHORIZATION_FAILED on every topic/partition (or coordinator key), keeping the
correlation id; `build_error_response` returns None for every other API, which gets no answer.
One deliberate addition: a Produce with `acks=0` also gets None, because the client expects no
response to it and would choke on an unsolicited one.

Frame size cap: `DEFAULT_MAX_FRAME_SIZE` is 100 MiB, the broker's own `socket.request.max.bytes`
default; the broker drops a larger request anyway, and a smaller cap would break batches the
broker accepts. The proxy must hold a whole request before it can list all of its topics, so
the cap bounds what one connection buffers.

Errors: a size prefix that is negative or over the cap breaks the framing:
`RemoteProtocolError(hint=42 INVALID_REQUEST)` and the parser stays in error. A frame whose
contents are garbage (truncated header, bad string, wrong counts, trailing bytes) raises
`MalformedKafkaFrame`, also a `RemoteProtocolError` with hint 42, but the frame has been
consumed whole and the next `next_event()` parses the following frame normally.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Final

from netstrata.proxy._kafka_codec import Reader, decode_struct, encode_struct
from netstrata.proxy._kafka_schemas import SCHEMAS, ApiSchema
from netstrata.proxy.errors import LocalProtocolError, RemoteProtocolError
from netstrata.proxy.sansio import NEED_DATA, ConnectionClosed, Sentinel

DEFAULT_MAX_FRAME_SIZE: Final = 100 * 1024 * 1024
TOPIC_AUTHORIZATION_FAILED: Final = 29
INVALID_REQUEST: Final = 42

ANSWERED_API_KEYS: Final = frozenset({0, 1, 2, 3, 8, 9, 10})
"""API keys whose denial gets an error-29 response; every other denied request is dropped."""

CILIUM_API_NAMES: Final[dict[int, str]] = {
    0: "produce", 1: "fetch", 2: "offsets", 3: "metadata", 4: "leaderandisr",
    5: "stopreplica", 6: "updatemetadata", 7: "controlledshutdown", 8: "offsetcommit",
    9: "offsetfetch", 10: "findcoordinator", 11: "joingroup", 12: "heartbeat",
    13: "leavegroup", 14: "syncgroup", 15: "describegroups", 16: "listgroups",
    17: "saslhandshake", 18: "apiversions", 19: "createtopics", 20: "deletetopics",
    21: "deleterecords", 22: "initproducerid", 23: "offsetforleaderepoch",
    24: "addpartitionstotxn", 25: "addoffsetstotxn", 26: "endtxn", 27: "writetxnmarkers",
    28: "txnoffsetcommit", 29: "describeacls", 30: "createacls", 31: "deleteacls",
    32: "describeconfigs", 33: "alterconfigs",
}  # fmt: skip
"""Cilium's `apiKey` names (pkg/policy/api/kafka `KafkaAPIKeyMap`)."""


@dataclass(frozen=True, slots=True)
class KafkaRequest:
    """One request frame from a client."""

    api_key: int
    """INT16 API key (0 produce, 1 fetch, 3 metadata, ...)."""
    api_version: int
    """INT16 API version."""
    correlation_id: int
    """INT32 id the response must echo."""
    client_id: str | None
    """Header clientId; None when null or absent (header v0)."""
    topics: tuple[str, ...] = ()
    """Topic names the body names, each once, in first-seen order."""
    topic_ids: tuple[str, ...] = ()
    """Topic UUIDs (canonical text) where the body names topics by id."""
    body_parsed: bool = False
    """False when the API key or version is outside the decoded set: topics unknown."""
    acks: int | None = None
    """Produce only: required acks (0 means the client expects no response)."""
    frame: bytes = field(default=b"", repr=False)
    """The whole frame, size prefix included, to forward unchanged."""

    @property
    def api_name(self) -> str:
        """Cilium's name for `api_key`, or the number as text."""
        return CILIUM_API_NAMES.get(self.api_key, str(self.api_key))

    @property
    def expects_response(self) -> bool:
        """False only for Produce with acks=0."""
        return not (self.api_key == 0 and self.acks == 0)


@dataclass(frozen=True, slots=True)
class KafkaResponse:
    """One response frame from a broker."""

    correlation_id: int
    """INT32 correlation id (first field of every response header)."""
    frame: bytes = field(repr=False)
    """The whole frame, size prefix included."""


class MalformedKafkaFrame(RemoteProtocolError):
    """A frame with garbage inside; the framing is intact and the next frame will parse."""

    def __init__(self, message: str, *, correlation_id: int | None = None) -> None:
        super().__init__(message, hint=INVALID_REQUEST)
        self.correlation_id = correlation_id
        """The frame's correlation id when its header was readable."""


class _FrameSplitter:
    """Size-prefixed frames out of a byte stream; buffers at most one frame plus 4 bytes."""

    def __init__(self, max_frame_size: int) -> None:
        self.max_frame_size = max_frame_size
        self._buf = bytearray()
        self._eof = False
        self._broken = False

    def receive_data(self, data: bytes) -> None:
        if data:
            if self._eof:
                raise LocalProtocolError("received data after EOF", hint=INVALID_REQUEST)
            self._buf += data
        else:
            self._eof = True

    @property
    def buffered_bytes(self) -> int:
        return len(self._buf)

    def next_frame(self) -> bytes | ConnectionClosed | Sentinel:
        if self._broken:
            raise RemoteProtocolError("Kafka framing already broken", hint=INVALID_REQUEST)
        if len(self._buf) >= 4:
            size = struct.unpack_from(">i", self._buf)[0]
            if size < 0 or size > self.max_frame_size:
                self._broken = True
                raise RemoteProtocolError(
                    f"frame size {size} outside 0..{self.max_frame_size}", hint=INVALID_REQUEST
                )
            if len(self._buf) >= 4 + size:
                frame = bytes(self._buf[: 4 + size])
                del self._buf[: 4 + size]
                return frame
        if not self._eof:
            return NEED_DATA
        if self._buf:
            self._broken = True
            raise RemoteProtocolError("connection closed inside a frame", hint=INVALID_REQUEST)
        return ConnectionClosed()


class KafkaRequestParser:
    """Client-to-broker direction: `receive_data()`, then `next_event()` until NEED_DATA."""

    def __init__(self, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self._frames = _FrameSplitter(max_frame_size)

    @property
    def buffered_bytes(self) -> int:
        """Bytes of an incomplete frame held; never more than `max_frame_size + 4` after
        `next_event()` returned NEED_DATA."""
        return self._frames.buffered_bytes

    def receive_data(self, data: bytes) -> None:
        """Add received bytes; b"" means the client closed its sending side."""
        self._frames.receive_data(data)

    def next_event(self) -> KafkaRequest | ConnectionClosed | Sentinel:
        """The next request, ConnectionClosed, or NEED_DATA.

        Raises:
            MalformedKafkaFrame: garbage inside one frame (the parser goes on afterwards).
            RemoteProtocolError: broken framing (the connection must close).
        """
        frame = self._frames.next_frame()
        if isinstance(frame, bytes):
            return decode_request(frame)
        return frame


class KafkaResponseParser:
    """Broker-to-client direction: frames and their correlation ids, bodies left opaque."""

    def __init__(self, *, max_frame_size: int = DEFAULT_MAX_FRAME_SIZE) -> None:
        self._frames = _FrameSplitter(max_frame_size)

    @property
    def buffered_bytes(self) -> int:
        """Bytes of an incomplete frame held."""
        return self._frames.buffered_bytes

    def receive_data(self, data: bytes) -> None:
        """Add received bytes; b"" means the broker closed its sending side."""
        self._frames.receive_data(data)

    def next_event(self) -> KafkaResponse | ConnectionClosed | Sentinel:
        """The next response, ConnectionClosed, or NEED_DATA (errors as for requests)."""
        frame = self._frames.next_frame()
        if not isinstance(frame, bytes):
            return frame
        if len(frame) < 8:
            raise MalformedKafkaFrame("response frame shorter than its correlation id")
        return KafkaResponse(correlation_id=struct.unpack_from(">i", frame, 4)[0], frame=frame)


def _is_flexible(schema: ApiSchema | None, version: int) -> bool:
    return schema is not None and version >= schema.first_flexible


def _decoded_schema(api_key: int, version: int) -> ApiSchema | None:
    schema = SCHEMAS.get(api_key)
    if schema is None or not schema.versions[0] <= version <= schema.versions[1]:
        return None
    return schema


def decode_request(frame: bytes) -> KafkaRequest:
    """Decode one whole request frame (size prefix included).

    Raises:
        MalformedKafkaFrame: the header or a decoded body is not valid for its version.
    """
    r = Reader(frame, 4)
    correlation_id: int | None = None
    try:
        api_key, api_version = r.fixed("int16"), r.fixed("int16")
        correlation_id = r.fixed("int32")
        if api_version < 0:
            raise ValueError(f"negative apiVersion {api_version}")
        client_id = None
        if not (api_key == 7 and api_version == 0):  # ControlledShutdown v0: header v0
            size = r.fixed("int16")
            if size < -1:
                raise ValueError(f"invalid clientId length {size}")
            client_id = None if size == -1 else r.take(size).decode("utf-8")
        schema = _decoded_schema(api_key, api_version)
        if schema is None:
            return KafkaRequest(api_key, api_version, correlation_id, client_id, frame=frame)
        flexible = _is_flexible(schema, api_version)
        if flexible:
            r.skip_tagged_fields()
        body = decode_struct(r, schema.request, api_version, flexible)
        if r.remaining:
            raise ValueError(f"{r.remaining} bytes after the request body")
    except ValueError as exc:
        raise MalformedKafkaFrame(
            f"malformed request: {exc}", correlation_id=correlation_id
        ) from exc
    names, ids = _TOPIC_EXTRACTORS[api_key](body)
    acks = body.get("acks") if api_key == 0 else None
    return KafkaRequest(
        api_key,
        api_version,
        correlation_id,
        client_id,
        topics=tuple(dict.fromkeys(n for n in names if n is not None)),
        topic_ids=tuple(dict.fromkeys(str(uuid.UUID(bytes=i)) for i in ids)),
        body_parsed=True,
        acks=acks if isinstance(acks, int) else None,
        frame=frame,
    )


Body = dict[str, object]


def _items(value: object) -> list[Body]:
    return value if isinstance(value, list) else []


def _ints(value: object) -> list[int]:
    return [v for v in value if isinstance(v, int)] if isinstance(value, list) else []


def _named(items: list[Body], name_key: str) -> tuple[list[str | None], list[bytes]]:
    names: list[str | None] = []
    ids: list[bytes] = []
    for item in items:
        name = item.get(name_key)
        topic_id = item.get("topic_id")
        if isinstance(name, str) and name:
            names.append(name)
        elif isinstance(topic_id, bytes) and any(topic_id):
            ids.append(topic_id)
        elif isinstance(name, str):
            names.append(name)
    return names, ids


def _topics_of_offset_fetch(body: Body) -> tuple[list[str | None], list[bytes]]:
    if "groups" in body:
        names: list[str | None] = []
        for group in _items(body["groups"]):
            names.extend(_named(_items(group.get("topics")), "name")[0])
        return names, []
    return _named(_items(body.get("topics")), "name")


def _topics_of_delete(body: Body) -> tuple[list[str | None], list[bytes]]:
    if "topic_names" in body:
        raw = body["topic_names"]
        return [n for n in raw if isinstance(n, str)] if isinstance(raw, list) else [], []
    return _named(_items(body.get("topics")), "name")


_TOPIC_EXTRACTORS: Final[dict[int, Callable[[Body], tuple[list[str | None], list[bytes]]]]] = {
    0: lambda b: _named(_items(b.get("topics")), "name"),
    1: lambda b: _named(_items(b.get("topics")), "topic"),
    2: lambda b: _named(_items(b.get("topics")), "name"),
    3: lambda b: _named(_items(b.get("topics")), "name"),
    8: lambda b: _named(_items(b.get("topics")), "name"),
    9: _topics_of_offset_fetch,
    10: lambda b: ([], []),
    19: lambda b: _named(_items(b.get("topics")), "name"),
    20: _topics_of_delete,
}


def _partitions_error(partitions: object, key: str, out_key: str, code: int) -> list[Body]:
    return [{out_key: p.get(key, 0), "error_code": code} for p in _items(partitions)]


def _produce_error(req: Body, version: int, code: int) -> Body:
    responses = [
        {
            "name": t["name"],
            "partitions": _partitions_error(t["partitions"], "index", "index", code),
        }
        for t in _items(req["topics"])
    ]
    return {"responses": responses}


def _fetch_error(req: Body, version: int, code: int) -> Body:
    responses = [
        {
            "topic": t.get("topic", ""),
            "topic_id": t.get("topic_id", bytes(16)),
            "partitions": _partitions_error(t["partitions"], "partition", "partition_index", code),
        }
        for t in _items(req["topics"])
    ]
    return {"session_id": 0, "responses": responses}


def _list_offsets_error(req: Body, version: int, code: int) -> Body:
    topics = [
        {
            "name": t["name"],
            "partitions": _partitions_error(
                t["partitions"], "partition_index", "partition_index", code
            ),
        }
        for t in _items(req["topics"])
    ]
    return {"topics": topics}


def _metadata_error(req: Body, version: int, code: int) -> Body:
    topics = []
    for t in _items(req.get("topics")):
        name = t.get("name")
        topics.append(
            {
                "error_code": code,
                "name": name if name is not None or version >= 12 else "",
                "topic_id": t.get("topic_id", bytes(16)),
                "partitions": [],
            }
        )
    return {"brokers": [], "topics": topics}


def _offset_commit_error(req: Body, version: int, code: int) -> Body:
    return _list_offsets_error(req, version, code)


def _offset_fetch_topics(topics: object, code: int) -> list[Body]:
    return [
        {
            "name": t["name"],
            "partitions": [
                {"partition_index": i, "error_code": code}
                for i in _ints(t.get("partition_indexes"))
            ],
        }
        for t in _items(topics)
    ]


def _offset_fetch_error(req: Body, version: int, code: int) -> Body:
    # per-partition errors; a request for all of a group's offsets (null topics) has no
    # partition to carry the error, so the group-level error code carries it instead
    if "groups" in req:
        groups = [
            {
                "group_id": g["group_id"],
                "topics": _offset_fetch_topics(g.get("topics"), code),
                "error_code": code if g.get("topics") is None else 0,
            }
            for g in _items(req["groups"])
        ]
        return {"groups": groups}
    topics = req.get("topics")
    return {
        "topics": _offset_fetch_topics(topics, code),
        "error_code": code if topics is None else 0,
    }


def _find_coordinator_error(req: Body, version: int, code: int) -> Body:
    if version >= 4:
        keys = req.get("coordinator_keys")
        coordinators = (
            [{"key": k, "error_code": code} for k in keys] if isinstance(keys, list) else []
        )
        return {"coordinators": coordinators}
    return {"error_code": code}


_ERROR_BUILDERS: Final[dict[int, Callable[[Body, int, int], Body]]] = {
    0: _produce_error,
    1: _fetch_error,
    2: _list_offsets_error,
    3: _metadata_error,
    8: _offset_commit_error,
    9: _offset_fetch_error,
    10: _find_coordinator_error,
}


def _request_body(request: KafkaRequest, schema: ApiSchema) -> Body:
    r = Reader(request.frame, 4)
    r.take(8)
    size = r.fixed("int16")
    r.take(max(size, 0))
    flexible = _is_flexible(schema, request.api_version)
    if flexible:
        r.skip_tagged_fields()
    return decode_struct(r, schema.request, request.api_version, flexible)


def build_error_response(
    request: KafkaRequest, error_code: int = TOPIC_AUTHORIZATION_FAILED
) -> bytes | None:
    """The frame answering a denied `request` with `error_code` on every topic/partition.

    Returns:
        The response frame (size prefix included, correlation id kept), or None when the
        request gets no answer: an API outside `ANSWERED_API_KEYS`, a version we do not decode,
        or a Produce with acks=0.
    """
    schema = _decoded_schema(request.api_key, request.api_version)
    if (
        schema is None
        or schema.response is None
        or request.api_key not in ANSWERED_API_KEYS
        or not request.expects_response
    ):
        return None
    body = _ERROR_BUILDERS[request.api_key](
        _request_body(request, schema), request.api_version, error_code
    )
    return encode_response(request.api_key, request.api_version, request.correlation_id, body)


def encode_request(
    api_key: int,
    api_version: int,
    correlation_id: int,
    client_id: str | None,
    body: Mapping[str, object],
) -> bytes:
    """A request frame for a decoded API (test fixtures, probes); fields missing from `body`
    take their schema defaults."""
    schema = _decoded_schema(api_key, api_version)
    if schema is None:
        raise LocalProtocolError(f"no schema for apiKey {api_key} v{api_version}")
    flexible = _is_flexible(schema, api_version)
    header = struct.pack(">hhi", api_key, api_version, correlation_id)
    if client_id is None:
        header += struct.pack(">h", -1)
    else:
        raw = client_id.encode("utf-8")
        header += struct.pack(">h", len(raw)) + raw
    if flexible:
        header += b"\x00"
    payload = header + encode_struct(schema.request, body, api_version, flexible)
    return struct.pack(">i", len(payload)) + payload


def encode_response(
    api_key: int, api_version: int, correlation_id: int, body: Mapping[str, object]
) -> bytes:
    """A response frame (response header v1 with tagged fields when the version is flexible)."""
    schema = _decoded_schema(api_key, api_version)
    if schema is None or schema.response is None:
        raise LocalProtocolError(f"no response schema for apiKey {api_key} v{api_version}")
    flexible = _is_flexible(schema, api_version)
    header = struct.pack(">i", correlation_id) + (b"\x00" if flexible else b"")
    payload = header + encode_struct(schema.response, body, api_version, flexible)
    return struct.pack(">i", len(payload)) + payload


def decode_response(api_key: int, api_version: int, frame: bytes) -> tuple[int, Body]:
    """(correlation id, body) of a response frame to a decoded API.

    Raises:
        MalformedKafkaFrame: the frame does not hold a valid response of that version.
    """
    schema = _decoded_schema(api_key, api_version)
    if schema is None or schema.response is None:
        raise LocalProtocolError(f"no response schema for apiKey {api_key} v{api_version}")
    r = Reader(frame, 4)
    try:
        correlation_id = r.fixed("int32")
        flexible = _is_flexible(schema, api_version)
        if flexible:
            r.skip_tagged_fields()
        body = decode_struct(r, schema.response, api_version, flexible)
        if r.remaining:
            raise ValueError(f"{r.remaining} bytes after the response body")
    except ValueError as exc:
        raise MalformedKafkaFrame(f"malformed response: {exc}") from exc
    return correlation_id, body


__all__ = [
    "ANSWERED_API_KEYS",
    "CILIUM_API_NAMES",
    "DEFAULT_MAX_FRAME_SIZE",
    "INVALID_REQUEST",
    "TOPIC_AUTHORIZATION_FAILED",
    "KafkaRequest",
    "KafkaRequestParser",
    "KafkaResponse",
    "KafkaResponseParser",
    "MalformedKafkaFrame",
    "build_error_response",
    "decode_request",
    "decode_response",
    "encode_request",
    "encode_response",
]
