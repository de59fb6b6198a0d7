"""gRPC and Kafka probes of `lab check`: real grpcio and aiokafka clients, and the proxy's word.

A gRPC probe is one unary call of its `/package.Service/Method` path; a Kafka probe is what a
user's client does for the scenario's action (`probe_tools.KAFKA_ROLES`). Both run as a child
process inside the source namespace (`clients.grpc_call_probe`, `clients.kafka_probe`), so
their connections take the same path as any pod's: through the kernel's policy and, where
the entry says redirect, transparently through the node's proxy.

What the client sees decides the verdict (`clients._tool_outcome`): the proxy's gRPC
PERMISSION_DENIED with `Access denied`, or Kafka's TOPIC_AUTHORIZATION_FAILED, is `denied-l7`.
One denial has no answer at all: Cilium's Kafka proxy discards a denied request of an API it
cannot answer for (CreateTopics, ...), and the client just times out, which on its own reads
as a kernel drop. `proxy_denial` tells the two apart with the proxy's own L7 flow: a DROPPED
record from the probe's source to its destination for the probe's topic (or gRPC path) means
the proxy denied it. The kernel's drop events still explain real drops (`outcome`).

This module must not know the lab's structure (namespaces, agents); `kernel_probes` and
`kernel_check` call it with addresses and flows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from netstrata.lab import clients
from netstrata.lab.cases import Probe
from netstrata.observe.flow import HTTP, Flow, Kafka, Verdict

L7_CLIENT_KINDS: Final = frozenset({"grpc", "kafka"})
"""Probe protocols sent with real gRPC and Kafka clients (`settle`, `send`)."""
_ROLE_APIS: Final = {
    "produce": frozenset({"produce", "metadata"}),
    "consume": frozenset({"metadata", "offsets", "fetch", "offsetfetch", "offsetcommit"}),
    "fetch": frozenset({"metadata", "offsets", "fetch"}),
    "metadata": frozenset({"metadata"}),
    "createtopics": frozenset({"createtopics", "metadata"}),
}
"""Kafka APIs (the proxy flows' `api_key` names) each probe role's client sends."""


def settle(probe: Probe) -> dict[str, Any]:
    """What the client of a gRPC or Kafka probe needs: the call's path, or role and topic."""
    raw = probe.raw
    if probe.protocol.lower() == "grpc":
        g = raw.get("grpc") or {}
        return {"path": str(g.get("path") or f"/{g.get('service')}/{g.get('method')}")}
    k = raw.get("kafka") or {}
    return {"role": str(k.get("action", "produce")).lower(), "topic": str(k.get("topic") or "")}


def is_supported(params: dict[str, Any]) -> str | None:
    """Why this build cannot send the probe (an action no client here performs), or None."""
    role = params.get("role")
    if role is not None and role not in _ROLE_APIS:
        return f"no Kafka client in the lab performs the action {role!r}"
    return None


async def send(netns: str, dst: str, port: int, params: dict[str, Any]) -> clients.Outcome:
    """Run the probe's real client from `netns` against `dst:port`."""
    if "path" in params:
        return await clients.grpc_call_probe(netns, dst, port, params["path"])
    return await clients.kafka_probe(netns, dst, port, params["role"], params["topic"])


def proxy_denial(src: str, dst: str, port: int, params: dict[str, Any],
                 flows: Iterable[Flow]) -> str | None:
    """The proxy's DROPPED L7 flow for this probe (source, destination, port and its topic or
    gRPC path), as the summary a user reads in `observe`; None when the proxy denied nothing
    of it."""
    for flow in flows:
        if flow.verdict != Verdict.DROPPED or flow.l7 is None or flow.ip is None:
            continue
        if (flow.ip.source, flow.ip.destination) != (src, dst):
            continue
        if getattr(flow.l4, "destination_port", None) != port:
            continue
        if _is_of(flow.l7.record, params):
            return f"the proxy denied it without an answer: {flow.summary}"
    return None


def probe_flows(src: str, dst: str, port: int, flows: Iterable[Flow]) -> list[str]:
    """The L7 flows the proxies recorded between the probe's ends (`src` to `dst:port` and the
    answers back), one line per kind in first-seen order: verdict, type, and for Kafka the
    API, version, topic and error code, with how many and their correlation ids. A mismatch
    carries them, so a report shows what the proxy saw of the probe's requests without a
    rerun; a client that repeats one request thousands of times costs one line."""
    kinds: dict[str, list[int]] = {}
    for flow in flows:
        if flow.l7 is None or flow.ip is None:
            continue
        forward = ((flow.ip.source, flow.ip.destination) == (src, dst)
                   and getattr(flow.l4, "destination_port", None) == port)
        back = ((flow.ip.source, flow.ip.destination) == (dst, src)
                and getattr(flow.l4, "source_port", None) == port)
        if forward or back:
            line, cid = _describe(flow)
            kinds.setdefault(line, []).append(cid)
    return [line + _ids(cids) for line, cids in kinds.items()]


def _describe(flow: Flow) -> tuple[str, int]:
    assert flow.l7 is not None
    record, kind = flow.l7.record, flow.l7.type.name
    if isinstance(record, Kafka):
        return (f"{flow.verdict.name} {kind} {record.api_key} v{record.api_version} "
                f"topic={record.topic or '-'} error={record.error_code}", record.correlation_id)
    return f"{flow.verdict.name} {kind} {flow.summary}", 0


def _ids(cids: list[int]) -> str:
    if len(cids) == 1:
        return f" #{cids[0]}" if cids[0] else ""
    return f" x{len(cids)} (#{min(cids)}..#{max(cids)})"


def _is_of(record: object, params: dict[str, Any]) -> bool:
    if isinstance(record, Kafka):
        return (record.topic == params.get("topic")
                and record.api_key in _ROLE_APIS.get(str(params.get("role")), frozenset()))
    if isinstance(record, HTTP) and "path" in params:
        return record.url.split("?", 1)[0].endswith(str(params["path"]))
    return False


__all__ = ["L7_CLIENT_KINDS", "is_supported", "probe_flows", "proxy_denial", "send", "settle"]
