"""What a run takes from an earlier one (`Flow.arun(reuse=earlier, rerun=...)`): a node's
outputs, when its spec, its code and its resolved inputs are what they were then, unless
`rerun` names it or a node upstream of it.

Every finished run keeps, per node, the `CacheKey` its outputs depend on
(`keep_cache_keys`), so that any later run may reuse it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from jupyter_flow.nodes.base import Node
from jupyter_flow.plan import Plan, PlannedNode
from jupyter_flow.trace import NodeRecord, RunResult, fingerprint

__all__ = ["CacheKey", "Reuse", "keep_cache_keys"]


class CacheKey:
    """What a node's result depends on: its spec, its code (`cache_token`, taken now, so a
    later edit is seen) and its resolved inputs (digested only if a later run asks)."""

    __slots__ = ("_head", "_inputs", "_digest")

    def __init__(self, pn: PlannedNode, node: Node, inputs: Any) -> None:
        self._head = f"{pn.fingerprint}:{node.cache_token()}"
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
        elif record.cached and reuse is not None:
            record.cache_key = reuse.earlier.records[nid].cache_key
