"""Run a `NodeProxy` on its own event loop in a thread, so tests can drive it with real,
blocking clients (curl, dig, http.client, raw sockets); plus a small threaded upstream HTTP
server that records what reached it."""

from __future__ import annotations

import asyncio
import http.server
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from netstrata.observe.flow import Flow
from netstrata.proxy import ListenerSpec, NodeProxy, PolicySource, ProxyConfig


class ProxyThread:
    """A started proxy; `addresses[name]` is where each listener is bound."""

    def __init__(self, source: PolicySource, specs: list[ListenerSpec], *,
                 config: ProxyConfig | None = None,
                 loop_factory: Callable[[], asyncio.AbstractEventLoop] | None = None,
                 **kwargs: Any) -> None:
        self.source = source
        self.specs = specs
        self.config = config or ProxyConfig(node_name="test-node", linger=0.2)
        self.kwargs = kwargs
        self.loop_factory = loop_factory
        self.flows: list[Flow] = []
        self.addresses: dict[str, tuple[str, int]] = {}
        self.proxy: NodeProxy | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="proxy", daemon=True)

    def _run(self) -> None:
        try:
            with asyncio.Runner(loop_factory=self.loop_factory) as runner:
                runner.run(self._main())
        except BaseException as exc:  # surfaced to the test in __enter__
            self._error = exc
            self._ready.set()

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        async with NodeProxy(self.source, config=self.config, on_flow=self.flows.append,
                             **self.kwargs) as proxy:
            self.proxy = proxy
            for spec in self.specs:
                self.addresses[spec.name] = await proxy.add_listener(spec)
            self._ready.set()
            await self._stop.wait()

    def call(self, fn: Callable[[], Any]) -> Any:
        """Run `fn` on the proxy's loop and return its result."""
        assert self.loop is not None
        done = threading.Event()
        box: list[Any] = []
        self.loop.call_soon_threadsafe(lambda: (box.append(fn()), done.set()))
        assert done.wait(5)
        return box[0]

    def __enter__(self) -> ProxyThread:
        self._thread.start()
        assert self._ready.wait(10), "proxy did not start"
        if self._error is not None:
            raise self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self.loop is not None and self._stop is not None:
            self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


class EchoHandler(http.server.BaseHTTPRequestHandler):
    """Answers every request 200 with `METHOD PATH` and the X-Token it saw."""

    protocol_version = "HTTP/1.1"
    seen: list[tuple[str, str, dict[str, str]]]

    def _answer(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.seen.append((self.command, self.path, dict(self.headers)))  # type: ignore[attr-defined]
        text = f"{self.command} {self.path} token={self.headers.get('x-token')}\n".encode()
        payload = text + body
        self.send_response(200)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextmanager
def upstream_http(host: str = "127.0.0.1") -> Iterator[http.server.ThreadingHTTPServer]:
    """A keep-alive HTTP/1.1 server on `host` (free port); `.seen` lists requests it got."""
    server = http.server.ThreadingHTTPServer((host, 0), EchoHandler)
    server.seen = []  # type: ignore[attr-defined]
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), name="upstream", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
