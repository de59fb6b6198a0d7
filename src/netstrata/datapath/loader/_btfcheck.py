"""Compares the BTF of a compiled object with `maps/_layout.py` (Cilium's alignchecker idea).

A struct of the header that changed without its Python mirror (or the reverse) would make the
loader write garbage into the maps. The loader runs this check on the probe object (which names
every shared type) and on the program object, and refuses to attach on any difference, naming
the struct and the field.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass
from pathlib import Path

from netstrata.datapath.loader import _libbpf
from netstrata.datapath.maps._layout import ENUMS, STRUCTS, EnumSpec, StructSpec
from netstrata.errors import DatapathError


@dataclass(frozen=True, slots=True)
class BtfMember:
    name: str
    offset: int
    """Bytes."""
    size: int


@dataclass(frozen=True, slots=True)
class BtfStruct:
    name: str
    size: int
    members: tuple[BtfMember, ...]


class _Btf:
    """A read-only view of one `struct btf *` owned by the caller."""

    def __init__(self, handle: int) -> None:
        self._lib = _libbpf.lib()
        self._btf = handle

    def _name(self, off: int) -> str:
        raw = self._lib.btf__name_by_offset(self._btf, off)
        return raw.decode() if raw else ""

    def _find(self, name: str, kind: int) -> ctypes._Pointer[_libbpf.BtfType] | None:
        type_id = self._lib.btf__find_by_name_kind(self._btf, name.encode(), kind)
        if type_id <= 0:
            return None
        return self._lib.btf__type_by_id(self._btf, type_id)  # type: ignore[no-any-return]

    def struct(self, name: str) -> BtfStruct | None:
        t = self._find(name, _libbpf.BTF_KIND_STRUCT)
        if t is None:
            return None
        vlen = t.contents.info & 0xFFFF
        kflag = t.contents.info >> 31
        base = ctypes.addressof(t.contents) + ctypes.sizeof(_libbpf.BtfType)
        members = []
        for i in range(vlen):
            m = _libbpf.BtfMember.from_address(base + i * ctypes.sizeof(_libbpf.BtfMember))
            bit_offset = m.offset & 0xFFFFFF if kflag else m.offset
            size = self._lib.btf__resolve_size(self._btf, m.type)
            members.append(BtfMember(self._name(m.name_off), bit_offset // 8, int(size)))
        return BtfStruct(name, t.contents.size_or_type, tuple(members))

    def enum(self, name: str) -> dict[str, int] | None:
        t = self._find(name, _libbpf.BTF_KIND_ENUM)
        if t is None:
            return None
        vlen = t.contents.info & 0xFFFF
        base = ctypes.addressof(t.contents) + ctypes.sizeof(_libbpf.BtfType)
        out = {}
        for i in range(vlen):
            e = _libbpf.BtfEnum.from_address(base + i * ctypes.sizeof(_libbpf.BtfEnum))
            out[self._name(e.name_off)] = e.val
        return out


def struct_problems(found: BtfStruct, spec: StructSpec[object]) -> list[str]:
    """Differences between a struct in BTF and its `_layout.py` declaration."""
    where = f"struct {spec.c_name}"
    problems = []
    if found.size != spec.size:
        problems.append(f"{where}: size {found.size} in the object, {spec.size} in _layout.py")
    offsets = spec.offsets()
    names = [m.name for m in found.members]
    if names != list(offsets):
        problems.append(f"{where}: fields {names} in the object, {list(offsets)} in _layout.py")
    sizes = {f.c_name: f.size for f in spec.fields}
    for m in found.members:
        if m.name in offsets and m.offset != offsets[m.name]:
            problems.append(f"{where} field {m.name}: offset {m.offset} in the object, "
                            f"{offsets[m.name]} in _layout.py")
        if m.name in sizes and m.size != sizes[m.name]:
            problems.append(f"{where} field {m.name}: size {m.size} in the object, "
                            f"{sizes[m.name]} in _layout.py")
    return problems


def enum_problems(found: dict[str, int], spec: EnumSpec) -> list[str]:
    expected = spec.expected()
    problems = []
    for name in sorted(set(found) | set(expected)):
        if found.get(name) != expected.get(name):
            problems.append(f"enum {spec.c_name} {name}: {found.get(name)} in the object, "
                            f"{expected.get(name)} in _layout.py")
    return problems


def check_btf(handle: int, *, require_all: bool) -> list[str]:
    """Problems between the BTF at `handle` and every struct/enum of `_layout.py`.

    With `require_all`, a type missing from the BTF is a problem too (the probe names them all).
    """
    btf = _Btf(handle)
    problems: list[str] = []
    for spec in STRUCTS:
        found = btf.struct(spec.c_name)
        if found is None:
            if require_all:
                problems.append(f"struct {spec.c_name}: missing from the object's BTF")
            continue
        problems += struct_problems(found, spec)
    for espec in ENUMS:
        values = btf.enum(espec.c_name)
        if values is None:
            if require_all:
                problems.append(f"enum {espec.c_name}: missing from the object's BTF")
            continue
        problems += enum_problems(values, espec)
    return problems


def check_probe(path: Path) -> list[str]:
    """Parse the BTF of the compiled probe object and compare every shared type."""
    lib = _libbpf.lib()
    handle = lib.btf__parse_elf(str(path).encode(), None)
    if not handle:
        code = _libbpf.last_errno()
        raise DatapathError("cannot read BTF of the layout probe", obj=path.name,
                            errno_name=_libbpf.errno_name(code))
    try:
        return check_btf(handle, require_all=True)
    finally:
        lib.btf__free(handle)
