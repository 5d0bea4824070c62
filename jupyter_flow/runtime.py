"""What the nodes of one run share: `Runtime` (the HTTP client, registered functions, the
worker threads, settings), which a node reaches through its `NodeContext`."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from jupyter_flow.http import loop_shared_client
from jupyter_flow.workers import DEFAULT_MAX_THREADS, run_in_worker, worker_pool

if TYPE_CHECKING:
    import httpx

__all__ = ["Runtime"]


class Runtime:
    """Per-run shared things: the HTTP client, registered functions, the worker threads
    (`max_threads` of them, the engine's own pool), settings."""

    def __init__(
        self,
        functions: Mapping[str, Callable[..., Any]],
        settings: Mapping[str, Any],
        http_client: httpx.AsyncClient | None,
        max_threads: int = DEFAULT_MAX_THREADS,
    ) -> None:
        self.functions = functions
        self.settings = settings
        self.client = http_client
        self.pool = worker_pool(max_threads)
        try:  # the loop whose shared client a node gets, even asking from a worker thread
            self.loop: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # made outside a loop: the loop running when a node asks
            self.loop = None

    def http_client(self) -> httpx.AsyncClient:
        """The client given to the run, else the event loop's shared one, taken when a node
        first calls out: a run that calls nothing over HTTP makes no client (and imports no
        HTTP transport)."""
        client = self.client
        if client is None:
            client = self.client = loop_shared_client(self.loop or asyncio.get_running_loop())
        return client

    async def run_blocking(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        return await run_in_worker(self.pool, fn, *args, **kwargs)
