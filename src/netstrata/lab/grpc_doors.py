"""The lab's gRPC workload: Cilium's Cloud City door manager as a real grpcio service.

`cloudcity.DoorManager` with the methods of Cilium's gRPC guide (GetName, GetLocation,
GetStatus, RequestMaintenance, SetAccessCode), served by grpcio through generic method
handlers, so no generated code is needed. Messages are protobuf on the wire, encoded here
with a few lines (varint, fixed32 float, length-delimited string): field 1 is the door id in
every request, replies carry the field the guide's client prints:

    GetName            DoorRequest{door_id=1}              -> DoorNameReply{name=1}
    GetLocation        DoorRequest{door_id=1}              -> DoorLocationReply{lat=1, long=2}
    GetStatus          DoorRequest{door_id=1}              -> DoorStatusReply{state=1}
    RequestMaintenance DoorMaintRequest{door_id=1, text=2} -> DoorActionReply{success=1}
    SetAccessCode      DoorAccessCodeRequest{door_id=1, access_code=2} -> DoorActionReply

`describe_reply` renders a reply as the guide's client prints it ("Door name is: ..."), which
is what the acceptance scenarios compare. The lab servers splice every prior-knowledge HTTP/2
connection to one `grpc.aio` server on a Unix socket (`start_door_server`), so any pod port
that receives the HTTP/2 preface is answered by this real service.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Callable
from typing import Any, Final

SERVICE: Final = "cloudcity.DoorManager"
METHODS: Final = ("GetName", "GetLocation", "GetStatus", "RequestMaintenance", "SetAccessCode")
DOOR_NAME: Final = "Spaceport Door #1"
DOOR_LAT, DOOR_LONG = 10.2222, 68.8788
"""Stored as float32 on the wire: clients read 10.222200393676758 and 68.87879943847656."""


def method_path(method: str) -> str:
    """The HTTP/2 `:path` of a call: `/cloudcity.DoorManager/<method>`."""
    return f"/{SERVICE}/{method}"


# ---- protobuf wire format (just what these messages use) -------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def encode_fields(fields: dict[int, int | float | str | bool]) -> bytes:
    """Encode `{field number: value}`: ints and bools as varints, floats as fixed32, strings
    length-delimited."""
    out = bytearray()
    for number, value in sorted(fields.items()):
        if isinstance(value, float):
            out += _varint(number << 3 | 5) + struct.pack("<f", value)
        elif isinstance(value, str):
            raw = value.encode()
            out += _varint(number << 3 | 2) + _varint(len(raw)) + raw
        else:
            out += _varint(number << 3) + _varint(int(value))
    return bytes(out)


def decode_fields(data: bytes) -> dict[int, int | float | bytes]:
    """Decode a message into `{field number: value}` (last one wins, unknown types rejected).

    Raises:
        ValueError: truncated or unsupported wire data.
    """
    fields: dict[int, int | float | bytes] = {}
    pos = 0

    def varint() -> int:
        nonlocal pos
        value = shift = 0
        while True:
            if pos >= len(data) or shift > 63:
                raise ValueError("truncated varint")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                return value

    while pos < len(data):
        key = varint()
        number, wire = key >> 3, key & 7
        if wire == 0:
            fields[number] = varint()
        elif wire == 5 and pos + 4 <= len(data):
            fields[number] = struct.unpack_from("<f", data, pos)[0]
            pos += 4
        elif wire == 2:
            size = varint()
            if pos + size > len(data):
                raise ValueError("truncated field")
            fields[number] = data[pos : pos + size]
            pos += size
        else:
            raise ValueError(f"unsupported wire type {wire}")
    return fields


# ---- the service ---------------------------------------------------------------------------


def _reply(method: str, request: dict[int, int | float | bytes]) -> dict[int, Any]:
    if method == "GetName":
        return {1: DOOR_NAME}
    if method == "GetLocation":
        return {1: DOOR_LAT, 2: DOOR_LONG}
    if method == "GetStatus":
        return {1: 1}  # CLOSED
    return {1: True}  # RequestMaintenance, SetAccessCode: done


def describe_reply(method: str, reply: bytes) -> str:
    """The line Cilium's guide client prints for a reply."""
    if method not in METHODS:  # another service's method (`OtherServices`): its echo
        return f"{len(reply)} bytes echoed"
    fields = decode_fields(reply)
    if method == "GetName":
        name = fields.get(1, b"")
        return "Door name is: " + (name.decode() if isinstance(name, bytes) else str(name))
    if method == "GetLocation":
        lat, long = fields.get(1, 0.0), fields.get(2, 0.0)
        return f"Door location is lat = {lat!s} long = {long!s}"
    if method == "GetStatus":
        return f"Door status is: {'CLOSED' if fields.get(1) == 1 else 'OPEN'}"
    if method == "SetAccessCode":
        return "Successfully set AccessCode" if fields.get(1) else "Failed to set AccessCode"
    return "Successfully requested maintenance" if fields.get(1) else "Maintenance refused"


def generic_handler() -> Any:
    """The grpcio generic handler serving every method of `cloudcity.DoorManager`."""
    import grpc

    def unary(method: str) -> Callable[[bytes, Any], bytes]:
        def handle(request: bytes, context: Any) -> bytes:
            try:
                fields = decode_fields(request)
            except ValueError as exc:
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(exc))
            return encode_fields(_reply(method, fields))

        return handle

    handlers = {m: grpc.unary_unary_rpc_method_handler(unary(m)) for m in METHODS}
    return grpc.method_handlers_generic_handler(SERVICE, handlers)


def other_services_handler() -> Any:
    """Answers every method of every service but the door manager with the request echoed.

    A scenario's workload may name its own gRPC service (the seeds' `fraud.FraudDetectionService`
    with CheckTransaction and UpdateRuleSet); the lab has no code of it, and what its probes are
    about is who may call which method, so an OK reply stands for the real answer. Unknown
    methods of `cloudcity.DoorManager` stay UNIMPLEMENTED, as in Cilium's guide."""
    import grpc

    def echo(request: bytes, context: Any) -> bytes:
        return request

    class OtherServices(grpc.GenericRpcHandler):  # type: ignore[misc]
        def service(self, details: Any) -> Any:
            if str(details.method).startswith(f"/{SERVICE}/"):
                return None
            return grpc.unary_unary_rpc_method_handler(echo)

    return OtherServices()


async def start_door_server(address: str) -> Any:
    """Start a `grpc.aio` server with the door manager on `address` (`unix:/path` or
    `host:port`); returns the started server (stop it with `await server.stop(grace)`).

    Raises:
        RuntimeError: the address could not be bound.
    """
    # The lab forks probe clients (curl, the grpcio/aiokafka tool) while this server's threads
    # run; grpcio's fork handlers cannot run then and log a line per fork. The children exec
    # at once and never use this process's gRPC state, so the handlers are not needed.
    os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
    import grpc

    server = grpc.aio.server()
    server.add_generic_rpc_handlers((generic_handler(), other_services_handler()))
    if server.add_insecure_port(address) == 0 and not address.startswith("unix:"):
        raise RuntimeError(f"gRPC server could not bind {address}")
    await server.start()
    return server


__all__ = [
    "DOOR_NAME",
    "METHODS",
    "SERVICE",
    "decode_fields",
    "describe_reply",
    "encode_fields",
    "generic_handler",
    "method_path",
    "other_services_handler",
    "start_door_server",
]
