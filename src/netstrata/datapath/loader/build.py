"""Compiling the BPF C sources shipped in the package, once, into a cache directory.

Object files are never committed: the `.c`/`.h` files under `datapath/bpf/` are the artefact,
and the first use on a machine compiles them with the local clang (`-target bpf -g`, so the
object carries BTF for the loader's layout check). The cache key is a hash of every source,
the compiler's version and the flags, so editing a header or upgrading clang recompiles.
Compiles are atomic (temporary file + rename): two processes racing waste time, not state.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Final

from netstrata.errors import DatapathError

BPF_DIR: Final = Path(__file__).resolve().parents[1] / "bpf"
PROGRAM_SOURCE: Final = "netstrata.c"
PROBE_SOURCE: Final = "layout_probe.c"
CFLAGS: Final = ("-O2", "-g", "-Wall", "-Werror", "-target", "bpf")
_CLANG_TIMEOUT_S: Final = 120


def cache_dir() -> Path:
    """`$NETSTRATA_CACHE_DIR`, else `$XDG_CACHE_HOME/netstrata`, else `~/.cache/netstrata`."""
    explicit = os.environ.get("NETSTRATA_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "netstrata"


def find_clang() -> str | None:
    """`clang`, or the newest versioned `clang-NN` on PATH."""
    found = shutil.which("clang")
    if found:
        return found
    for version in range(30, 10, -1):
        found = shutil.which(f"clang-{version}")
        if found:
            return found
    return None


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=_CLANG_TIMEOUT_S, check=False)


def _system_includes(clang: str) -> list[str]:
    """The host compiler's include directories, as `-idirafter` flags.

    `-target bpf` drops the multiarch directories that hold `asm/types.h` (needed by
    `linux/types.h`); asking clang for its own host search list (as libbpf-bootstrap does) finds
    them without naming a path.
    """
    out = _run([clang, "-v", "-E", "-"]).stderr
    block = re.search(r"<\.\.\.> search starts here:\n(.*?)End of search list", out, re.S)
    dirs = block.group(1).split() if block else []
    return [flag for d in dirs for flag in ("-idirafter", d)]


def _sources_digest(clang: str, includes: list[str]) -> str:
    h = hashlib.sha256()
    for path in sorted(BPF_DIR.glob("*.[ch]")):
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    h.update(_run([clang, "--version"]).stdout.encode())
    h.update(" ".join(CFLAGS + tuple(includes)).encode())
    return h.hexdigest()[:16]


def compile_source(source: str = PROGRAM_SOURCE) -> Path:
    """The compiled object of `datapath/bpf/<source>`, compiling it if the cache has none.

    Raises:
        DatapathError: clang is missing or the compile failed (with clang's messages).
    """
    clang = find_clang()
    if clang is None:
        raise DatapathError(
            "clang not found: the kernel datapath compiles its BPF programs at first use "
            "(install clang, llvm and libbpf-dev)", obj=source,
        )
    includes = _system_includes(clang)
    target_dir = cache_dir() / "bpf" / _sources_digest(clang, includes)
    target = target_dir / (Path(source).stem + ".o")
    if target.exists():
        return target
    target_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target_dir, suffix=".o.tmp")
    os.close(fd)
    try:
        cmd = [clang, *CFLAGS, *includes, "-c", str(BPF_DIR / source), "-o", tmp]
        done = _run(cmd)
        if done.returncode != 0:
            tail = "\n".join(done.stderr.strip().splitlines()[-30:])
            raise DatapathError(f"clang failed to compile {source}", obj=source,
                                verifier_log_tail=tail)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return target
