"""HTTP/1.1 or HTTP/2 on one port: the layer that looks at the first bytes and picks.

In-cluster gRPC arrives as prior-knowledge HTTP/2 over cleartext (h2c, RFC 9113 §3.3): the
client's first 24 bytes are the connection preface `PRI * HTTP/2.0\\r\\n\\r\\nSM\\r\\n\\r\\n`.
No HTTP/1.1 request can start that way (`PRI` is not a method anyone registers, and the
preface was chosen so that HTTP/1.1 servers reject it). So a port with `rules.http` serves
both: bytes are held until they either equal the preface (`H2Layer`) or stop being a prefix
of it (`HTTPLayer`), then the chosen layer gets `Start` (with the connection's start time)
and the held bytes. Upgrade from HTTP/1.1 (`Upgrade: h2c`) is not supported, as in Envoy's
default; the HTTP/1.1 layer strips the header.

A client that sends nothing, or only part of the preface, is closed after `Timeouts.header`
(the same slow-client rule as a request head).
"""

from __future__ import annotations

import logging
from typing import Final

from netstrata.proxy.layers._h2_streams import DEFAULT_H2_LIMITS, H2Limits
from netstrata.proxy.layers.commands import Close, Command, Log
from netstrata.proxy.layers.context import Layer, LayerContext
from netstrata.proxy.layers.events import ClientData, ClientEof, Event, Start
from netstrata.proxy.layers.http import DEFAULT_HTTP_SETTINGS, HTTPLayer, HTTPSettings
from netstrata.proxy.layers.http2 import H2_PREFACE, H2Layer


class HTTPDetectLayer:
    """Delegates to `HTTPLayer` or `H2Layer` once the first bytes tell which."""

    def __init__(
        self,
        ctx: LayerContext,
        settings: HTTPSettings = DEFAULT_HTTP_SETTINGS,
        limits: H2Limits = DEFAULT_H2_LIMITS,
    ) -> None:
        self.ctx: Final = ctx
        self.settings: Final = settings
        self.limits: Final = limits
        self.inner: Layer | None = None
        """The chosen layer, once chosen."""
        self._held = b""
        self._started = 0.0
        self._closed = False

    @property
    def wants_client_data(self) -> bool:
        return self.inner.wants_client_data if self.inner is not None else not self._closed

    def handle(self, event: Event, now: float) -> list[Command]:
        if self.inner is not None:
            return self.inner.handle(event, now)
        if self._closed:
            return []
        if isinstance(event, Start):
            self._started = now
            return []
        if isinstance(event, ClientEof):
            if not self._held:
                return self._close()
            out = self._choose(now)
            assert self.inner is not None
            return out + self.inner.handle(event, now)
        if not isinstance(event, ClientData):
            return []
        self._held += event.data
        size = min(len(self._held), len(H2_PREFACE))
        if self._held[:size] == H2_PREFACE[:size] and size < len(H2_PREFACE):
            return []  # still a prefix of the preface: wait for more
        return self._choose(now)

    def _choose(self, now: float) -> list[Command]:
        inner: Layer
        if self._held.startswith(H2_PREFACE):
            inner = H2Layer(self.ctx, self.settings, self.limits)
        else:
            inner = HTTPLayer(self.ctx, self.settings)
        self.inner = inner
        out = inner.handle(Start(), self._started)
        held, self._held = self._held, b""
        out += inner.handle(ClientData(held), now)
        return out

    def _close(self) -> list[Command]:
        self._closed = True
        return [Close("client")]

    def get_timer(self) -> float | None:
        if self.inner is not None:
            return self.inner.get_timer()
        return None if self._closed else self._started + self.settings.timeouts.header

    def handle_timer(self, now: float) -> list[Command]:
        if self.inner is not None:
            return self.inner.handle_timer(now)
        if self._closed or now < self._started + self.settings.timeouts.header:
            return []
        return [Log("client sent no request in time", logging.INFO), *self._close()]


__all__ = ["HTTPDetectLayer"]
