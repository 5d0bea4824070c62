"""What a run takes from earlier ones: from an earlier run in the session
(`Flow.arun(reuse=earlier, rerun=...)`) a node's outputs, when its spec, its code and its
resolved inputs are what they were then, unless `rerun` names it or a node upstream of it;
from the node cache (`Flow.arun(cache=...)`, `StoredResults`) a node's outputs stored by any
earlier run, in any process, under the same persistent key (`jupyter_flow.cache.node_key`).

Every finished run keeps, per node, the `CacheKey` its outputs depend on
(`keep_cache_keys`), so that any later run may reuse it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from jupyter_flow.cache import CacheError, NodeCache, Uncacheable, node_key
from jupyter_flow.nodes.base import Node
from jupyter_flow.plan import Plan, PlannedNode
from jupyter_flow.trace import NodeRecord, RunResult, fingerprint

__all__ = ["CacheKey", "Reuse", "StoredResults", "keep_cache_keys"]

_log = logging.getLogger(__name__)


class CacheKey:
    """What a node's result depends on: its spec, its code (`cache_token`, taken now, so a
    later edit is seen) and its resolved inputs (digested only if a later run asks)."""

    __slots__ = ("_head", "_inputs", "_digest")

    def __init__(self, pn: PlannedNode, node: Node, inputs: Any) -> None:
        self._head = (pn.fingerprint, node.cache_token())
        self._inputs = inputs
        self._digest: str | None = None

    @property
    def digest(self) -> str:
        if self._digest is None:
            self._digest = fingerprint(self._inputs)
            self._inputs = None
        return self._digest

    def __eq__(self, other: object) -> bool:
        return isinstance(other, CacheKey) and self._head == other._head and self.digest == other.digest

    def __hash__(self) -> int:
        return hash((self._head, self.digest))


class Reuse:
    """The earlier run a run takes outputs from, and the nodes it runs again anyway: those
    `rerun` names and everything downstream of them."""

    def __init__(self, plan: Plan, earlier: RunResult, rerun: Iterable[str] | None = None) -> None:
        self.earlier = earlier
        self.again: set[str] = set()
        for nid in rerun or ():
            self.again |= {nid} | plan.downstream.get(nid, set())

    def previous(self, pn: PlannedNode, node: Node, inputs: Any) -> NodeRecord | None:
        """The earlier record of the node, when its outputs may stand for this run's."""
        if pn.id in self.again:
            return None
        previous = self.earlier.records.get(pn.id)
        if previous is None or previous.status != "ok" or previous.defaulted or previous.cache_key is None:
            return None
        return previous if previous.cache_key == CacheKey(pn, node, inputs) else None


def keep_cache_keys(plan: Plan, records: dict[str, NodeRecord], reuse: Reuse | None) -> None:
    """Each record of a finished run says what its outputs depend on, for a later run."""
    for nid, record in records.items():
        if record.status == "ok" and not record.defaulted and not record.cached:
            pn = plan.nodes[nid]
            record.cache_key = CacheKey(pn, pn.variants[record.variant][0] if record.variant else pn.node, record.inputs)
        elif record.cached and record.cache_key is None and reuse is not None:
            record.cache_key = reuse.earlier.records[nid].cache_key


class StoredResults:
    """A run's side of the node cache: the persistent key of a node's result, its stored
    outputs, and storing them. SQLite and the key's digest (tensors by content) run on a
    thread, never on the event loop. A cache that cannot be read or written does not fail
    the run: the node runs, and its record says why the cache was not used
    (`extra["cache_error"]`); after the first such error the run leaves the cache alone
    (one warning per run, not one per node)."""

    def __init__(self, cache: NodeCache) -> None:
        self.cache = cache
        self.broken: str | None = None

    async def lookup(
        self, pn: PlannedNode, node: Node, variant: str | None, inputs: Any, record: NodeRecord, *, read: bool = True
    ) -> tuple[str | None, Any]:
        """The node's persistent key (None when its inputs hold a value the cache cannot
        key) and its stored outputs (`NodeCache.MISS` when there are none, or without `read`)."""
        if self.broken is not None:
            record.extra["cache_error"] = self.broken
            return None, NodeCache.MISS
        code = node.cache_token()  # on the loop: a python node reads the run's functions
        if variant is not None:  # a variant keys on itself: each one's results are its own
            code = f"{code}|variant:{variant}"
        try:
            return await asyncio.to_thread(self._get, pn.spec.type, inputs, code, read)
        except CacheError as exc:
            self._failed(pn, record, exc)
            return None, NodeCache.MISS

    def _get(self, kind: str, inputs: Any, code: str, read: bool) -> tuple[str | None, Any]:
        try:
            key = node_key(kind, inputs, code)
        except Uncacheable:
            return None, NodeCache.MISS
        return key, self.cache.get(key) if read else NodeCache.MISS

    async def store(self, pn: PlannedNode, key: str, outputs: Any, record: NodeRecord) -> None:
        """Keep a node's outputs under `key` (a value the cache cannot hold without pickle
        is left out: the node then runs each time)."""
        try:
            await asyncio.to_thread(self.cache.put, key, outputs, node=pn.id, kind=pn.spec.type)
        except CacheError as exc:
            self._failed(pn, record, exc)

    def _failed(self, pn: PlannedNode, record: NodeRecord, exc: CacheError) -> None:
        record.extra["cache_error"] = str(exc)
        if self.broken is None:
            _log.warning("node %s: the node cache is not used in this run: %s", pn.id, exc)
        self.broken = str(exc)
