"""The lab's Kafka-protocol broker (`netstrata.lab.kafka_broker.Broker`) on a threaded socket
server, for tests that drive it with blocking clients or from another event loop.

A fake only because no real Kafka broker can run on these machines (see that module).
"""

from __future__ import annotations

import socket
import socketserver
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from netstrata.lab.kafka_broker import Broker


class _Handler(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        broker: Broker = self.server.broker  # type: ignore[attr-defined]
        sock: socket.socket = self.request
        buf = b""
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                return
            buf += chunk
            while len(buf) >= 4 and len(buf) >= 4 + struct.unpack_from(">i", buf)[0]:
                size = struct.unpack_from(">i", buf)[0]
                frame, buf = buf[: 4 + size], buf[4 + size :]
                answer = broker.answer(frame)
                if answer is not None:
                    sock.sendall(answer)


@contextmanager
def kafka_stub(host: str = "127.0.0.1") -> Iterator[tuple[Broker, tuple[str, int]]]:
    """Run the stub on `host` (free port): yields (broker state, its address)."""
    server = socketserver.ThreadingTCPServer((host, 0), _Handler)
    server.daemon_threads = True
    server.broker = Broker()  # type: ignore[attr-defined]
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server.broker, server.server_address  # type: ignore[attr-defined]
    finally:
        server.shutdown()
        server.server_close()
