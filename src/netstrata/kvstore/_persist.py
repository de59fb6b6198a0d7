"""The embedded store's file format and its crash-safe write.

One JSON document holds the whole store:

    {"format": "netstrata-kvstore", "version": 1, "revision": 12, "next_lease": 3,
     "leases": {"1": 30.0},
     "entries": [[key, value, create_revision, mod_revision, version, lease | null], ...]}

Lease deadlines are not stored: they are points on the caller's clock, which need not survive a
restart (a monotonic clock does not). A reloaded lease keeps its TTL and gets a fresh deadline the
next time the caller passes `now` in, which is what etcd does when a new leader takes over.

Writes go to a temporary file in the same directory, are flushed (and fsync'ed if asked), then
renamed over the old file: a crash leaves either the old snapshot or the new one, never half.
Pure helpers raise `ValueError`; the store re-raises with the path (STYLE.md, errors).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from netstrata.kvstore.types import KVEntry

FORMAT: Final = "netstrata-kvstore"
VERSION: Final = 1


@dataclass(slots=True)
class Snapshot:
    """Everything the file holds."""

    revision: int = 0
    next_lease: int = 1
    leases: dict[int, float] = field(default_factory=dict)
    entries: dict[str, KVEntry] = field(default_factory=dict)


def encode_snapshot(snap: Snapshot) -> str:
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "revision": snap.revision,
        "next_lease": snap.next_lease,
        "leases": {str(k): v for k, v in sorted(snap.leases.items())},
        "entries": [
            [e.key, e.value, e.create_revision, e.mod_revision, e.version, e.lease]
            for e in sorted(snap.entries.values(), key=lambda e: e.key)
        ],
    }
    return json.dumps(doc, separators=(",", ":"), ensure_ascii=False) + "\n"


def _int(value: object, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{what}: expected a non-negative integer, found {value!r}")
    return value


def _decode_entry(row: object, index: int, leases: dict[int, float]) -> KVEntry:
    what = f"entries[{index}]"
    if not isinstance(row, list) or len(row) != 6:
        raise ValueError(f"{what}: expected a list of 6 fields")
    key, value, create_rev, mod_rev, version, lease = row
    if not isinstance(key, str) or not key:
        raise ValueError(f"{what}: key must be a non-empty string")
    if not isinstance(value, str):
        raise ValueError(f"{what}: value must be a string")
    if lease is not None:
        lease = _int(lease, f"{what}.lease")
        if lease not in leases:
            raise ValueError(f"{what}: key {key!r} names unknown lease {lease}")
    return KVEntry(key, value, _int(create_rev, f"{what}.create_revision"),
                   _int(mod_rev, f"{what}.mod_revision"), _int(version, f"{what}.version"), lease)


def decode_snapshot(text: str) -> Snapshot:
    """Parse and check a snapshot document.

    Raises:
        ValueError: not JSON, not our format, or internally inconsistent.
    """
    doc = json.loads(text)
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ValueError(f"not a {FORMAT} document")
    if doc.get("version") != VERSION:
        raise ValueError(f"unsupported version {doc.get('version')!r} (this build reads {VERSION})")
    raw_leases = doc.get("leases", {})
    if not isinstance(raw_leases, dict):
        raise ValueError("leases: expected an object")
    leases: dict[int, float] = {}
    for k, ttl in raw_leases.items():
        if not k.isdigit() or isinstance(ttl, bool) or not isinstance(ttl, int | float) or ttl <= 0:
            raise ValueError(f"leases: bad lease {k!r}: {ttl!r}")
        leases[int(k)] = float(ttl)
    rows = doc.get("entries", [])
    if not isinstance(rows, list):
        raise ValueError("entries: expected a list")
    snap = Snapshot(_int(doc.get("revision"), "revision"), _int(doc.get("next_lease"), "next_lease"),
                    leases)
    for i, row in enumerate(rows):
        entry = _decode_entry(row, i, leases)
        if entry.mod_revision > snap.revision:
            raise ValueError(f"entries[{i}]: mod_revision {entry.mod_revision} is past the "
                             f"store revision {snap.revision}")
        snap.entries[entry.key] = entry
    if leases and max(leases) >= snap.next_lease:
        raise ValueError("next_lease is not past every lease id")
    return snap


def read_snapshot(path: Path) -> Snapshot | None:
    """The snapshot at `path`, or None when no file exists yet.

    Raises:
        OSError: the file exists but cannot be read.
        ValueError: the file is not a valid snapshot (also for undecodable bytes).
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return None
    return decode_snapshot(data.decode("utf-8"))


def write_atomically(path: Path, text: str, *, fsync: bool) -> None:
    """Replace `path` with `text` via a temporary file and a rename.

    Raises:
        OSError: the directory is not writable, the disk is full, ...
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
            fh.flush()
            if fsync:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    if fsync:
        # The rename itself is durable only once the directory entry is.
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
