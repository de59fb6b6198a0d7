"""ctypes bindings to the system libbpf (libbpf1 / libbpf-dev), only the calls the loader uses.

libbpf >= 1.0 semantics: low-level `bpf_*` calls return `-errno`; constructors return NULL
and set `errno`. Messages libbpf prints go through one callback into a bounded buffer, so
errors can quote them (`recent_messages()`); nothing is printed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import logging
import threading
from collections import deque
from ctypes import (
    CFUNCTYPE,
    POINTER,
    Structure,
    c_bool,
    c_char_p,
    c_int,
    c_size_t,
    c_uint32,
    c_uint64,
    c_void_p,
)
from typing import Final

from netstrata.errors import DatapathError

log = logging.getLogger(__name__)

BPF_ANY: Final = 0
BPF_NOEXIST: Final = 1
BPF_EXIST: Final = 2

BTF_KIND_STRUCT: Final = 4
BTF_KIND_ENUM: Final = 6
BTF_KIND_ENUM64: Final = 19

BPF_MAP_TYPE_HASH: Final = 1
BPF_MAP_TYPE_LRU_HASH: Final = 9
BPF_MAP_TYPE_LPM_TRIE: Final = 11
BPF_MAP_TYPE_RINGBUF: Final = 27

ENOTSUPP: Final = 524
"""Kernel-internal 'operation not supported' that bpf(2) leaks for missing batch ops."""

LIBBPF_WARN: Final = 0
LIBBPF_INFO: Final = 1


class ObjectOpenOpts(Structure):
    """`struct bpf_object_open_opts` (libbpf.h, 1.x)."""

    _fields_ = [
        ("sz", c_size_t),
        ("object_name", c_char_p),
        ("relaxed_maps", c_bool),
        ("pin_root_path", c_char_p),
        ("_attach_prog_fd", c_uint32),
        ("kconfig", c_char_p),
        ("btf_custom_path", c_char_p),
        ("kernel_log_buf", c_void_p),
        ("kernel_log_size", c_size_t),
        ("kernel_log_level", c_uint32),
    ]


class TestRunOpts(Structure):
    """`struct bpf_test_run_opts` (bpf.h)."""

    __test__ = False  # not a pytest class
    _fields_ = [
        ("sz", c_size_t),
        ("data_in", c_void_p),
        ("data_out", c_void_p),
        ("data_size_in", c_uint32),
        ("data_size_out", c_uint32),
        ("ctx_in", c_void_p),
        ("ctx_out", c_void_p),
        ("ctx_size_in", c_uint32),
        ("ctx_size_out", c_uint32),
        ("retval", c_uint32),
        ("repeat", c_int),
        ("duration", c_uint32),
        ("flags", c_uint32),
        ("cpu", c_uint32),
        ("batch_size", c_uint32),
    ]


class MapBatchOpts(Structure):
    """`struct bpf_map_batch_opts` (bpf.h)."""

    _fields_ = [("sz", c_size_t), ("elem_flags", c_uint64), ("flags", c_uint64)]


class BtfType(Structure):
    """`struct btf_type` (uapi btf.h): `size_or_type` is `size` for structs and enums."""

    _fields_ = [("name_off", c_uint32), ("info", c_uint32), ("size_or_type", c_uint32)]


class BtfMember(Structure):
    _fields_ = [("name_off", c_uint32), ("type", c_uint32), ("offset", c_uint32)]


class BtfEnum(Structure):
    _fields_ = [("name_off", c_uint32), ("val", ctypes.c_int32)]


class MapInfo(Structure):
    """The head of `struct bpf_map_info` (uapi bpf.h); the rest stays zero."""

    _fields_ = [
        ("type", c_uint32),
        ("id", c_uint32),
        ("key_size", c_uint32),
        ("value_size", c_uint32),
        ("max_entries", c_uint32),
        ("map_flags", c_uint32),
        ("name", ctypes.c_char * 16),
        ("_rest", ctypes.c_uint8 * 96),
    ]


class ProgInfo(Structure):
    """`struct bpf_prog_info` (uapi bpf.h) up to its run statistics; the fields before them are
    read as opaque bytes (the kernel fills what it has and requires nothing of the rest)."""

    _fields_ = [
        ("type", c_uint32),
        ("id", c_uint32),
        ("_head", ctypes.c_uint8 * 184),
        ("run_time_ns", ctypes.c_uint64),  # byte 192: total run time while stats are enabled
        ("run_cnt", ctypes.c_uint64),
        ("recursion_misses", ctypes.c_uint64),
        ("_tail", ctypes.c_uint8 * 40),
    ]


PRINT_FN = CFUNCTYPE(c_int, c_int, c_char_p, c_void_p)
SAMPLE_FN = CFUNCTYPE(c_int, c_void_p, c_void_p, c_size_t)

_lock = threading.Lock()
_messages: deque[str] = deque(maxlen=200)
_lib: ctypes.CDLL | None = None
_libc: ctypes.CDLL | None = None
_print_cb: object = None  # keeps the callback alive for as long as libbpf may call it


def _on_print(level: int, fmt: bytes, args: int) -> int:
    buf = ctypes.create_string_buffer(2048)
    assert _libc is not None
    _libc.vsnprintf(buf, len(buf), fmt, c_void_p(args))
    text = buf.value.decode(errors="replace").rstrip("\n")
    with _lock:
        _messages.extend(text.splitlines())
    log.debug("libbpf: %s", text)
    return 0


def recent_messages(n: int = 30) -> str:
    """The last `n` lines libbpf printed (for error reports)."""
    with _lock:
        return "\n".join(list(_messages)[-n:])


def clear_messages() -> None:
    with _lock:
        _messages.clear()


def _declare(lib: ctypes.CDLL) -> None:
    sigs: dict[str, tuple[object, list[object]]] = {
        "libbpf_set_print": (c_void_p, [PRINT_FN]),
        "bpf_object__open_file": (c_void_p, [c_char_p, POINTER(ObjectOpenOpts)]),
        "bpf_object__load": (c_int, [c_void_p]),
        "bpf_object__close": (None, [c_void_p]),
        "bpf_object__btf": (c_void_p, [c_void_p]),
        "bpf_object__find_map_by_name": (c_void_p, [c_void_p, c_char_p]),
        "bpf_object__find_program_by_name": (c_void_p, [c_void_p, c_char_p]),
        "bpf_map__fd": (c_int, [c_void_p]),
        "bpf_map__key_size": (c_uint32, [c_void_p]),
        "bpf_map__value_size": (c_uint32, [c_void_p]),
        "bpf_map__type": (c_int, [c_void_p]),
        "bpf_program__fd": (c_int, [c_void_p]),
        "bpf_obj_get": (c_int, [c_char_p]),
        "bpf_obj_get_info_by_fd": (c_int, [c_int, c_void_p, POINTER(c_uint32)]),
        "bpf_enable_stats": (c_int, [c_int]),
        "bpf_map_update_elem": (c_int, [c_int, c_void_p, c_void_p, c_uint64]),
        "bpf_map_lookup_elem": (c_int, [c_int, c_void_p, c_void_p]),
        "bpf_map_delete_elem": (c_int, [c_int, c_void_p]),
        "bpf_map_get_next_key": (c_int, [c_int, c_void_p, c_void_p]),
        "bpf_map_update_batch": (
            c_int, [c_int, c_void_p, c_void_p, POINTER(c_uint32), POINTER(MapBatchOpts)]
        ),
        "bpf_map_delete_batch": (c_int, [c_int, c_void_p, POINTER(c_uint32), POINTER(MapBatchOpts)]),
        "bpf_prog_test_run_opts": (c_int, [c_int, POINTER(TestRunOpts)]),
        "ring_buffer__new": (c_void_p, [c_int, SAMPLE_FN, c_void_p, c_void_p]),
        "ring_buffer__poll": (c_int, [c_void_p, c_int]),
        "ring_buffer__consume": (c_int, [c_void_p]),
        "ring_buffer__epoll_fd": (c_int, [c_void_p]),
        "ring_buffer__free": (None, [c_void_p]),
        "libbpf_num_possible_cpus": (c_int, []),
        "btf__parse_elf": (c_void_p, [c_char_p, c_void_p]),
        "btf__free": (None, [c_void_p]),
        "btf__find_by_name_kind": (c_int, [c_void_p, c_char_p, c_uint32]),
        "btf__type_by_id": (POINTER(BtfType), [c_void_p, c_uint32]),
        "btf__name_by_offset": (c_char_p, [c_void_p, c_uint32]),
        "btf__resolve_size": (ctypes.c_int64, [c_void_p, c_uint32]),
    }
    for name, (restype, argtypes) in sigs.items():
        fn = getattr(lib, name)
        fn.restype = restype
        fn.argtypes = argtypes


def lib() -> ctypes.CDLL:
    """The loaded libbpf, declared and with its print callback installed (once).

    Raises:
        DatapathError: libbpf is not installed.
    """
    global _lib, _libc, _print_cb
    with _lock:
        if _lib is not None:
            return _lib
        name = ctypes.util.find_library("bpf") or "libbpf.so.1"
        try:
            loaded = ctypes.CDLL(name, use_errno=True)
        except OSError as exc:
            raise DatapathError(
                f"cannot load libbpf ({name}): install libbpf1 (or libbpf-dev)"
            ) from exc
        _libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        _libc.vsnprintf.argtypes = [c_char_p, c_size_t, c_char_p, c_void_p]
        _declare(loaded)
        _print_cb = PRINT_FN(_on_print)
        loaded.libbpf_set_print(_print_cb)
        _lib = loaded
        return loaded


def errno_name(code: int) -> str:
    code = abs(code)
    if code == ENOTSUPP:
        return "ENOTSUPP"
    return errno.errorcode.get(code, f"errno {code}")


def check(ret: int, what: str, *, obj: str | None = None, program: str | None = None) -> int:
    """`ret` unless it is a negative errno, which becomes a DatapathError naming `what`."""
    if ret >= 0:
        return ret
    raise DatapathError(
        f"{what} failed: {errno_name(ret)}", errno_name=errno_name(ret), obj=obj, program=program
    )


def last_errno() -> int:
    return ctypes.get_errno() or errno.EINVAL
