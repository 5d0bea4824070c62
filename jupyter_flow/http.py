"""The one HTTP client factory: every part that calls model endpoints gets its client here.

The engine, batch runs, Ray replicas and served flows all call `make_client` (or share
one through `shared_client`), so an endpoint answers the same through `jupyter-flow run`,
`jupyter-flow batch` and `jupyter-flow serve flow`: redirects are followed (a 307 to
another path works everywhere), connections are pooled with the same limits, and every
request carries the same `User-Agent`.

Every request goes through the `httpx.AsyncClient` (nodes and users write against its
API) to its transport: `jupyter_flow.http_transport.AiohttpTransport`, httpx's transport
interface over aiohttp's connection pool, which keeps up with many concurrent calls where
httpx's own pool spends its time checking connections. The client is a
`jupyter_flow.http_client.FlowClient`, which hands a request straight to the transport
while it has no auth, hooks or cookies to apply (httpx's own `send` otherwise). `JUPYTER_FLOW_HTTP_TRANSPORT=httpx`
picks httpx's own transport instead. Either way a failed call raises httpx's errors
(`jupyter_flow.http_errors`); `jupyter_flow.http_send.send` is one call read in full
within a deadline, as the nodes call.

`shared_client()` is the client of the running event loop: `Flow.arun` without a client
of its own uses it, so repeated runs (in a notebook, a served flow, user code) reuse
connections. It is closed when its loop shuts down (`asyncio.run` ending) or at exit.

httpx and aiohttp are imported when the first client is made: a flow that calls nothing
over HTTP does not load them.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import functools
import importlib.util
import os
import threading
import warnings
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from jupyter_flow.version import __version__

if TYPE_CHECKING:
    import ssl

    import httpx

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "TRANSPORT_ENV",
    "loop_shared_client",
    "make_client",
    "shared_client",
    "transport_name",
]

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
    return "aiohttp" if importlib.util.find_spec("aiohttp") is not None else "httpx"


def make_client(
    *,
    concurrency: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    headers: Mapping[str, str] | None = None,
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` with jupyter-flow's settings. `concurrency` (items or requests
    in flight at once) raises the pool limits when it needs more than the defaults."""
    import httpx

    limits = httpx.Limits(
        max_connections=max(MAX_CONNECTIONS, 4 * (concurrency or 0)),
        max_keepalive_connections=max(MAX_KEEPALIVE, concurrency or 0),
    )
    settings: dict[str, Any] = {
        "limits": limits,
        "follow_redirects": True,
        "timeout": httpx.Timeout(timeout_s),
        "headers": {"user-agent": f"jupyter-flow/{__version__}", **dict(headers or {})},
    }
    if transport_name() == "aiohttp":
        from jupyter_flow.http_client import FlowClient
        from jupyter_flow.http_transport import AiohttpTransport

        ssl_context = _ssl_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))
        return FlowClient(transport=AiohttpTransport(limits=limits, ssl_context=ssl_context), **settings)
    return httpx.AsyncClient(**settings)


@functools.lru_cache(maxsize=4)
def _ssl_context(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    """The TLS settings httpx would make (its certificate bundle, or the one `SSL_CERT_FILE`
    or `SSL_CERT_DIR` names), made once per process and shared by every client: loading
    the bundle costs tens of milliseconds, which a script that runs a flow on a new event
    loop each time would otherwise pay on every first call. The two variables, which httpx
    reads, key the cache."""
    import httpx

    return httpx.create_ssl_context()


class _LoopClients:
    """One client per event loop, closed with its loop or at exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, Any]] = weakref.WeakKeyDictionary()
        #: the loop asked last (weakly) and its client: most calls come from the same loop
        self._last: tuple[weakref.ref[asyncio.AbstractEventLoop], Any] | None = None
        atexit.register(self.close_all)

    def get(self, loop: asyncio.AbstractEventLoop) -> httpx.AsyncClient:
        """`loop`'s client, made on first use; called on `loop`'s thread."""
        last = self._last
        if last is not None and last[0]() is loop and not last[1].is_closed:
            return last[1]
        entry = self._clients.get(loop)
        if entry is not None and not entry[0].is_closed:
            self._last = (weakref.ref(loop), entry[0])
            return entry[0]
        if _shutting_down(loop):
            # nothing would close a client made now, and it would keep the ended loop alive
            raise RuntimeError("the event loop is shutting down: no new HTTP client is made on it")
        client = make_client()
        keeper = _keep_until_loop_ends(client)
        _first_step(keeper)  # the loop now tracks it: its shutdown closes the client
        with self._lock:
            self._clients[loop] = (client, keeper)
        self._last = (weakref.ref(loop), client)
        return client

    def forget(self, client: httpx.AsyncClient) -> None:
        """Drop a closed client from the table (its loop is ending)."""
        with self._lock:
            for loop, entry in list(self._clients.items()):
                if entry[0] is client:
                    del self._clients[loop]
            last = self._last
            if last is not None and last[1] is client:
                self._last = None

    def close_all(self) -> None:
        with self._lock:
            entries = list(self._clients.items())
            self._clients.clear()
            self._last = None
        for loop, (client, _keeper) in entries:
            if client.is_closed or loop.is_closed():
                continue
            with contextlib.suppress(Exception):
                if loop.is_running():
                    asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(timeout=5)
                else:
                    loop.run_until_complete(client.aclose())


def _shutting_down(loop: asyncio.AbstractEventLoop) -> bool:
    """Whether `loop` has shut down its async generators (`asyncio.run` ending): asyncio then
    warns when a new one starts, and no longer closes it at the end (a generator that
    only yields, started once per loop that asks for a client)."""
    probe = _probe()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always", ResourceWarning)
        _first_step(probe)
    _last_step(probe)
    return any(issubclass(w.category, ResourceWarning) and w.source is loop for w in seen)


async def _probe() -> AsyncGenerator[None, None]:
    yield


def _last_step(agen: AsyncGenerator[None, None]) -> None:
    """Close an async generator suspended at a `yield` with nothing to await on the way."""
    _step_now(agen.aclose(), "while it closed")


def _first_step(agen: AsyncIterator[None]) -> None:
    """Run an async generator up to its first `yield` now, as `await anext(agen)` would
    (the running loop's hooks see it start, so its shutdown closes the generator): for a
    generator whose first step never waits, without an await."""
    _step_now(agen.__anext__(), "before its first yield")


def _step_now(step: Any, where: str) -> None:
    """Run `step` (an awaitable of a generator's) to its end now; it may not wait."""
    try:
        step.send(None)
    except StopIteration:
        return
    raise RuntimeError(f"the generator waited {where}")


async def _keep_until_loop_ends(client: httpx.AsyncClient) -> AsyncIterator[None]:
    # An async generator left suspended is closed by the loop's shutdown_asyncgens(), which
    # asyncio.run() calls before it closes the loop: the client closes on its own loop, and
    # is forgotten (the client holds its loop: kept in the table, it would keep the loop
    # and its connections' objects alive after the loop ends)
    try:
        yield
    finally:
        try:
            await client.aclose()
        finally:
            _LOOP_CLIENTS.forget(client)


_LOOP_CLIENTS = _LoopClients()


async def shared_client() -> httpx.AsyncClient:
    """The HTTP client of the running event loop (made on first use)."""
    return _LOOP_CLIENTS.get(asyncio.get_running_loop())


def loop_shared_client(loop: asyncio.AbstractEventLoop) -> httpx.AsyncClient:
    """`loop`'s shared client (made on first use), from any thread: off the loop's own
    thread it is made on the loop, which must be running."""
    try:
        here = asyncio.get_running_loop()
    except RuntimeError:
        here = None
    if here is loop:
        return _LOOP_CLIENTS.get(loop)
    if loop.is_closed() or not loop.is_running():
        raise RuntimeError("the run's event loop is not running (the run has ended): it has no HTTP client to give")
    try:
        return asyncio.run_coroutine_threadsafe(shared_client(), loop).result(timeout=_FROM_THREAD_S)
    except concurrent.futures.TimeoutError:
        raise RuntimeError(f"the run's event loop did not make its HTTP client within {_FROM_THREAD_S:g} s "
                           "(is it stopped, or waiting for this thread?)") from None


#: how long a worker thread waits for the loop to make its client
_FROM_THREAD_S = 30.0
