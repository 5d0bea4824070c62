"""One item of a batch run into its result record; the local and the Ray engine both
run every item through `run_item`, so their records are the same.

A record is the JSON line `results.jsonl` gets: the item's id, source and inputs, its
status, outputs, the first failure (node, type, message), per-node status and timing,
and where its trace is.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_flow.batch.items import BatchItem, trace_name
from jupyter_flow.batch.results import TRACES_DIR
from jupyter_flow.errors import FlowValidationError
from jupyter_flow.trace import to_jsonable

if TYPE_CHECKING:
    import httpx

    from jupyter_flow.flow import Flow

__all__ = ["run_item", "stop_message"]


async def run_item(
    flow: Flow, item: BatchItem, client: httpx.AsyncClient, settings: Mapping[str, Any], traces: Path
) -> dict[str, Any]:
    """Run `item` through `flow` (with the batch's shared HTTP `client`); its trace goes to
    `traces/<trace_name(id)>`, its record is returned. A failure is recorded, not raised."""
    started = datetime.now(timezone.utc).isoformat()
    t0 = time.perf_counter()
    trace_file = traces / trace_name(item.id)
    record: dict[str, Any] = {"id": item.id, "source": item.source, "inputs": to_jsonable(item.inputs), "started_at": started}
    try:
        result = await flow.arun(item.inputs, settings=settings, http_client=client, raise_on_error=False, run_id=None)
    except Exception as exc:  # this item's inputs do not fit the flow (or the run broke)
        message = "; ".join(str(p) for p in exc.problems) if isinstance(exc, FlowValidationError) else f"{type(exc).__name__}: {exc}"
        record.update(status="error", outputs=None, nodes={}, error={"node": None, "type": type(exc).__name__, "message": message})
        trace_file.write_text(json.dumps({"item": item.id, "status": "error", "error": message}, indent=2) + "\n", encoding="utf-8")
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
        record.update(
            status="ok" if result.ok else "error",
            run_id=result.run_id,
            outputs=to_jsonable(result.outputs),
            error=error,
            nodes={r.node: {"status": r.status, "duration_s": r.duration_s, "attempts": r.attempts} for r in result.trace},
        )
        result.to_json(trace_file)
    record["duration_s"] = time.perf_counter() - t0
    record["trace"] = f"{TRACES_DIR}/{trace_file.name}"
    return record


def stop_message(record: Mapping[str, Any]) -> str | None:
    """What `fail_fast` says when this record stops the batch (naming the item and the
    node), or None when the item ran ok."""
    if record["status"] == "ok":
        return None
    err = record.get("error") or {}
    where = f"at node '{err['node']}'" if err.get("node") else "at its inputs"
    return f"item '{record['id']}' failed {where}: {err.get('message')}"
