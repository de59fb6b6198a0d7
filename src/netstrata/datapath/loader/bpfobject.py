"""Opening, checking, loading and pinning the netstrata BPF object.

Order matters (fail closed before anything reaches the kernel):

1. compile `netstrata.c` and `layout_probe.c` (cached, `build.py`);
2. compare the probe's BTF, and the program object's own BTF, with `maps/_layout.py`;
3. compare every map's key/value size in the object with its codec;
4. compare maps already pinned in the pin directory (a previous run) with the codecs;
5. load: libbpf reuses the pinned maps (LIBBPF_PIN_BY_NAME under `pin_dir`) or creates and
   pins them, then the verifier checks the programs.

Any difference names the struct and field and raises `DatapathError`; nothing is attached.
"""

from __future__ import annotations

import ctypes
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Final, final

from netstrata.datapath.loader import _btfcheck, _libbpf, build
from netstrata.datapath.loader.bpfmap import BpfMap
from netstrata.datapath.maps._layout import MAPS, MapSpec
from netstrata.errors import DatapathError

BPFFS_ROOT: Final = Path("/sys/fs/bpf")
PROGRAMS: Final = ("from_pod", "to_pod")
_LOG_BUF_SIZE: Final = 4 << 20
_MS_MGC_VAL: Final = 0


def _mount_fstype(path: Path) -> str | None:
    """The filesystem type of the mount that holds `path` (from /proc/self/mountinfo)."""
    best: tuple[int, str] | None = None
    target = str(path.resolve()) if path.exists() else str(path)
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            left, _, right = line.partition(" - ")
            mount_point = left.split()[4].replace("\\040", " ")
            fstype = right.split()[0]
            if target == mount_point or target.startswith(mount_point.rstrip("/") + "/"):
                if best is None or len(mount_point) >= best[0]:
                    best = (len(mount_point), fstype)
    return best[1] if best else None


def is_bpffs(path: Path = BPFFS_ROOT) -> bool:
    return _mount_fstype(path) == "bpf"


def ensure_bpffs(root: Path = BPFFS_ROOT) -> None:
    """Mount bpffs at `root` if it is not mounted (as Cilium's agent does). Needs root.

    Raises:
        DatapathError: not mounted and the mount failed.
    """
    if is_bpffs(root):
        return
    libc = ctypes.CDLL(None, use_errno=True)
    root.mkdir(parents=True, exist_ok=True)
    if libc.mount(b"bpf", str(root).encode(), b"bpf", _MS_MGC_VAL, None) != 0:
        code = ctypes.get_errno()
        raise DatapathError(f"bpffs is not mounted at {root} and mounting it failed",
                            errno_name=_libbpf.errno_name(code))


def _layout_error(problems: list[str], obj: str) -> DatapathError:
    return DatapathError(
        "map layout mismatch between bpf/netstrata_maps.h and datapath/maps/_layout.py: "
        + "; ".join(problems), obj=obj,
    )


def _check_pinned(pin_dir: Path, spec: MapSpec) -> str | None:
    """A problem with a map pinned by a previous run, or None (also when none is pinned)."""
    path = pin_dir / spec.name
    if not path.exists() or spec.key is None or spec.value is None:
        return None
    lib = _libbpf.lib()
    fd = lib.bpf_obj_get(str(path).encode())
    if fd < 0:
        return f"pinned map {path.name}: cannot open ({_libbpf.errno_name(fd)})"
    try:
        info = _libbpf.MapInfo()
        size = ctypes.c_uint32(ctypes.sizeof(info))
        ret = lib.bpf_obj_get_info_by_fd(fd, ctypes.byref(info), ctypes.byref(size))
        if ret < 0:
            return f"pinned map {path.name}: cannot read info ({_libbpf.errno_name(ret)})"
        for what, spec_struct, got in (("key", spec.key, info.key_size),
                                       ("value", spec.value, info.value_size)):
            if got != spec_struct.size:
                return (f"pinned map {path.name} ({what} struct {spec_struct.c_name}) has "
                        f"{what} size {got}, the codec has {spec_struct.size}: it was pinned by "
                        f"another netstrata version; remove {pin_dir.name}'s pins to start over")
    finally:
        os.close(fd)
    return None


@final
class BpfObject:
    """The loaded programs and pinned maps of one datapath instance (one pin directory)."""

    def __init__(self, pin_dir: Path) -> None:
        self.pin_dir = pin_dir
        self.path = build.compile_source(build.PROGRAM_SOURCE)
        probe = build.compile_source(build.PROBE_SOURCE)
        problems = _btfcheck.check_probe(probe)
        if problems:
            raise _layout_error(problems, probe.name)
        pin_dir.mkdir(parents=True, exist_ok=True)
        self._lib = _libbpf.lib()
        self._log = ctypes.create_string_buffer(_LOG_BUF_SIZE)
        self._obj = self._open()
        try:
            self._check_object()
            self._load()
            self.maps = self._collect_maps()
            self.programs = {name: self._program_fd(name) for name in PROGRAMS}
        except BaseException:
            self._lib.bpf_object__close(self._obj)
            raise

    def _open(self) -> int:
        opts = _libbpf.ObjectOpenOpts()
        opts.sz = ctypes.sizeof(opts)
        opts.pin_root_path = str(self.pin_dir).encode()
        opts.kernel_log_buf = ctypes.cast(self._log, ctypes.c_void_p)
        opts.kernel_log_size = _LOG_BUF_SIZE
        _libbpf.clear_messages()
        obj = self._lib.bpf_object__open_file(str(self.path).encode(), ctypes.byref(opts))
        if not obj:
            code = _libbpf.last_errno()
            raise DatapathError("cannot open the BPF object", errno_name=_libbpf.errno_name(code),
                                obj=self.path.name,
                                verifier_log_tail=_libbpf.recent_messages() or None)
        return int(obj)

    def _map_handle(self, name: str) -> int:
        handle = self._lib.bpf_object__find_map_by_name(self._obj, name.encode())
        if not handle:
            raise DatapathError(f"map {name} is missing from the object", obj=self.path.name)
        return int(handle)

    def _check_object(self) -> None:
        problems = _btfcheck.check_btf(self._lib.bpf_object__btf(self._obj), require_all=False)
        for spec in MAPS:
            handle = self._map_handle(spec.name)
            if spec.key is None or spec.value is None:
                continue
            for what, struct_spec, got in (
                ("key", spec.key, self._lib.bpf_map__key_size(handle)),
                ("value", spec.value, self._lib.bpf_map__value_size(handle)),
            ):
                if got != struct_spec.size:
                    problems.append(f"map {spec.name} {what} struct {struct_spec.c_name}: "
                                    f"{got} bytes in the object, {struct_spec.size} in the codec")
        if problems:
            raise _layout_error(problems, self.path.name)
        pinned = [p for p in (_check_pinned(self.pin_dir, s) for s in MAPS) if p]
        if pinned:
            raise DatapathError("; ".join(pinned), obj=self.path.name)

    def _load(self) -> None:
        ret = self._lib.bpf_object__load(self._obj)
        if ret >= 0:
            return
        messages = _libbpf.recent_messages(60)
        program = next((p for p in PROGRAMS if f"prog '{p}'" in messages), None)
        verifier = self._log.value.decode(errors="replace").strip()
        tail = "\n".join((verifier or messages).splitlines()[-40:])
        raise DatapathError("loading the BPF object failed", errno_name=_libbpf.errno_name(ret),
                            obj=self.path.name, program=program, verifier_log_tail=tail or None)

    def _collect_maps(self) -> dict[str, BpfMap[object, object]]:
        out: dict[str, BpfMap[object, object]] = {}
        for spec in MAPS:
            fd = self._lib.bpf_map__fd(self._map_handle(spec.name))
            _libbpf.check(fd, f"fd of map {spec.name}", obj=self.path.name)
            if spec.key is not None and spec.value is not None:
                out[spec.name] = BpfMap(spec.name, fd, spec.key, spec.value)
        return out

    def map_fd(self, name: str) -> int:
        return int(self._lib.bpf_map__fd(self._map_handle(name)))

    def _program_fd(self, name: str) -> int:
        handle = self._lib.bpf_object__find_program_by_name(self._obj, name.encode())
        if not handle:
            raise DatapathError("program missing from the object", obj=self.path.name,
                                program=name)
        return _libbpf.check(self._lib.bpf_program__fd(handle), "program fd",
                             obj=self.path.name, program=name)

    def test_run(self, program: str, frame: bytes, *, ifindex: int = 0, repeat: int = 1) -> int:
        """BPF_PROG_TEST_RUN of `program` on one Ethernet frame; returns the tc verdict.

        `repeat` runs it that many times in the kernel (each run emits its events: how
        `bench observe` fills the ring buffer with real records).

        `ifindex` 0 runs it as if on the loopback device of the caller's network namespace
        (`skb->ifindex` 1); a larger value names a device of that namespace.
        """
        ctx = bytearray(_SKB_CTX_SIZE)
        ctx[_SKB_IFINDEX_OFF:_SKB_IFINDEX_OFF + 4] = ifindex.to_bytes(4, "little")
        data_in = ctypes.create_string_buffer(frame, len(frame))
        data_out = ctypes.create_string_buffer(len(frame) + 256)
        ctx_in = ctypes.create_string_buffer(bytes(ctx), len(ctx))
        opts = _libbpf.TestRunOpts()
        opts.sz = ctypes.sizeof(opts)
        opts.data_in = ctypes.cast(data_in, ctypes.c_void_p)
        opts.data_size_in = len(frame)
        opts.data_out = ctypes.cast(data_out, ctypes.c_void_p)
        opts.data_size_out = len(data_out)
        opts.ctx_in = ctypes.cast(ctx_in, ctypes.c_void_p)
        opts.ctx_size_in = len(ctx)
        opts.repeat = repeat
        ret = self._lib.bpf_prog_test_run_opts(self.programs[program], ctypes.byref(opts))
        _libbpf.check(ret, "BPF_PROG_TEST_RUN", obj=self.path.name, program=program)
        return int(opts.retval)

    def run_stats(self, program: str) -> tuple[int, int]:
        """(run_time_ns, run_cnt) of `program` since it was loaded, counted only while run-time
        statistics are enabled (`enable_run_stats()` or sysctl kernel.bpf_stats_enabled)."""
        info = _libbpf.ProgInfo()
        size = ctypes.c_uint32(ctypes.sizeof(info))
        _libbpf.check(self._lib.bpf_obj_get_info_by_fd(self.programs[program], ctypes.byref(info),
                                                       ctypes.byref(size)),
                      "program info", obj=self.path.name, program=program)
        return int(info.run_time_ns), int(info.run_cnt)

    def close(self) -> None:
        """Closes the object's fds. Pinned maps and attached programs stay in the kernel."""
        for m in getattr(self, "maps", {}).values():
            m.fd = -1
        if self._obj:
            self._lib.bpf_object__close(self._obj)
            self._obj = 0


_BPF_STATS_RUN_TIME: Final = 0


@contextmanager
def enable_run_stats() -> Iterator[None]:
    """Counts run time and runs of every BPF program while the block runs (BPF_ENABLE_STATS):
    the kernel keeps counting for as long as the returned fd is open, so a crash cannot leave
    the system-wide sysctl switched on. The counting itself costs two clock reads per run."""
    fd = _libbpf.check(_libbpf.lib().bpf_enable_stats(_BPF_STATS_RUN_TIME), "enable run stats")
    try:
        yield
    finally:
        os.close(fd)


# `struct __sk_buff` (uapi linux/bpf.h): 192 bytes with `ifindex` at byte 40. BPF_PROG_TEST_RUN
# accepts the ctx only with every field it does not let userspace set left zero.
_SKB_CTX_SIZE: Final = 192
_SKB_IFINDEX_OFF: Final = 40
