"""Where the page's flows come from: anything that fills a `FlowStore`.

The page reads one in-process `FlowStore` (queries and follow subscriptions), so it does not
care how flows arrive. An agent can hand its own store to the server; `FileFollower` fills a
store from JSON-lines flow files (what every lab agent writes under `flows/`, what
`observe -o json` prints), following them as they grow and across size rotation
(`flows.jsonl` -> `flows.jsonl.1`), the way `tail -F` does.

A line that is not a flow is logged with file and line and skipped: a viewer that stopped at
the first torn line would show less, not something safer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from netstrata.observe.flow import Flow, from_json_dict
from netstrata.observe.store import FlowStore, merge_flows, read_flows, rotated_paths

log = logging.getLogger(__name__)

Enrich = Callable[[Flow], Flow]
"""Fills in what a flow lacks (pod names from a lab plan); must not overwrite set fields."""

POLL_S: Final = 0.2
"""How often files are checked for new lines: the page promises updates within ~1 s."""
BACKUPS: Final = 5
"""Rotated files read at start (`FlowLogWriter`'s default)."""


@dataclass(slots=True)
class _Tail:
    """Where we are in one followed file."""

    inode: int
    offset: int
    partial: bytes = b""
    line: int = 0


class FileFollower:
    """Follow JSON-lines flow files (and `*.jsonl` files in directories) into a store."""

    def __init__(
        self,
        paths: Sequence[Path],
        store: FlowStore,
        enrich: Enrich | None = None,
        poll_s: float = POLL_S,
    ) -> None:
        self.paths = [Path(p) for p in paths]
        self.store = store
        self.enrich = enrich
        self.poll_s = poll_s
        self._tails: dict[Path, _Tail] = {}
        self.skipped = 0
        """Lines that were not flows."""

    def files(self) -> list[Path]:
        """The followed files now: each given file, and each `*.jsonl` of a given directory."""
        out: list[Path] = []
        for p in self.paths:
            out.extend(sorted(p.glob("*.jsonl")) if p.is_dir() else [p])
        return out

    def load_existing(self) -> int:
        """Read what the files (and their rotated backups) hold now, merged by time."""
        per_file: list[list[Flow]] = []
        for path in self.files():
            flows: list[Flow] = []
            for part in rotated_paths(path, BACKUPS)[:-1]:
                if part.exists():
                    flows.extend(self._read_whole(part))
            flows.extend(self._read_new(path))
            per_file.append(flows)
        merged = merge_flows(*per_file)
        for flow in merged:
            self.store.add(flow)
        return len(merged)

    def poll(self) -> int:
        """Add the lines appended since the last poll; returns how many flows were added."""
        added = 0
        for path in self.files():
            for flow in self._read_new(path):
                self.store.add(flow)
                added += 1
        return added

    async def run(self) -> None:
        """Poll forever (cancel to stop). File reads are small and local, so they run on the
        loop: moving them to a thread would need the store to be thread-safe, and it is not."""
        while True:
            await asyncio.sleep(self.poll_s)
            self.poll()

    def _read_whole(self, path: Path) -> list[Flow]:
        try:
            return [self._enriched(f) for f in read_flows(path)]
        except ValueError as exc:
            log.warning("%s", exc)
            self.skipped += 1
            return []

    def _read_new(self, path: Path) -> list[Flow]:
        try:
            st = path.stat()
        except FileNotFoundError:
            return []
        tail = self._tails.get(path)
        if tail is None or tail.inode != st.st_ino or st.st_size < tail.offset:
            tail = self._tails[path] = _Tail(st.st_ino, 0)  # new, or rotated: from the start
        if st.st_size == tail.offset:
            return []
        with path.open("rb") as fh:
            fh.seek(tail.offset)
            data = fh.read(st.st_size - tail.offset)
        tail.offset += len(data)
        *lines, tail.partial = (tail.partial + data).split(b"\n")
        out: list[Flow] = []
        for raw in lines:
            tail.line += 1
            flow = self._parse(path, tail.line, raw)
            if flow is not None:
                out.append(flow)
        return out

    def _parse(self, path: Path, number: int, raw: bytes) -> Flow | None:
        if not raw.strip():
            return None
        try:
            data = json.loads(raw)
            if "flow" not in data and ("lost_events" in data or "node_status" in data):
                return None
            return self._enriched(from_json_dict(data))
        except (ValueError, TypeError, KeyError) as exc:
            self.skipped += 1
            log.warning("%s:%d: not a flow record, skipped: %s", path, number, exc)
            return None

    def _enriched(self, flow: Flow) -> Flow:
        return self.enrich(flow) if self.enrich is not None else flow


def check_readable(paths: Sequence[Path]) -> None:
    """Fail early, naming the path, when a flows file or directory cannot be read.

    Raises:
        FileNotFoundError: a path does not exist.
        PermissionError: a path exists but cannot be read.
    """
    for p in paths:
        if not p.exists():
            raise FileNotFoundError(f"{p}: no such flows file or directory")
        if not os.access(p, os.R_OK):
            raise PermissionError(f"{p}: not readable")


__all__ = ["BACKUPS", "POLL_S", "Enrich", "FileFollower", "check_readable"]
