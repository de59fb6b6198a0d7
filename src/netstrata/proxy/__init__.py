"""The node L7 proxy (DESIGN.md stratum 2; reference §1.5.1, §3.3, §6).

Sans-IO protocol cores (`http1`, `http_path`, `kafka`, `dns`), enforcement layers that turn
events into commands (`layers`), and thin asyncio adapters that own the sockets (`server` for
HTTP and Kafka listeners, `dnsproxy` for DNS over UDP and TCP). `policy_source` is how the
proxy learns, per connection, the endpoint, direction, peer identity and original destination.

Start one per node::

    source = InMemoryPolicySource()
    source.upsert_endpoint(LocalEndpoint(12, 48213, ("10.0.1.5",), policy=resolved))
    async with NodeProxy(source, config=ProxyConfig(node_name="node-a"), on_flow=store.add,
                         learner=learn) as proxy:
        await proxy.add_listener(ListenerSpec("http-ingress", "http", Direction.INGRESS))
"""

from netstrata.proxy.dnsproxy import DEFAULT_DNS_SETTINGS, DNSProxy, DNSSettings
from netstrata.proxy.layers import (
    DEFAULT_HTTP_SETTINGS,
    DEFAULT_KAFKA_SETTINGS,
    DEFAULT_TIMEOUTS,
    DNSObservation,
    FQDNLearner,
    HTTPSettings,
    KafkaSettings,
    Timeouts,
)
from netstrata.proxy.policy_source import (
    WORLD_IDENTITY,
    Address,
    ConnectionInfo,
    InMemoryPolicySource,
    LocalEndpoint,
    PolicySource,
)
from netstrata.proxy.server import (
    ListenerSpec,
    NodeProxy,
    ProxyConfig,
    ProxyStatistics,
    event_loop_factory,
    run,
)

__all__ = [
    "DEFAULT_DNS_SETTINGS",
    "DEFAULT_HTTP_SETTINGS",
    "DEFAULT_KAFKA_SETTINGS",
    "DEFAULT_TIMEOUTS",
    "WORLD_IDENTITY",
    "Address",
    "ConnectionInfo",
    "DNSObservation",
    "DNSProxy",
    "DNSSettings",
    "FQDNLearner",
    "HTTPSettings",
    "InMemoryPolicySource",
    "KafkaSettings",
    "ListenerSpec",
    "LocalEndpoint",
    "NodeProxy",
    "PolicySource",
    "ProxyConfig",
    "ProxyStatistics",
    "Timeouts",
    "event_loop_factory",
    "run",
]
