"""Enforcement layers of the node proxy: events in, commands out, no sockets (mitmproxy-style).

* `events` / `commands`: what adapters feed layers and what layers ask adapters to do.
* `context`: `LayerContext` (whose connection, the current policy, secrets), `Timeouts`,
  the `Layer` protocol the adapter drives.
* `http`: `HTTPLayer`, per-request `rules.http` verdicts on a keep-alive HTTP/1.1 connection.
* `kafka`: `KafkaLayer`, per-request `rules.kafka` verdicts with in-order responses.
* `dns`: `DNSEnforcer`, per-query `rules.dns` verdicts and what answers teach `toFQDNs`.

Every verdict goes through `datapath.reference.l7.l7_check`, the function the reference
datapath uses, so the proxy and `policy check` cannot disagree.
"""

from netstrata.proxy.layers.commands import (
    Close,
    Command,
    Log,
    OpenServer,
    SendToClient,
    SendToServer,
    Verdict,
)
from netstrata.proxy.layers.context import DEFAULT_TIMEOUTS, Layer, LayerContext, Timeouts
from netstrata.proxy.layers.dns import (
    DNSEnforcer,
    DNSObservation,
    FQDNLearner,
    QueryDecision,
    ResponseDecision,
)
from netstrata.proxy.layers.events import (
    ClientData,
    ClientEof,
    Event,
    ServerData,
    ServerEof,
    ServerOpened,
    ServerOpenFailed,
    Start,
)
from netstrata.proxy.layers.http import DEFAULT_HTTP_SETTINGS, HTTPLayer, HTTPSettings
from netstrata.proxy.layers.kafka import DEFAULT_KAFKA_SETTINGS, KafkaLayer, KafkaSettings

__all__ = [
    "DEFAULT_HTTP_SETTINGS",
    "DEFAULT_KAFKA_SETTINGS",
    "DEFAULT_TIMEOUTS",
    "ClientData",
    "ClientEof",
    "Close",
    "Command",
    "DNSEnforcer",
    "DNSObservation",
    "Event",
    "FQDNLearner",
    "HTTPLayer",
    "HTTPSettings",
    "KafkaLayer",
    "KafkaSettings",
    "Layer",
    "LayerContext",
    "Log",
    "OpenServer",
    "QueryDecision",
    "ResponseDecision",
    "SendToClient",
    "SendToServer",
    "ServerData",
    "ServerEof",
    "ServerOpenFailed",
    "ServerOpened",
    "Start",
    "Timeouts",
    "Verdict",
]
