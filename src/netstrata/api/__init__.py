"""Manifests in, checked domain objects out.

`load_manifests(paths)` reads files, directories and stdin; `parse_documents(docs)` checks
already-loaded YAML documents. Both return a `ManifestSet` of `api.types` dataclasses or raise
one `ManifestError` listing every problem. The schema (pydantic) is loaded on first use, so
packages that only need `netstrata.api.types` do not pay for it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from netstrata.api.manifests import (
        SUPPORTED_KINDS,
        ManifestSet,
        load_manifests,
        parse_documents,
    )

__all__ = ["SUPPORTED_KINDS", "ManifestSet", "load_manifests", "parse_documents"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from netstrata.api import manifests

        return getattr(manifests, name)
    raise AttributeError(f"module 'netstrata.api' has no attribute {name!r}")
