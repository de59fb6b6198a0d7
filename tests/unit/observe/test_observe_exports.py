"""Every name a module of `netstrata.observe` exports exists (trio's test_exports idea)."""

from __future__ import annotations

import importlib

import pytest

MODULES = ["netstrata.observe", "netstrata.observe.flow", "netstrata.observe.filters",
           "netstrata.observe.render", "netstrata.observe.store", "netstrata.observe.builders",
           "netstrata.observe.options"]


@pytest.mark.parametrize("name", MODULES)
def test_all_names_exist(name: str) -> None:
    module = importlib.import_module(name)
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert missing == []
    assert len(set(module.__all__)) == len(module.__all__)


def test_metrics_exports() -> None:
    pytest.importorskip("prometheus_client")
    module = importlib.import_module("netstrata.observe.metrics")
    assert all(hasattr(module, n) for n in module.__all__)
