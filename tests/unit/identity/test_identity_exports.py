"""The public names of `identity` and `kvstore` exist and are exactly `__all__`."""

from __future__ import annotations

import importlib

import pytest


@pytest.mark.parametrize("module", ["netstrata.identity", "netstrata.kvstore"])
def test_all_names_resolve_and_are_sorted_unique(module: str) -> None:
    mod = importlib.import_module(module)
    names = list(mod.__all__)
    assert len(names) == len(set(names))
    for name in names:
        assert hasattr(mod, name), f"{module}.{name} is in __all__ but missing"
    public = {n for n in vars(mod) if not n.startswith("_")}
    # Everything public at package level is deliberately exported (submodules aside).
    stray = {n for n in public - set(names)
             if not type(getattr(mod, n)).__name__ == "module"}
    assert stray == set()
