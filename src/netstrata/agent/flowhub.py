"""The one entry point for flows in an agent: `FlowHub.record(flow)`.

Kernel ring-buffer events (turned into flows by `agent/flows.py`) and the node proxy's L7
verdicts both go through `record`, so every flow is enriched the same way, kept in the same
bounded ring (`observe.FlowStore`, which also feeds follow-mode subscribers), counted in the
same Prometheus metrics, and appended to the same rotated JSON-lines export.

Threading: call `record` on the agent's event-loop thread (the store wakes followers through
an `asyncio.Event`). The export is flushed once per loop iteration, not once per flow, so a
burst of kernel events costs one write(2).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from netstrata.agent.enrich import FlowEnricher
from netstrata.observe import Flow, FlowLogWriter, FlowStore
from netstrata.observe.metrics import Metrics
from netstrata.observe.store import DEFAULT_CAPACITY

DEFAULT_EXPORT_MAX_BYTES: Final = 4 << 20
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
        self.store = FlowStore(capacity, on_lost=self.metrics.lost_events)
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

    def record_many(self, flows: Iterable[Flow]) -> None:
        for flow in flows:
            self.record(flow)

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


__all__ = ["DEFAULT_EXPORT_BACKUPS", "DEFAULT_EXPORT_MAX_BYTES", "ExportConfig", "FlowHub"]
