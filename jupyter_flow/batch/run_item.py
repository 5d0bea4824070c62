"""One item of a batch run into its result record; the local and the Ray engine both
run every item through `run_item`, so their records are the same.

A record is the JSON line `results.jsonl` gets: the item's id, source and inputs, its
status, its outputs whole (`jupyter_flow.values.encode`: never cut; what JSON cannot hold is converted
and `converted` lists how), the first failure (node, type, message), per-node status and
timing, and where its trace is. The trace's text is made later, by the results writer,
off the event loop.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import partial
from typing import TYPE_CHECKING, Any

from jupyter_flow.batch.items import BatchInputError, BatchItem, trace_name
from jupyter_flow.batch.results import TRACES_DIR
from jupyter_flow.errors import FlowValidationError, Problem
from jupyter_flow.values import dumps, encode

if TYPE_CHECKING:
    import httpx

    from jupyter_flow.cache import NodeCache
    from jupyter_flow.flow import Flow
    from jupyter_flow.history import RunHistory

__all__ = ["ItemOutcome", "run_item", "stop_message"]


@dataclass
class ItemOutcome:
    """A finished item: its `record` (JSON data) and `trace`, a function that makes its
    trace's JSON text (run by the results writer, on its own thread)."""

    record: dict[str, Any]
    trace: Callable[[], str]


async def run_item(
    flow: Flow, item: BatchItem, client: httpx.AsyncClient, settings: Mapping[str, Any],
    *, cache: NodeCache | None = None, history: RunHistory | None = None,
) -> ItemOutcome:
    """Run `item` through `flow` (with the batch's shared HTTP `client`); a failure is
    recorded, not raised."""
    started = datetime.now(timezone.utc).isoformat()
    t0 = time.perf_counter()
    inputs, converted = encode(item.inputs, path="inputs")
    record: dict[str, Any] = {"id": item.id, "source": item.source, "inputs": inputs, "started_at": started}
    trace: Callable[[], str]
    try:
        if item.problem is not None:  # refused when the items were read: recorded as failed, not run
            raise BatchInputError([Problem(item.problem)])
        result = await flow.arun(item.inputs, settings=settings, http_client=client, raise_on_error=False, run_id=None,
                                 cache=cache, history=history)
    except Exception as exc:  # this item's inputs do not fit the flow (or the run broke)
        message = "; ".join(str(p) for p in exc.problems) if isinstance(exc, FlowValidationError) else f"{type(exc).__name__}: {exc}"
        record.update(status="error", outputs=None, nodes={}, error={"node": None, "type": type(exc).__name__, "message": message})
        failure = {"item": item.id, "status": "error", "error": message}
        trace = partial(_failure_trace, failure)
    else:
        failed = result.failed()
        error = None
        if not result.ok:
            first = failed[0] if failed else None
            message = (first.error.message if first and first.error else None) or result.error or result.status
            if first is not None and message.startswith(f"node '{first.node}': "):
                message = message[len(f"node '{first.node}': "):]
            error = {
                "node": first.node if first else None,
                "type": first.error.type if first and first.error else result.status,
                "message": message,
            }
        outputs, more = encode(result.outputs, path="outputs")
        converted += more
        if result.flow_outputs is not None:  # the flow declares what it answers with
            record["result"], more = encode(result.flow_outputs, path="result")
            converted += more
        record.update(
            status="ok" if result.ok else "error",
            run_id=result.run_id,
            outputs=outputs,
            error=encode(error).data,
            nodes={r.node: {"status": r.status, "duration_s": r.duration_s, "attempts": r.attempts} for r in result.trace},
        )
        trace = result.to_json
    if converted:
        record["converted"] = [c.to_dict() for c in converted]
    record["duration_s"] = time.perf_counter() - t0
    record["trace"] = f"{TRACES_DIR}/{trace_name(item.id)}"
    return ItemOutcome(record, trace)


def _failure_trace(failure: Mapping[str, Any]) -> str:
    return dumps(failure, indent=2)


def stop_message(record: Mapping[str, Any]) -> str | None:
    """What `fail_fast` says when this record stops the batch (naming the item and the
    node), or None when the item ran ok."""
    if record["status"] == "ok":
        return None
    err = record.get("error") or {}
    where = f"at node '{err['node']}'" if err.get("node") else "at its inputs"
    return f"item '{record['id']}' failed {where}: {err.get('message')}"
