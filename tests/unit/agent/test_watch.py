"""The agent's inotify watcher: wakes on a file closed after writing or renamed into place,
never on a write still under way, follows new subdirectories, and stays quiet otherwise."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from netstrata.agent.watch import FileWatcher, open_watcher


@pytest.fixture
def watcher(tmp_path: Path):  # type: ignore[no-untyped-def]
    w = open_watcher([tmp_path])
    if w is None:
        pytest.skip("inotify is not available here")
    yield w
    w.close()


def _wait(w: FileWatcher, within: float = 0.05) -> bool:
    return asyncio.run(w.wait_changed(within))


def test_quiet_directory_does_not_wake(watcher: FileWatcher) -> None:
    assert _wait(watcher) is False


def test_a_write_wakes_only_once_the_file_is_closed(watcher: FileWatcher, tmp_path: Path) -> None:
    with (tmp_path / "policy.yaml").open("w") as f:
        f.write("kind: Cilium")
        f.flush()
        os.fsync(f.fileno())
        assert _wait(watcher) is False  # half written: IN_MODIFY is not watched
    assert _wait(watcher) is True
    assert _wait(watcher) is False  # drained


def test_an_atomic_rename_wakes(watcher: FileWatcher, tmp_path: Path) -> None:
    tmp = tmp_path / ".policy.yaml.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT)  # created (not a directory): no wake
    os.close(fd)
    watcher.drain()
    os.replace(tmp, tmp_path / "policy.yaml")
    assert _wait(watcher) is True


def test_files_in_a_new_subdirectory_are_watched(watcher: FileWatcher, tmp_path: Path) -> None:
    (tmp_path / "team-a").mkdir()
    assert _wait(watcher) is True
    (tmp_path / "team-a" / "policy.yaml").write_text("x")
    assert _wait(watcher) is True


def test_a_plain_file_is_watched_through_its_directory(tmp_path: Path) -> None:
    config = tmp_path / "agent-config.json"
    config.write_text("{}")
    w = FileWatcher([config])
    try:
        assert _wait(w) is False
        config.write_text('{"policyAuditMode": true}')
        assert _wait(w) is True
    finally:
        w.close()
