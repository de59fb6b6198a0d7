"""What the lab's workload servers answer, as data the reference run and the lab servers share.

Every pod in a lab runs the same small multi-protocol server. Its HTTP behaviour is the
connectivity-test echo server's: every path answers 200 and echoes the request, except
`/auth-header-required`, which answers 401 unless the request carries
`Authorization: Bearer 123456` (the route cilium-cli's header-rewrite test relies on).
"""

from __future__ import annotations

from typing import Final

AUTH_REQUIRED_PATH: Final = "/auth-header-required"
AUTH_REQUIRED_VALUE: Final = "Bearer 123456"


def http_status(method: str, path: str, headers: tuple[tuple[str, str], ...]) -> int:
    """The status the lab server answers for a request that reached it."""
    route = path.split("?", 1)[0]
    if route == AUTH_REQUIRED_PATH:
        auth = [v for k, v in headers if k.lower() == "authorization"]
        return 200 if auth == [AUTH_REQUIRED_VALUE] else 401
    return 200
