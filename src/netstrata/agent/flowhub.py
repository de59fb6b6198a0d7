"""The one entry point for flows in an agent: `FlowHub.record(flow)`.

Kernel ring-buffer events (turned into flows by `agent/flows.py`) and the node proxy's L7
verdicts both go through `record`, so every flow is enriched the same way, kept in the same
bounded ring (`observe.FlowStore`, which also feeds follow-mode subscribers), counted in the
same Prometheus metrics, and appended to the same rotated JSON-lines export.

Kernel records arrive in bulk (`record_kernel`, raw `struct flow_event` tuples from
`KernelDatapath.read_raw_events`) and stay raw: the store keeps the tuples and builds the Hubble
flow of one only when a reader asks (a query, a follower, the export), and the metrics count a
batch once per distinct label set. Building and enriching a flow costs ~100 us in Python, so
building every flow at arrival caps ingestion near 10k events/s (docs/BENCHMARKS.md); built
lazily, only what is read pays. The export is such a reader: with it on, every record is built.

Threading: call `record` on the agent's event-loop thread (the store wakes followers through
an `asyncio.Event`). The export is flushed once per loop iteration, not once per flow, so a
burst of kernel events costs one write(2).
"""

from __future__ import annotations

import asyncio
import os
import random
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from netstrata.agent.enrich import FlowEnricher
from netstrata.agent.flows import flow_of_record, is_flow_record, metric_key, rule_ref
from netstrata.observe import Flow, FlowLogWriter, FlowStore
from netstrata.observe.metrics import Metrics
from netstrata.observe.store import DEFAULT_CAPACITY

DEFAULT_EXPORT_MAX_BYTES: Final = 4 << 20
KERNEL_LOST_SOURCE: Final = "kernel_ring_buffer"
"""`hubble_lost_events_total` source of records the datapath's full ring refused (Hubble
names the perf ring's losses `perf_event_ring_buffer`; ours is a BPF ring buffer)."""
DEFAULT_EXPORT_BACKUPS: Final = 2


@dataclass(frozen=True, slots=True)
class ExportConfig:
    """Where and how the agent writes its flows: size-based rotation keeping `backups` files."""

    path: Path
    max_bytes: int = DEFAULT_EXPORT_MAX_BYTES
    backups: int = DEFAULT_EXPORT_BACKUPS


class FlowHub:
    """One node's flows: enrichment, ring, metrics, export."""

    def __init__(
        self,
        node_name: str,
        *,
        capacity: int = DEFAULT_CAPACITY,
        metrics: Metrics | None = None,
        enricher: FlowEnricher | None = None,
        export: ExportConfig | None = None,
    ) -> None:
        self.node_name = node_name
        self.metrics = metrics if metrics is not None else Metrics()
        self.enricher = enricher if enricher is not None else FlowEnricher()
        self.store = FlowStore(capacity, on_lost=self.metrics.lost_events,
                               materialize=self._build)
        self.kernel_offset_ns = 0
        """Wall clock minus the kernel's CLOCK_MONOTONIC, for raw records' timestamps."""
        self._salt = random.getrandbits(64)
        self._label_flows: dict[object, Flow] = {}
        self._kernel_lost: int | None = None
        self.export = export
        self._writer: FlowLogWriter | None = None
        self._flush_pending = False
        if export is not None:
            export.path.parent.mkdir(parents=True, exist_ok=True)
            self._writer = FlowLogWriter(
                export.path, max_bytes=export.max_bytes, backups=export.backups
            )

    def record(self, flow: Flow, *, endpoint_id: int = 0, cookie: int = 0) -> Flow:
        """Take one flow from any emitter; returns it as stored (enriched).

        Args:
            flow: a Hubble flow (`observe.flow_from_l34`, `flow_from_l7_http`, ...). Fields
                the emitter set are kept; pod, label and node fields it left empty are filled.
            endpoint_id: with `cookie`, the kernel's rule cookie of that endpoint's policy,
                naming the rule in `*_allowed_by`/`*_denied_by`.
        """
        if not flow.node_name:
            flow = _with_node(flow, self.node_name)
        flow = self.enricher.enrich(flow, endpoint_id=endpoint_id, cookie=cookie)
        self.store.add(flow)
        self.metrics.observe_flow(flow)
        if self._writer is not None:
            self._writer.write(flow)
            self._schedule_flush()
        return flow

    def record_kernel(self, records: list[tuple[object, ...]], offset_ns: int | None = None) -> int:
        """Take a batch of raw kernel records (`KernelDatapath.read_raw_events`); returns how
        many became flows. Records of types flows do not carry are skipped, as `flow_of` does.

        Args:
            offset_ns: wall clock minus CLOCK_MONOTONIC (`flows.monotonic_offset_ns`); kept for
                later batches when None.
        """
        if offset_ns is not None:
            self.kernel_offset_ns = offset_ns
        kept = [r for r in records if is_flow_record(r)]
        if not kept:
            return 0
        self.store.add_raw(kept)
        self._count(kept)
        if self._writer is not None:
            for r in kept:
                self._writer.write(self._build(r))
            self._schedule_flush()
        return len(kept)

    def _count(self, records: list[tuple[object, ...]]) -> None:
        """Metrics of a batch: one increment per distinct label-deciding tuple, its labels
        taken from a flow built once per tuple (so they are exactly `observe_flow`'s)."""
        counts = Counter(map(metric_key, records))
        for key, n in counts.items():
            flow = self._label_flows.get(key)
            if flow is None:
                sample = next(r for r in records if metric_key(r) == key)
                flow = flow_of_record(sample, self.node_name, 0, 0)
                assert flow is not None
                if len(self._label_flows) >= 4096:  # bounded: label sets are few in practice
                    self._label_flows.clear()
                self._label_flows[key] = flow
            self.metrics.observe_flow(flow, n)

    def _build(self, record: tuple[object, ...]) -> Flow:
        """The enriched flow of one raw record; the same record always gives an equal flow."""
        flow = flow_of_record(record, self.node_name, self.kernel_offset_ns, self._salt)
        assert flow is not None  # record_kernel keeps flow types only
        endpoint_id, cookie = rule_ref(record)
        return self.enricher.enrich(flow, endpoint_id=endpoint_id, cookie=cookie)

    def record_many(self, flows: Iterable[Flow]) -> None:
        for flow in flows:
            self.record(flow)

    def lost_in_kernel(self, total: int) -> None:
        """The kernel's running count of records its full ring buffer refused
        (`KernelDatapath.events_lost`): increases become `hubble_lost_events_total{source=
        "kernel_ring_buffer"}`. The first reading is a baseline: losses from before this agent
        started (the pinned counter survives restarts) are not this agent's to report."""
        if self._kernel_lost is not None and total > self._kernel_lost:
            self.metrics.lost_events(KERNEL_LOST_SOURCE, total - self._kernel_lost)
        self._kernel_lost = total

    def lost(self, source: str, count: int) -> None:
        """Events lost before they became flows (`perf_event_ring_buffer`, ...)."""
        self.metrics.lost_events(source, count)

    def _schedule_flush(self) -> None:
        if self._flush_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._flush_pending = True
        loop.call_soon(self.flush)

    def flush(self) -> None:
        self._flush_pending = False
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        """Wake followers (their streams end) and close the export."""
        self.store.close()
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def export_status(self) -> dict[str, object] | None:
        if self.export is None:
            return None
        return {
            "path": os.fspath(self.export.path),
            "max_bytes": self.export.max_bytes,
            "backups": self.export.backups,
        }


def _with_node(flow: Flow, node_name: str) -> Flow:
    from dataclasses import replace

    return replace(flow, node_name=node_name)


__all__ = ["DEFAULT_EXPORT_BACKUPS", "DEFAULT_EXPORT_MAX_BYTES", "KERNEL_LOST_SOURCE",
           "ExportConfig", "FlowHub"]
