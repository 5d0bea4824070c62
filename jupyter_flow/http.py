"""The one HTTP client factory: every part that calls model endpoints gets its client here.

The engine (a run without a client of its own), batch runs, Ray replicas and served flows
all call `make_client`, so an endpoint answers the same through `jupyter-flow run`,
`jupyter-flow batch` and `jupyter-flow serve flow`: redirects are followed (a 307 to
another path works everywhere), connections are pooled with the same limits, and every
request carries the same `User-Agent`. Per-request deadlines are the node's business
(`timeout_s`, else `DEFAULT_TIMEOUT_S`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import httpx

__all__ = ["DEFAULT_TIMEOUT_S", "make_client"]

#: Seconds an HTTP call may take when its node sets no `timeout_s`.
DEFAULT_TIMEOUT_S = 60.0
#: Connections kept open at most, and kept idle for reuse, unless the caller asks for more.
MAX_CONNECTIONS = 256
MAX_KEEPALIVE = 64


def make_client(
    *,
    concurrency: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    headers: Mapping[str, str] | None = None,
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` with jupyter-flow's settings. `concurrency` (items or requests
    in flight at once) raises the pool limits when it needs more than the defaults."""
    import httpx

    from jupyter_flow import __version__

    connections = max(MAX_CONNECTIONS, 4 * (concurrency or 0))
    keepalive = max(MAX_KEEPALIVE, concurrency or 0)
    return httpx.AsyncClient(
        limits=httpx.Limits(max_connections=connections, max_keepalive_connections=keepalive),
        follow_redirects=True,
        timeout=httpx.Timeout(timeout_s),
        headers={"user-agent": f"jupyter-flow/{__version__}", **dict(headers or {})},
    )
