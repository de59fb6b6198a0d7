"""The processes `netstrata bench proxy` measures, each started as `python -m` of this module.

`proxy <json>`: the netstrata node proxy (`NodeProxy`, on uvloop when installed) with one
HTTP listener per lane and a DNS listener, fed the policy that `bench.proxy.bench_policies`
resolves through the real resolver; `dns-stub <json>`: a minimal UDP DNS authority.

Each prints one line, `ready <json>` with its bound addresses, then serves until its stdin
closes (so it never outlives the bench, even one killed with -9). Nothing here measures: the
bench reads these processes' CPU time and RSS from /proc.
"""

from __future__ import annotations

import asyncio
import json
import struct
import sys
from typing import Any

from netstrata.policy.types import Direction


async def _until_stdin_closes() -> None:
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.read)


async def _serve_proxy(args: dict[str, Any]) -> None:
    from netstrata.bench.proxy import bench_source
    from netstrata.proxy import DNSObservation, DNSSettings, ListenerSpec, NodeProxy, ProxyConfig
    from netstrata.proxy.server import Parser

    source, pinned = bench_source(args)
    learned: dict[str, int] = {}

    async def learn(observation: DNSObservation) -> None:
        # what the agent's learner does to the ipcache, minus the kernel map write
        for ip in observation.ips:
            learned[ip] = observation.ttl

    config = ProxyConfig(node_name="bench", dns=DNSSettings(min_ttl=60))
    async with NodeProxy(source, config=config, learner=learn) as proxy:
        addresses = {}
        for name, destination in pinned.items():
            parser: Parser = "dns" if name == "dns" else "http"
            direction = Direction.EGRESS if name == "dns" else Direction.INGRESS
            spec = ListenerSpec(name, parser, direction, args["listen_ip"], 0)
            source.set_original_destination(name, destination)
            addresses[name] = await proxy.add_listener(spec)
        print("ready " + json.dumps(addresses), flush=True)
        await _until_stdin_closes()


class _DNSStub(asyncio.DatagramProtocol):
    """Answers every single-question query with one A record, a fresh address each time (the
    S3 pattern of plan W6), built from the query's bytes without a parser so that the stub
    costs far less than what it is compared through."""

    def __init__(self) -> None:
        self.transport: Any = None
        self.serial = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # uvloop's UDPTransport is no asyncio.DatagramTransport

    def datagram_received(self, data: bytes, addr: tuple[str | Any, int]) -> None:
        if len(data) < 17 or self.transport is None:
            return
        self.serial = (self.serial + 1) & 0xFFFFFF
        flags = struct.unpack_from("!H", data, 2)[0]
        header = data[:2] + struct.pack("!HHHHH", 0x8180 | (flags & 0x0100), 1, 1, 0, 0)
        answer = struct.pack("!HHHIH", 0xC00C, 1, 1, 300, 4) + bytes(
            (10, self.serial >> 16, (self.serial >> 8) & 0xFF, self.serial & 0xFF)
        )
        end = data.find(b"\x00", 12) + 5  # the question: name, type, class
        self.transport.sendto(header + data[12:end] + answer, addr)


async def _serve_dns_stub(args: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    transport, _ = await loop.create_datagram_endpoint(_DNSStub, local_addr=(args["ip"], 0))
    sockname = transport.get_extra_info("sockname")
    print("ready " + json.dumps({"dns": [sockname[0], sockname[1]]}), flush=True)
    await _until_stdin_closes()
    transport.close()


def main(argv: list[str]) -> int:
    from netstrata.proxy import run

    role, args = argv[0], json.loads(argv[1])
    if role == "proxy":
        run(_serve_proxy(args))
    elif role == "dns-stub":
        run(_serve_dns_stub(args))
    else:
        raise SystemExit(f"unknown role {role!r}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
