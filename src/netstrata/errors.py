"""The project's error types. `str()` of each is the message a user reads.

Subclass sparingly (STYLE.md): a manifest problem, a policy conflict, a datapath failure, an
unreachable kvstore. Internals may raise plain `ValueError`; the boundary that knows the context
re-raises one of these with it (`raise ... from exc`).
"""

from __future__ import annotations

from dataclasses import dataclass, field


class NetstrataError(Exception):
    """Base of every error netstrata reports to a user."""


@dataclass(frozen=True, slots=True)
class ManifestProblem:
    """One problem in one manifest, located as precisely as the input allows."""

    path: str
    """File name, or `<stdin>`."""
    line: int | None
    """1-based line of the offending node, when known."""
    column: int | None
    """1-based column of the offending node, when known."""
    field: str
    """Dotted field path inside the document, e.g. `spec.ingress[0].toPorts[0].ports[0].port`."""
    expected: str
    """What would have been accepted."""
    found: str
    """What was there, rendered briefly."""

    def render(self) -> str:
        loc = self.path
        if self.line is not None:
            loc += f":{self.line}"
            if self.column is not None:
                loc += f":{self.column}"
        where = f"{self.field}: " if self.field else ""
        return f"{loc}: {where}expected {self.expected}, found {self.found}"


@dataclass(eq=False)
class ManifestError(NetstrataError):
    """One or more manifest problems; nothing from the input was applied."""

    problems: list[ManifestProblem] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.problems.sort(key=lambda p: (p.path, p.line or 0, p.column or 0, p.field))
        super().__init__(str(self))

    def __str__(self) -> str:
        return "\n".join(p.render() for p in self.problems)


class PolicyConflictError(NetstrataError):
    """Rules that cannot be merged for an endpoint (e.g. two L7 parsers on one port and peer).

    The endpoint keeps its previous policy.
    """


@dataclass(eq=False)
class DatapathError(NetstrataError):
    """Loading, verifying or attaching a kernel program or map failed."""

    message: str
    errno_name: str | None = None
    obj: str | None = None
    program: str | None = None
    verifier_log_tail: str | None = None

    def __post_init__(self) -> None:
        super().__init__(str(self))

    def __str__(self) -> str:
        parts = [self.message]
        if self.obj or self.program:
            parts.append(f"(object {self.obj or '?'}, program {self.program or '?'})")
        if self.errno_name:
            parts.append(f"[{self.errno_name}]")
        text = " ".join(parts)
        if self.verifier_log_tail:
            text += "\nverifier log (tail):\n" + self.verifier_log_tail
        return text


class KVStoreUnavailable(NetstrataError):
    """The kvstore cannot be reached; callers fail closed."""


__all__ = [
    "DatapathError",
    "KVStoreUnavailable",
    "ManifestError",
    "ManifestProblem",
    "NetstrataError",
    "PolicyConflictError",
]
