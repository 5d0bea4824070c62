"""What a run leaves behind: RunResult, one NodeRecord per node, value summaries, events.

Two ways to write a value as JSON, for two purposes:

- `to_jsonable` is for traces: tensors and arrays are summarized (shape, dtype, device,
  min/max/mean/std, NaN/Inf counts, histogram), and long texts and lists are cut, the
  summary saying so (`{"__summary__": {"kind": "text", "truncated": true, ...}}`). The
  live objects stay in `RunResult.outputs` and `NodeRecord.inputs` / `.outputs`.
- `result_json` is for results (printed outputs, `results.jsonl`, served answers): the
  whole value, never cut; what JSON cannot hold is converted, and each conversion is
  listed (`Conversion`) so the record can say how.

`dumps_json` writes either as text any UTF-8 writer accepts (a string with a lone
surrogate is written with JSON's `\\uXXXX` escapes, which read back exactly).
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import traceback
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

__all__ = [
    "Conversion",
    "NodeRecord",
    "RunEvent",
    "RunResult",
    "dumps_json",
    "fingerprint",
    "result_json",
    "summarize",
    "to_jsonable",
]

NodeStatus = Literal["pending", "running", "ok", "error", "skipped", "cancelled"]
RunStatus = Literal["running", "ok", "error", "cancelled", "timeout"]

HISTOGRAM_BINS = 20
_MAX_TEXT = 10_000
_MAX_ITEMS = 1_000
_MAX_CONVERSIONS = 100


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
            "inputs": to_jsonable(self.inputs),
            "outputs": to_jsonable(self.outputs),
            "error": self.error.to_dict() if self.error else None,
            "shadow": to_jsonable(self.shadow),
            **({"extra": to_jsonable(self.extra)} if self.extra else {}),
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
        from jupyter_flow.capture import tensors

        return tensors(self, node_id)

    def failed(self) -> list[NodeRecord]:
        return [r for r in self.records.values() if r.status == "error"]

    def raise_for_status(self) -> RunResult:
        if self.status == "ok":
            return self
        from jupyter_flow.errors import FlowRunError, FlowTimeoutError

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
            "inputs": to_jsonable(self.inputs),
            "nodes": [r.to_dict() for r in self.trace],
            **({"flow_outputs": to_jsonable(self.flow_outputs)} if self.flow_outputs is not None else {}),
        }

    def to_json(self, path: str | Path | None = None, *, indent: int | None = 2) -> str:
        text = dumps_json(self.to_dict(), indent=indent)
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


def _is_tensor(value: Any) -> bool:
    return type(value).__module__.startswith("torch") and hasattr(value, "dtype") and hasattr(value, "shape")


def _is_ndarray(value: Any) -> bool:
    return type(value).__module__ == "numpy" and hasattr(value, "dtype") and hasattr(value, "shape")


def summarize(value: Any) -> dict[str, Any] | None:
    """A JSON summary of a tensor or array; None for anything else."""
    if _is_tensor(value):
        import torch

        t = value.detach()
        summary: dict[str, Any] = {
            "kind": "tensor",
            "shape": list(t.shape),
            "dtype": str(t.dtype).replace("torch.", ""),
            "device": str(t.device),
            "numel": t.numel(),
        }
        if t.numel():
            f = t.abs().float() if t.is_complex() else t.float()
            nan = torch.isnan(f)
            inf = torch.isinf(f)
            finite = f[~(nan | inf)]
            summary["nan"] = int(nan.sum())
            summary["inf"] = int(inf.sum())
            if finite.numel():
                lo, hi = float(finite.min()), float(finite.max())
                summary.update(
                    min=lo,
                    max=hi,
                    mean=float(finite.mean()),
                    std=float(finite.std()) if finite.numel() > 1 else 0.0,
                )
                counts = torch.histc(finite.cpu(), bins=HISTOGRAM_BINS, min=lo, max=hi if hi > lo else lo + 1)
                summary["histogram"] = {"bins": HISTOGRAM_BINS, "range": [lo, hi], "counts": [int(c) for c in counts]}
        return summary
    if _is_ndarray(value):
        import numpy as np

        a = np.asarray(value)
        summary = {"kind": "ndarray", "shape": list(a.shape), "dtype": str(a.dtype), "device": "cpu", "numel": int(a.size)}
        if a.size and np.issubdtype(a.dtype, np.number):
            values = a.astype(np.float64)
            nans, infs = np.isnan(values), np.isinf(values)
            kept = values[~(nans | infs)]
            summary.update(nan=int(nans.sum()), inf=int(infs.sum()))
            if kept.size:
                lo, hi = float(kept.min()), float(kept.max())
                bin_counts, _ = np.histogram(kept, bins=HISTOGRAM_BINS, range=(lo, hi if hi > lo else lo + 1))
                summary.update(
                    min=lo,
                    max=hi,
                    mean=float(kept.mean()),
                    std=float(kept.std(ddof=1)) if kept.size > 1 else 0.0,
                    histogram={"bins": HISTOGRAM_BINS, "range": [lo, hi], "counts": [int(c) for c in bin_counts]},
                )
        return summary
    return None


def to_jsonable(value: Any) -> Any:
    """A JSON-safe copy for a trace: tensors and arrays summarized, bytes described, long
    texts and lists cut (the summary says so: `truncated`, the full `length`, the `head`)."""
    if value is None or isinstance(value, (bool, int, str)):
        if isinstance(value, str) and len(value) > _MAX_TEXT:
            return {"__summary__": {"kind": "text", "length": len(value), "truncated": True, "head": value[:_MAX_TEXT]}}
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    summary = summarize(value)
    if summary is not None:
        return {"__summary__": summary}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        items = list(value)
        if len(items) > _MAX_ITEMS:
            head = [to_jsonable(v) for v in items[:_MAX_ITEMS]]
            return {"__summary__": {"kind": "list", "length": len(items), "truncated": True, "head": head}}
        return [to_jsonable(v) for v in items]
    if isinstance(value, (bytes, bytearray)):
        return {"__summary__": {"kind": "bytes", "length": len(value)}}
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "model_dump"):
        return to_jsonable(value.model_dump())
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        return to_jsonable(value.item())
    text = repr(value)
    if len(text) > _MAX_TEXT:
        return {"__repr__": text[:_MAX_TEXT], "__summary__": {"kind": "repr", "length": len(text), "truncated": True}}
    return {"__repr__": text}


# -- results: whole values ----------------------------------------------------------------
@dataclass(frozen=True)
class Conversion:
    """A part of a result JSON cannot hold as it is, and what it was written as.

    `path` locates it (`summary.scores[3]`), `kind` says what it was (`tensor float32
    [2, 3] on cpu`, `bytes`, `float inf`, `text with lone surrogates`), `written_as` how
    it is written (`a nested list of its values`, `base64`, ...)."""

    path: str
    kind: str
    written_as: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "kind": self.kind, "written_as": self.written_as}


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def result_json(value: Any, path: str = "") -> tuple[Any, list[Conversion]]:
    """`value` as JSON data, whole (no text or list is ever cut), and the conversions made.

    Plain JSON values pass as they are (tuples and sets as lists, mapping keys as strings);
    tensors and arrays become nested lists of their values; bytes become base64 text;
    non-finite floats the strings "inf", "-inf", "nan"; text with lone surrogates (which
    no UTF-8 writer accepts) gets them as `\\udXXX` text; any other object its `repr`.
    Each of these is listed in the conversions, with where it was."""
    conversions: list[Conversion] = []
    data = _result(value, path, conversions, 0)
    if len(conversions) > _MAX_CONVERSIONS:  # a tensor full of NaNs: the first ones say enough
        more = len(conversions) - _MAX_CONVERSIONS
        conversions = [*conversions[:_MAX_CONVERSIONS], Conversion(path, f"{more} more values", "likewise")]
    return data, conversions


def _result(value: Any, path: str, notes: list[Conversion], depth: int) -> Any:
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, str):
        if value.isascii() or not _has_lone_surrogate(value):
            return value
        notes.append(Conversion(path, "text with lone surrogates", "\\uXXXX text in their place"))
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        notes.append(Conversion(path, f"float {value}", f"the string {str(value)!r}"))
        return str(value)
    if depth > 500:
        notes.append(Conversion(path, type(value).__name__, "its repr (nested too deep)"))
        return repr(value)
    if _is_tensor(value) or _is_ndarray(value):
        where = f" on {value.device}" if _is_tensor(value) else ""
        dtype = str(value.dtype).replace("torch.", "")
        notes.append(Conversion(path, f"{'tensor' if _is_tensor(value) else 'ndarray'} {dtype} {list(value.shape)}{where}",
                                "a nested list of its values"))
        data = value.detach().cpu().tolist() if _is_tensor(value) else value.tolist()
        return _result(data, path, notes, depth + 1) if not isinstance(data, (int, float, bool)) else _number(data, path, notes)
    if isinstance(value, Mapping):
        return {str(k): _result(v, f"{path}.{k}" if path else str(k), notes, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_result(v, f"{path}[{i}]", notes, depth + 1) for i, v in enumerate(value)]
    if isinstance(value, (set, frozenset)):
        try:
            ordered = sorted(value)
        except TypeError:
            ordered = list(value)
        return [_result(v, f"{path}[{i}]", notes, depth + 1) for i, v in enumerate(ordered)]
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        notes.append(Conversion(path, f"bytes ({len(raw)})", "base64 text"))
        return base64.b64encode(raw).decode("ascii")
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "model_dump"):
        return _result(value.model_dump(), path, notes, depth + 1)
    if hasattr(value, "item") and callable(value.item) and getattr(value, "shape", None) == ():
        return _number(value.item(), path, notes)
    notes.append(Conversion(path, type(value).__name__, "its repr"))
    return _result(repr(value), path, notes, depth + 1)


def _number(value: Any, path: str, notes: list[Conversion]) -> Any:
    return _result(value, path, notes, 0)


def dumps_json(value: Any, *, indent: int | None = None) -> str:
    """`value` (JSON data) as JSON text that any UTF-8 writer accepts: non-ASCII text as
    it is, unless a string holds a lone surrogate; then the whole text uses JSON's
    `\\uXXXX` escapes (which `json.loads` reads back to the same string)."""
    text = json.dumps(value, indent=indent, ensure_ascii=False)
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value, indent=indent, ensure_ascii=True)
    return text


def fingerprint(value: Any) -> str:
    """A stable digest of resolved inputs, tensors and arrays included (by content)."""
    h = hashlib.blake2b(digest_size=16)

    def default(obj: Any) -> Any:
        if _is_tensor(obj):
            import torch

            t = obj.detach().cpu().contiguous()
            return {"tensor": [list(t.shape), str(t.dtype), hashlib.blake2b(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"", digest_size=16).hexdigest()]}
        if hasattr(obj, "tobytes") and hasattr(obj, "shape"):
            return {"array": [list(obj.shape), str(obj.dtype), hashlib.blake2b(obj.tobytes(), digest_size=16).hexdigest()]}
        if isinstance(obj, (bytes, bytearray)):
            return {"bytes": hashlib.blake2b(bytes(obj), digest_size=16).hexdigest()}
        if isinstance(obj, (set, frozenset)):
            return sorted(map(repr, obj))
        return {"repr": repr(obj)}

    h.update(json.dumps(value, sort_keys=True, default=default).encode())
    return h.hexdigest()
