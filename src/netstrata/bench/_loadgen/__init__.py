"""Driving `nstload`, the small C load generator the datapath and churn benches share.

`build()` compiles `nstload.c` with the system C compiler into the netstrata cache directory
(keyed by a hash of the source and the compiler's version; the binary is a build product and
is never committed). `Server`, `run_client()`, `ProbeStream` and `run_mapfill()` run it pinned
to one core (taskset) inside a pod namespace (`--netns`, setns before any socket exists), and
parse the one JSON line it prints. Plain synchronous subprocess calls; nothing here knows
which datapath is being measured.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Literal

from netstrata.datapath.loader import cache_dir
from netstrata.errors import NetstrataError
from netstrata.netns import netns_path

SOURCE: Final = Path(__file__).with_name("nstload.c")
CFLAGS: Final = ("-O2", "-Wall", "-Wextra", "-Werror")
_START_TIMEOUT_S: Final = 10.0
_SLACK_S: Final = 30.0
"""How far past its own deadline a client may run before we kill it (connect timeouts etc.)."""

Mode = Literal["rr", "crr", "stream"]


class LoadgenError(NetstrataError):
    """The load generator could not be built or a run failed."""


def _compiler() -> str:
    for name in ("cc", "gcc", "clang"):
        found = shutil.which(name)
        if found:
            return found
    raise LoadgenError("no C compiler (cc, gcc or clang) found: the bench builds a small C "
                       "load generator at first use (apt-get install gcc)")


def build() -> Path:
    """The compiled `nstload`, compiling it on first use (atomic: temp file + rename)."""
    cc = _compiler()
    version = subprocess.run([cc, "--version"], capture_output=True, text=True, check=False).stdout
    digest = hashlib.sha256(SOURCE.read_bytes() + version.encode() + " ".join(CFLAGS).encode())
    target = cache_dir() / "loadgen" / digest.hexdigest()[:16] / "nstload"
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    os.close(fd)
    try:
        done = subprocess.run([cc, *CFLAGS, "-o", tmp, str(SOURCE)], capture_output=True,
                              text=True, check=False, timeout=120)
        if done.returncode != 0:
            raise LoadgenError(f"compiling the load generator failed:\n{done.stderr[-2000:]}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target


def _pinned(cpu: int | None, argv: list[str]) -> list[str]:
    """`argv` under `taskset -c cpu` (unpinned if taskset is missing or cpu is None)."""
    taskset = shutil.which("taskset")
    if cpu is None or taskset is None:
        return argv
    return [taskset, "-c", str(cpu), *argv]


@dataclass(frozen=True, slots=True)
class ClientResult:
    """One client run. Times in ns, CPU in µs of the whole machine over the measured window."""

    mode: str
    count: int
    """Transactions (rr), connections (crr) or 1 (stream)."""
    errors: int
    seconds: float
    bytes: int
    p50_ns: int
    p90_ns: int
    p99_ns: int
    p999_ns: int
    max_ns: int
    cpu_busy_us: float
    """user+nice+system+irq+softirq of every CPU (/proc/stat): client, server and softirq."""
    cpu_softirq_us: float
    cpu_idle_us: float
    client_cpu_us: float
    """The client process alone (getrusage)."""

    @property
    def rate(self) -> float:
        """Transactions or connections per second."""
        return self.count / self.seconds if self.seconds else 0.0

    @property
    def gbit(self) -> float:
        return self.bytes * 8 / self.seconds / 1e9 if self.seconds else 0.0

    @property
    def cpu_us_per_op(self) -> float:
        """Busy CPU µs per transaction (rr/crr) or per MiB delivered (stream)."""
        if self.mode == "stream":
            return self.cpu_busy_us / (self.bytes / 2**20) if self.bytes else 0.0
        return self.cpu_busy_us / self.count if self.count else 0.0


def _parse(line: str) -> dict[str, object]:
    try:
        out = json.loads(line)
    except json.JSONDecodeError as exc:
        raise LoadgenError(f"unexpected load generator output: {line[:200]!r}") from exc
    if not isinstance(out, dict):
        raise LoadgenError(f"unexpected load generator output: {line[:200]!r}")
    return out


def run_client(binary: Path, mode: Mode, netns: str, host: str, port: int, *, seconds: float,
               warmup: float = 0.0, cpu: int | None = None) -> ClientResult:
    """One bounded client run from pod `netns` to `host:port`."""
    argv = [str(binary), mode, "--netns", str(netns_path(netns)), "--host", host,
            "--port", str(port), "--seconds", f"{seconds}", "--warmup", f"{warmup}"]
    try:
        done = subprocess.run(_pinned(cpu, argv), capture_output=True, text=True, check=False,
                              timeout=seconds + warmup + _SLACK_S)
    except subprocess.TimeoutExpired as exc:
        raise LoadgenError(f"{mode} client to {host}:{port} did not finish") from exc
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise LoadgenError(f"{mode} client to {host}:{port} failed: {done.stderr.strip()[-500:]}")
    raw = _parse(lines[-1])
    return ClientResult(**{f: raw[f] for f in ClientResult.__dataclass_fields__})  # type: ignore[arg-type]


class _Process:
    """A long-running nstload that prints "ready" once it listens; stopped with SIGTERM."""

    def __init__(self, argv: list[str], what: str) -> None:
        self.what = what
        self.proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        assert self.proc.stdout is not None
        ready = self.proc.stdout.readline().strip()  # the child's own deadlines bound this
        if ready != "ready":
            err = self._finish(_START_TIMEOUT_S)[1]
            raise LoadgenError(f"{what} did not start: {err.strip()[-500:]}")

    def _finish(self, timeout: float) -> tuple[str, str]:
        try:
            return self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.communicate()

    def stop(self, timeout: float = 10.0) -> str:
        """SIGTERM, wait, and return what it printed after "ready"."""
        if self.proc.poll() is None:
            self.proc.terminate()
        return self._finish(timeout)[0]


class Server:
    """`nstload server` in pod `netns`: 1-byte echo on `port`, byte sink on `port2`."""

    def __init__(self, binary: Path, netns: str, port: int, port2: int, *,
                 cpu: int | None = None, lifetime_s: float = 3600.0) -> None:
        argv = [str(binary), "server", "--netns", str(netns_path(netns)), "--port", str(port),
                "--port2", str(port2), "--seconds", f"{lifetime_s}"]
        self._proc = _Process(_pinned(cpu, argv), f"server in {netns}")

    def stop(self) -> None:
        self._proc.stop()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()


@dataclass(frozen=True, slots=True)
class ProbeLog:
    """What a probe stream saw: send time of every datagram (by sequence number) and the
    receive time of every datagram that arrived (CLOCK_MONOTONIC ns)."""

    sent_ns: tuple[int, ...]
    received: dict[int, int]
    """seq -> receive time."""


class ProbeStream:
    """UDP datagrams from pod `src` to `host:port` in pod `dst` at `rate`/s, for `seconds`."""

    def __init__(self, binary: Path, src: str, dst: str, host: str, port: int, *,
                 rate: float, seconds: float, workdir: Path,
                 cpu: int | None = None) -> None:
        self._sent = workdir / "probe-sent.bin"
        self._recv = workdir / "probe-recv.bin"
        base = [str(binary)]
        self._rx = _Process(_pinned(cpu, [*base, "probe-recv", "--netns", str(netns_path(dst)),
                                          "--host", host, "--port", str(port),
                                          "--seconds", f"{seconds + 5}", "--out",
                                          str(self._recv),
                                          "--max-samples", str(int(rate * seconds) + 1024)]),
                            "probe receiver")
        try:
            self._tx = _Process(_pinned(cpu, [*base, "probe-send", "--netns", str(netns_path(src)),
                                              "--host", host, "--port", str(port),
                                              "--rate", f"{rate}", "--seconds", f"{seconds}",
                                              "--out", str(self._sent)]), "probe sender")
        except BaseException:
            self._rx.stop()
            raise

    def finish(self, timeout: float) -> ProbeLog:
        """Wait for the sender to end (its own deadline), stop the receiver, read both logs."""
        try:
            self._tx.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
        self._tx.stop()
        self._rx.stop()
        return _read_logs(self._sent, self._recv)

    def abort(self) -> None:
        self._tx.stop()
        self._rx.stop()


def _read_logs(sent: Path, recv: Path) -> ProbeLog:
    import struct

    raw = sent.read_bytes()
    sent_ns = struct.unpack(f"={len(raw) // 8}Q", raw[: len(raw) // 8 * 8])
    received: dict[int, int] = {}
    data = recv.read_bytes()
    for seq, _pad, t in struct.iter_unpack("=IIQ", data[: len(data) // 16 * 16]):
        received.setdefault(seq, t)
    return ProbeLog(sent_ns, received)


@dataclass(frozen=True, slots=True)
class MapFill:
    count: int
    batch: bool
    update_ns: int
    delete_ns: int


def run_mapfill(binary: Path, map_pin: Path, keys: bytes, values: bytes, *, key_size: int,
                value_size: int, batch: bool, workdir: Path) -> MapFill:
    """Write and then delete `len(keys) // key_size` entries of pinned map `map_pin` from C."""
    count = len(keys) // key_size
    kpath, vpath = workdir / "keys.bin", workdir / "values.bin"
    kpath.write_bytes(keys)
    vpath.write_bytes(values)
    done = subprocess.run(
        [str(binary), "mapfill", "--map", str(map_pin), "--keys", str(kpath),
         "--values", str(vpath), "--key-size", str(key_size), "--value-size", str(value_size),
         "--count", str(count), "--batch", "1" if batch else "0"],
        capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise LoadgenError(f"mapfill failed: {done.stderr.strip()[-500:]}")
    raw = _parse(done.stdout.strip().splitlines()[-1])
    return MapFill(int(raw["count"]), bool(raw["batch"]), int(raw["update_ns"]),  # type: ignore[call-overload]
                   int(raw["delete_ns"]))  # type: ignore[call-overload]


__all__ = ["ClientResult", "LoadgenError", "MapFill", "ProbeLog", "ProbeStream", "Server",
           "build", "run_client", "run_mapfill"]
