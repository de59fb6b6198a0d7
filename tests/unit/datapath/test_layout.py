"""bpf/netstrata_maps.h and maps/_layout.py describe the same bytes (STYLE.md, "One source of
truth for BPF map layouts").

A probe naming every shared type is compiled with `clang -target bpf -g`; its BTF, read by
bpftool (an implementation independent of ours), must agree with the Python declarations in
size, field names, field offsets, field sizes and enum values. The loader's own checker (libbpf
BTF) must agree too, and must name the struct and field when something differs.
No root needed; skips, saying why, without clang or bpftool.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from netstrata.datapath.drop_reasons import DESCRIPTIONS, DropReason
from netstrata.datapath.loader import build
from netstrata.datapath.maps import ENUMS, STRUCTS, EnumSpec, StructSpec

BPFTOOL = shutil.which("bpftool") or next(
    (p for p in ("/usr/sbin/bpftool", "/sbin/bpftool") if Path(p).exists()), None)


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory) -> Path:
    if build.find_clang() is None:
        pytest.skip("clang is not installed: cannot compile the layout probe")
    mp = pytest.MonkeyPatch()
    mp.setenv("NETSTRATA_CACHE_DIR", str(tmp_path_factory.mktemp("bpfcache")))
    try:
        return build.compile_source(build.PROBE_SOURCE)
    finally:
        mp.undo()


@pytest.fixture(scope="module")
def btf(probe: Path) -> dict[int, dict[str, Any]]:
    if BPFTOOL is None:
        pytest.skip("bpftool is not installed: cannot dump the probe's BTF")
    out = subprocess.run([BPFTOOL, "-j", "btf", "dump", "file", str(probe), "format", "raw"],
                         capture_output=True, text=True, check=True).stdout
    return {t["id"]: t for t in json.loads(out)["types"]}


def _named(btf: dict[int, dict[str, Any]], kind: str, name: str) -> dict[str, Any]:
    found = [t for t in btf.values() if t["kind"] == kind and t.get("name") == name]
    assert len(found) == 1, f"{kind} {name} is not in the probe's BTF exactly once"
    return found[0]


def _size(btf: dict[int, dict[str, Any]], type_id: int) -> int:
    t = btf[type_id]
    if t["kind"] in ("TYPEDEF", "CONST", "VOLATILE"):
        return _size(btf, t["type_id"])
    if t["kind"] == "ARRAY":
        return int(t["nr_elems"]) * _size(btf, t["type_id"])
    return int(t["size"])


def _typedef_chain(btf: dict[int, dict[str, Any]], type_id: int) -> list[str]:
    names = []
    t = btf[type_id]
    while t["kind"] == "TYPEDEF":
        names.append(t["name"])
        t = btf[t["type_id"]]
    return names


@pytest.mark.parametrize("spec", STRUCTS, ids=lambda s: s.c_name)
def test_struct_matches_btf(btf: dict[int, dict[str, Any]], spec: StructSpec[object]) -> None:
    found = _named(btf, "STRUCT", spec.c_name)
    assert found["size"] == spec.size
    members = [(m["name"], m["bits_offset"] // 8, _size(btf, m["type_id"]))
               for m in found["members"]]
    offsets = spec.offsets()
    assert members == [(f.c_name, offsets[f.c_name], f.size) for f in spec.fields]


@pytest.mark.parametrize("spec", STRUCTS, ids=lambda s: s.c_name)
def test_be_fields_are_network_order_in_c(btf: dict[int, dict[str, Any]],
                                          spec: StructSpec[object]) -> None:
    """A `_be` name promises network order: the C member must be a `__be16`/`__be32`."""
    found = _named(btf, "STRUCT", spec.c_name)
    for m in found["members"]:
        chain = _typedef_chain(btf, m["type_id"])
        is_be_type = bool(chain) and chain[0].startswith("__be")
        assert m["name"].endswith("_be") == is_be_type, (spec.c_name, m["name"], chain)


@pytest.mark.parametrize("spec", ENUMS, ids=lambda s: s.c_name)
def test_enum_matches_btf(btf: dict[int, dict[str, Any]], spec: EnumSpec) -> None:
    found = _named(btf, "ENUM", spec.c_name)
    assert {v["name"]: v["val"] for v in found["values"]} == spec.expected()


def test_every_shared_type_has_a_python_mirror(btf: dict[int, dict[str, Any]]) -> None:
    structs = {t["name"] for t in btf.values() if t["kind"] == "STRUCT"}
    enums = {t["name"] for t in btf.values() if t["kind"] == "ENUM"}
    assert structs == {s.c_name for s in STRUCTS}
    assert enums == {e.c_name for e in ENUMS}


def test_loader_checker_finds_no_problem(probe: Path) -> None:
    from netstrata.datapath.loader import _btfcheck

    assert _btfcheck.check_probe(probe) == []


@dataclass(frozen=True, slots=True)
class _SwappedPolicyEntry:
    proxy_port: int
    flags: int
    prefix_bits: int
    cookie: int
    precedence: int


def test_loader_checker_names_struct_and_field(probe: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    """A Python mirror that drifted (two fields swapped) is refused, naming struct and field."""
    from netstrata.datapath.loader import _btfcheck

    drifted = StructSpec("policy_entry", _SwappedPolicyEntry, ("proxy_port", "H"), ("flags", "B"),
                         ("prefix_bits", "B"), ("cookie", "I"), ("precedence", "I"))
    monkeypatch.setattr(_btfcheck, "STRUCTS", (drifted,))
    problems = _btfcheck.check_probe(probe)
    assert any("struct policy_entry field cookie: offset 8 in the object, 4" in p
               for p in problems), problems


def test_loader_refuses_a_drifted_layout(probe: Path, tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """BpfObject checks before anything reaches the kernel: no root needed to see it refuse."""
    from netstrata.datapath.loader import _btfcheck
    from netstrata.datapath.loader.bpfobject import BpfObject
    from netstrata.errors import DatapathError

    monkeypatch.setenv("NETSTRATA_CACHE_DIR", str(probe.parents[2]))
    drifted = StructSpec("policy_entry", _SwappedPolicyEntry, ("proxy_port", "H"), ("flags", "B"),
                         ("prefix_bits", "B"), ("cookie", "I"), ("precedence", "I"))
    monkeypatch.setattr(_btfcheck, "STRUCTS", (drifted,))
    with pytest.raises(DatapathError, match=r"struct policy_entry field cookie"):
        BpfObject(tmp_path / "pins")
    assert not (tmp_path / "pins").exists()


def test_drop_reason_descriptions_cover_every_value() -> None:
    assert set(DESCRIPTIONS) == set(DropReason)
    assert all(text.strip() for text in DESCRIPTIONS.values())
