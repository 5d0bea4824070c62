"""What a run leaves behind: RunResult, one NodeRecord per node, events.

A trace (`RunResult.to_dict`, `to_json`) writes values with `jupyter_flow.values`'
`SUMMARY` policy: tensors and arrays summarized (shape, dtype, device, min/max/mean/std,
NaN/Inf counts, histogram), long texts and lists cut, the summary saying so. The live
objects stay in `RunResult.outputs` and `NodeRecord.inputs` / `.outputs`.
"""

from __future__ import annotations

import hashlib
import json
import traceback
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

from jupyter_flow import capture
from jupyter_flow.errors import FlowRunError, FlowTimeoutError
from jupyter_flow.values import SUMMARY, dtype_name, dumps, encode, is_tensor, to_host

__all__ = [
    "NodeRecord",
    "RunEvent",
    "RunResult",
    "fingerprint",
]

NodeStatus = Literal["pending", "running", "ok", "error", "skipped", "cancelled"]
RunStatus = Literal["running", "ok", "error", "cancelled", "timeout"]


@dataclass
class ErrorInfo:
    type: str
    message: str
    traceback: str

    @classmethod
    def from_exception(cls, exc: BaseException) -> ErrorInfo:
        tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        return cls(type(exc).__name__, str(exc), tb)

    def to_dict(self) -> dict[str, str]:
        return {"type": self.type, "message": self.message, "traceback": self.traceback}


@dataclass
class NodeRecord:
    """Everything known about one node in one run."""

    node: str
    type: str
    status: NodeStatus = "pending"
    inputs: Any = None
    outputs: Any = None
    started_at: float | None = None  # seconds since the epoch
    duration_s: float | None = None
    attempts: int = 0
    error: ErrorInfo | None = None
    cached: bool = False
    defaulted: bool = False
    variant: str | None = None
    shadow: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # batch size, queue wait, device, memory...
    cache_key: Any = field(default=None, repr=False, compare=False)

    @property
    def ended_at(self) -> float | None:
        if self.started_at is None or self.duration_s is None:
            return None
        return self.started_at + self.duration_s

    def to_dict(self) -> dict[str, Any]:
        return {
            "node": self.node,
            "type": self.type,
            "status": self.status,
            "started_at": _iso(self.started_at),
            "duration_s": self.duration_s,
            "attempts": self.attempts,
            "cached": self.cached,
            "defaulted": self.defaulted,
            "variant": self.variant,
            "inputs": _traced(self.inputs),
            "outputs": _traced(self.outputs),
            "error": self.error.to_dict() if self.error else None,
            "shadow": _traced(self.shadow),
            **({"extra": _traced(self.extra)} if self.extra else {}),
        }


@dataclass
class RunResult:
    """The result of one flow run: `outputs` by node id and `trace`, one record per node."""

    run_id: str
    flow: str
    inputs: dict[str, Any]
    records: dict[str, NodeRecord]
    status: RunStatus = "running"
    started_at: float | None = None
    duration_s: float | None = None
    error: str | None = None
    background: AbstractSet[Any] = field(default=frozenset(), repr=False, compare=False)  # shadow runs still going
    #: the flow's declared outputs (`outputs:` in the flow file) by name; None when it declares none
    flow_outputs: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def outputs(self) -> dict[str, Any]:
        """Outputs of the nodes that produced one (ok, cached or defaulted), by node id."""
        return {nid: r.outputs for nid, r in self.records.items() if r.status == "ok"}

    @property
    def trace(self) -> list[NodeRecord]:
        """Records in the order the nodes started (nodes that never started last)."""
        return sorted(self.records.values(), key=lambda r: (r.started_at is None, r.started_at or 0.0))

    def __getitem__(self, node_id: str) -> NodeRecord:
        return self.records[node_id]

    def tensors(self, node_id: str) -> dict[str, Any]:
        """Live tensors the node captured (`capture: [...]`), by module path."""
        return capture.tensors(self, node_id)

    def failed(self) -> list[NodeRecord]:
        return [r for r in self.records.values() if r.status == "error"]

    def raise_for_status(self) -> RunResult:
        if self.status == "ok":
            return self
        if self.status == "timeout":
            raise FlowTimeoutError(self.error or "flow timed out", self)
        if self.status != "ok":
            raise FlowRunError(self.error or f"flow {self.status}", self)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "flow": self.flow,
            "status": self.status,
            "error": self.error,
            "started_at": _iso(self.started_at),
            "duration_s": self.duration_s,
            "inputs": _traced(self.inputs),
            "nodes": [r.to_dict() for r in self.trace],
            **({"flow_outputs": _traced(self.flow_outputs)} if self.flow_outputs is not None else {}),
        }

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 2) -> str:
        text = dumps(self.to_dict(), indent=indent)
        if path is not None:
            Path(path).write_text(text + "\n", encoding="utf-8")
        return text

    def _repr_markdown_(self) -> str:
        rows = ["| node | status | attempts | duration (ms) |", "|---|---|---|---|"]
        for r in self.trace:
            ms = f"{r.duration_s * 1000:.1f}" if r.duration_s is not None else ""
            rows.append(f"| {r.node} | {r.status}{' (cached)' if r.cached else ''} | {r.attempts} | {ms} |")
        head = f"**{self.flow}** run `{self.run_id}`: {self.status}"
        return "\n".join([head + (f" ({self.error})" if self.error else ""), "", *rows])


@dataclass
class RunEvent:
    """A live event: `kind` is run_started, node_started, node_finished or run_finished."""

    kind: Literal["run_started", "node_started", "node_finished", "run_finished"]
    result: RunResult
    record: NodeRecord | None = None

    @property
    def node(self) -> str | None:
        return self.record.node if self.record else None


def _iso(ts: float | None) -> str | None:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat() if ts is not None else None


def _traced(value: Any) -> Any:
    return encode(value, SUMMARY).data


def fingerprint(value: Any) -> str:
    """A stable digest of resolved inputs, tensors and arrays included (by content)."""
    h = hashlib.blake2b(digest_size=16)

    def default(obj: Any) -> Any:
        if is_tensor(obj):  # by content: shape, dtype and the bytes of its values
            host = to_host(obj)
            raw = host.tobytes() if hasattr(host, "tobytes") else json.dumps(host).encode()
            return {"tensor": [[int(d) for d in obj.shape], dtype_name(obj), hashlib.blake2b(raw, digest_size=16).hexdigest()]}
        if isinstance(obj, (bytes, bytearray)):
            return {"bytes": hashlib.blake2b(bytes(obj), digest_size=16).hexdigest()}
        if isinstance(obj, (set, frozenset)):
            return sorted(map(repr, obj))
        return {"repr": repr(obj)}

    h.update(json.dumps(value, sort_keys=True, default=default).encode())
    return h.hexdigest()
