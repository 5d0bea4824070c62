"""The one HTTP client factory: every part that calls model endpoints gets its client here.

The engine, batch runs, Ray replicas and served flows all call `make_client` (or share
one through `shared_client`), so an endpoint answers the same through `jupyter-flow run`,
`jupyter-flow batch` and `jupyter-flow serve flow`: redirects are followed (a 307 to
another path works everywhere), connections are pooled with the same limits, and every
request carries the same `User-Agent`.

The client keeps httpx's API (nodes and users write against it) over aiohttp's transport
(the `httpx-aiohttp` package), which keeps up with many concurrent calls where httpx's
own pool spends its time checking connections. `JUPYTER_FLOW_HTTP_TRANSPORT=httpx` picks
httpx's own transport instead.

`shared_client()` is the client of the running event loop: `Flow.arun` without a client
of its own uses it, so repeated runs (in a notebook, a served flow, user code) reuse
connections. It is closed when its loop shuts down (`asyncio.run` ending) or at exit.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import threading
import weakref
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import httpx

__all__ = ["DEFAULT_TIMEOUT_S", "TRANSPORT_ENV", "describe_error", "make_client", "shared_client", "transport_name"]

#: Seconds an HTTP call may take in all when its node sets no `timeout_s`.
DEFAULT_TIMEOUT_S = 60.0
#: Connections kept open at most, and kept idle for reuse, unless the caller asks for more.
MAX_CONNECTIONS = 256
MAX_KEEPALIVE = 64
#: Environment variable choosing the transport: `aiohttp` (default when installed) or `httpx`.
TRANSPORT_ENV = "JUPYTER_FLOW_HTTP_TRANSPORT"


def transport_name() -> str:
    """The transport `make_client` uses here: "aiohttp" or "httpx"."""
    if os.environ.get(TRANSPORT_ENV, "").strip().lower() == "httpx":
        return "httpx"
    try:
        import httpx_aiohttp  # noqa: F401
    except ImportError:
        return "httpx"
    return "aiohttp"


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

    limits = httpx.Limits(
        max_connections=max(MAX_CONNECTIONS, 4 * (concurrency or 0)),
        max_keepalive_connections=max(MAX_KEEPALIVE, concurrency or 0),
    )
    transport: httpx.AsyncBaseTransport | None = None
    if transport_name() == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        transport = AiohttpTransport(limits=limits)
    return httpx.AsyncClient(
        limits=limits,
        transport=transport,
        follow_redirects=True,
        timeout=httpx.Timeout(timeout_s),
        headers={"user-agent": f"jupyter-flow/{__version__}", **dict(headers or {})},
    )


class _LoopClients:
    """One client per event loop, closed with its loop or at exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, Any]] = weakref.WeakKeyDictionary()
        atexit.register(self.close_all)

    async def get(self) -> httpx.AsyncClient:
        loop = asyncio.get_running_loop()
        entry = self._clients.get(loop)
        if entry is not None and not entry[0].is_closed:
            return entry[0]
        client = make_client()
        keeper = _keep_until_loop_ends(client)
        await keeper.__anext__()  # the loop now tracks it: its shutdown closes the client
        with self._lock:
            self._clients[loop] = (client, keeper)
        return client

    def close_all(self) -> None:
        with self._lock:
            entries = list(self._clients.items())
            self._clients.clear()
        for loop, (client, _keeper) in entries:
            if client.is_closed or loop.is_closed():
                continue
            with contextlib.suppress(Exception):
                if loop.is_running():
                    asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(timeout=5)
                else:
                    loop.run_until_complete(client.aclose())


async def _keep_until_loop_ends(client: httpx.AsyncClient) -> AsyncIterator[None]:
    # An async generator left suspended is closed by the loop's shutdown_asyncgens(), which
    # asyncio.run() calls before it closes the loop: the client closes on its own loop.
    try:
        yield
    finally:
        await client.aclose()


_LOOP_CLIENTS = _LoopClients()


async def shared_client() -> httpx.AsyncClient:
    """The HTTP client of the running event loop (made on first use)."""
    return await _LOOP_CLIENTS.get()


def describe_error(exc: BaseException, endpoint: str, timeout_s: float) -> str:
    """What went wrong with a call to `endpoint`, naming the kind of failure, for either
    transport (aiohttp's own error, where there is one, says more than httpx's mapping)."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    kind = type(cause).__name__
    reason = str(getattr(cause, "strerror", None) or cause).strip() or str(exc).strip()
    if isinstance(exc, asyncio.TimeoutError) or ("Timeout" in kind and "Connect" not in kind):
        return f"{endpoint} did not answer within {timeout_s:g} s ({kind})"
    for types, text in _error_texts():
        if isinstance(cause, types) or isinstance(exc, types):
            return text.format(endpoint=endpoint, kind=kind, reason=reason or "no reason given")
    return f"request to {endpoint} failed ({kind}: {reason})"


def _error_texts() -> list[tuple[tuple[type[BaseException], ...], str]]:
    """(error types, message) in the order they are tried; aiohttp's first, the more
    specific before the more general."""
    import httpx

    texts: list[tuple[tuple[type[BaseException], ...], str]] = []
    try:
        import aiohttp
    except ImportError:  # pragma: no cover - the httpx transport alone
        pass
    else:
        texts += [
            ((aiohttp.ClientConnectorError,), "cannot connect to {endpoint}: {reason} ({kind})"),
            ((aiohttp.ServerDisconnectedError,), "{endpoint} closed the connection before it answered ({kind})"),
            ((aiohttp.ClientPayloadError,), "the connection to {endpoint} broke while the answer was being read ({kind}: {reason})"),
            ((aiohttp.ClientOSError,), "the connection to {endpoint} failed: {reason} ({kind})"),
        ]
    texts += [
        ((httpx.ConnectError,), "cannot connect to {endpoint}: {reason} ({kind})"),
        ((httpx.RemoteProtocolError,), "{endpoint} broke the HTTP protocol or closed the connection ({kind}: {reason})"),
        ((httpx.ReadError,), "the connection to {endpoint} broke while the answer was being read ({kind}: {reason})"),
    ]
    return texts
