"""The one place a value becomes JSON: tensors, arrays, bytes, NaN, long texts and lists.

A value a flow produced (a torch tensor, a numpy array, bytes, a float that is NaN or
infinite, a long text, any object) is written as JSON by one encoder, `encode(value,
policy)`, under an explicit policy:

- `FULL`: every element. For answers to clients, printed outputs and batch records.
  Tensors and arrays become nested lists of their values, bytes base64 text, sets lists,
  any other object its ``repr``; each such conversion is listed (`Conversion`) so that a
  record can say how it was written.
- `SUMMARY`: what a trace keeps. A tensor or array becomes ``{"__summary__": ...}``
  (`summarize`: shape, dtype, device, min/max/mean/std, NaN/Inf counts, histogram);
  bytes are described by their length; texts over `SUMMARY_TEXT` characters and lists
  over `SUMMARY_ITEMS` items are cut, the summary saying so (``"truncated": true``, the
  full ``length``, the ``head``).
- `limit(max_values=..., max_bytes=...)`: every element while the whole value stays
  within the bounds (values: the elements of tensors and arrays, a 0 dim counted as 1
  for the nested lists it still takes, and the items of lists; bytes: the characters of
  texts and the bytes of bytes values), then
  `ValueTooLarge` (``on_limit="error"``) or, in place of the part that would pass a
  bound, a marker ``{"__omitted__": {"kind", "size", "limit"}}`` that a conversion
  lists (``on_limit="marker"``). Never a silent cut.

NaN and infinity have one JSON form, everywhere (answers of served models and of the
Open Inference Protocol, printed outputs, batch records, traces): the strings ``"NaN"``,
``"Infinity"`` and ``"-Infinity"`` (`NAN`, `INFINITY`, `NEG_INFINITY`). JSON has no number
for them; these strings are what strict parsers accept and what ``float()``, numpy and
JavaScript's ``Number()`` read back. `float_from_json` reads them back. A text holding a
lone surrogate (which no UTF-8 writer accepts) is written with it as ``\\udXXX`` text.
What `encode` gives is strict JSON data, and `dumps` writes it as text that any JSON
parser accepts, strict ones included.

`is_tensor` and `to_host` look for torch and numpy in ``sys.modules``: neither is
imported to answer about a value that cannot be one of theirs.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import math
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, NamedTuple

from jupyter_flow.errors import FlowError

__all__ = [
    "FULL",
    "HISTOGRAM_BINS",
    "INFINITY",
    "NAN",
    "NEG_INFINITY",
    "SUMMARY",
    "SUMMARY_ITEMS",
    "SUMMARY_TEXT",
    "Conversion",
    "Encoded",
    "Policy",
    "ValueTooLarge",
    "dtype_name",
    "dumps",
    "encode",
    "float_from_json",
    "float_to_json",
    "is_tensor",
    "limit",
    "summarize",
    "to_host",
]

#: The JSON form of NaN, +Inf and -Inf.
NAN = "NaN"
INFINITY = "Infinity"
NEG_INFINITY = "-Infinity"
_NON_FINITE = {NAN: math.nan, INFINITY: math.inf, NEG_INFINITY: -math.inf}

HISTOGRAM_BINS = 20
#: `SUMMARY` cuts texts longer than this many characters and lists longer than this many items
SUMMARY_TEXT = 10_000
SUMMARY_ITEMS = 1_000
_MAX_CONVERSIONS = 100  # a tensor full of NaNs: the first ones say enough
_MAX_DEPTH = 500


# -- tensors and arrays ------------------------------------------------------------------
def _torch_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")
    tensor_type = getattr(torch, "Tensor", None)
    return tensor_type is not None and isinstance(value, tensor_type)


def _numpy_array(value: Any) -> bool:
    numpy = sys.modules.get("numpy")
    array_type = getattr(numpy, "ndarray", None)
    return array_type is not None and isinstance(value, array_type)


def _numpy_scalar(value: Any) -> bool:
    numpy = sys.modules.get("numpy")
    scalar_type = getattr(numpy, "generic", None)
    return scalar_type is not None and isinstance(value, scalar_type)


def is_tensor(value: Any) -> bool:
    """Whether `value` is a torch tensor or a numpy array (neither is imported to tell)."""
    return _torch_tensor(value) or _numpy_array(value)


def dtype_name(value: Any) -> str:
    """A tensor's or array's dtype as a short name (``float32``, ``bfloat16``); "" for anything else."""
    if not is_tensor(value):
        return ""
    return str(value.dtype).removeprefix("torch.")


def to_host(value: Any) -> Any:
    """A tensor as a numpy array in host memory, detached from autograd (dense, conjugation
    resolved; a dtype numpy has no equivalent of, such as bfloat16, as float32); a numpy
    array as it is. Without numpy, a torch tensor gives a plain (nested) list."""
    if _numpy_array(value):
        return value
    if not _torch_tensor(value):
        raise TypeError(f"not a tensor or array: {type(value).__name__}")
    torch = sys.modules["torch"]
    t = value.detach()
    if t.layout != torch.strided:
        t = t.to_dense()
    t = t.cpu().resolve_conj().resolve_neg()
    if importlib.util.find_spec("numpy") is None:  # torch hands tensors to numpy only when it is installed
        return t.tolist()
    try:
        return t.numpy()
    except TypeError:  # a dtype numpy lacks (bfloat16, float8 kinds)
        return t.to(dtype=torch.complex64 if t.is_complex() else torch.float32).numpy()


def summarize(value: Any) -> dict[str, Any] | None:
    """A JSON summary of a tensor or array (shape, dtype, device, numel; for numbers and
    booleans also the NaN and Inf counts and, over the finite values, min, max, mean, std
    and a histogram of `HISTOGRAM_BINS` bins); None for anything else. Complex values are
    summarized by their magnitude."""
    if not is_tensor(value):
        return None
    import numpy as np

    tensor = _torch_tensor(value)
    summary: dict[str, Any] = {
        "kind": "tensor" if tensor else "ndarray",
        "shape": [int(d) for d in value.shape],
        "dtype": dtype_name(value),
        "device": str(value.device) if tensor else "cpu",
        "numel": int(value.numel()) if tensor else int(value.size),
    }
    if not summary["numel"]:
        return summary
    a = np.asarray(to_host(value))
    if a.dtype.kind not in "biufc":
        return summary
    f = np.abs(a).astype(np.float64) if a.dtype.kind == "c" else a.astype(np.float64)
    nans, infs = np.isnan(f), np.isinf(f)
    kept = f[~(nans | infs)]
    summary.update(nan=int(nans.sum()), inf=int(infs.sum()))
    if kept.size:
        lo, hi = float(kept.min()), float(kept.max())
        counts, _ = np.histogram(kept, bins=HISTOGRAM_BINS, range=(lo, hi if hi > lo else lo + 1))
        summary.update(
            min=lo,
            max=hi,
            mean=float(kept.mean()),
            std=float(kept.std(ddof=1)) if kept.size > 1 else 0.0,
            histogram={"bins": HISTOGRAM_BINS, "range": [lo, hi], "counts": [int(c) for c in counts]},
        )
    return summary


# -- NaN and infinity --------------------------------------------------------------------
def float_to_json(value: float) -> float | str:
    """A float as JSON: itself when finite, else ``"NaN"``, ``"Infinity"`` or ``"-Infinity"``."""
    if math.isfinite(value):
        return value
    return NAN if math.isnan(value) else INFINITY if value > 0 else NEG_INFINITY


def float_from_json(value: Any) -> float | None:
    """The float a JSON value stands for: a number, or one of ``"NaN"``, ``"Infinity"``,
    ``"-Infinity"``; None for anything else (booleans included)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        return _NON_FINITE.get(value)
    return None


# -- the encoder -------------------------------------------------------------------------
@dataclass(frozen=True)
class Policy:
    """How much of a value `encode` writes: ``full``, ``summary`` or ``limit`` (see the module docstring)."""

    mode: Literal["full", "summary", "limit"]
    max_values: int | None = None
    max_bytes: int | None = None
    on_limit: Literal["error", "marker"] = "error"


FULL = Policy("full")
SUMMARY = Policy("summary")


def limit(max_values: int | None = None, max_bytes: int | None = None, *, on_limit: Literal["error", "marker"] = "error") -> Policy:
    """Every element up to `max_values` values and `max_bytes` bytes in all, then an error
    (`ValueTooLarge`) or a marker in place of the part that would pass the bound."""
    return Policy("limit", max_values, max_bytes, on_limit)


@dataclass(frozen=True)
class Conversion:
    """A part of a value JSON cannot hold as it is, and what it was written as.

    `path` locates it (``summary.scores[3]``), `kind` says what it was (``tensor float32
    [2, 3] on cpu``, ``bytes (12)``, ``float nan``, ``text with lone surrogates``),
    `written_as` how it is written (``a nested list of its values``, ``base64 text``, ...)."""

    path: str
    kind: str
    written_as: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "kind": self.kind, "written_as": self.written_as}


class Encoded(NamedTuple):
    """What `encode` gives: JSON `data`, and the `conversions` made to get it."""

    data: Any
    conversions: list[Conversion]


class ValueTooLarge(FlowError):
    """A value is larger than a `limit` policy allows: `path` says which part, `size` and
    `limit` how large it is and the bound (`unit`: values or bytes)."""

    def __init__(self, path: str, kind: str, size: int, bound: int, unit: str) -> None:
        self.path, self.kind, self.size, self.limit, self.unit = path, kind, size, bound, unit
        super().__init__(f"{path or 'the value'} ({kind}) brings it to {size:,} {unit}, over the limit of "
                         f"{bound:,} {unit}: make it smaller (fewer or shorter values, or a summary of them)")


def encode(value: Any, policy: Policy = FULL, *, path: str = "") -> Encoded:
    """`value` as strict JSON data under `policy`, and the conversions made (at most 100
    listed, then one saying how many more). `path` names the value in the conversions
    (``outputs``)."""
    walk = _Walk(policy, _Notes())
    data = walk.value(value, path, 0)
    notes = walk.notes
    if notes.more:
        return Encoded(data, [*notes, Conversion(path, f"{notes.more} more values", "likewise")])
    return Encoded(data, list(notes))


def dumps(value: Any, *, indent: int | None = None) -> str:
    """JSON text of `value` that strict parsers and any UTF-8 writer accept: JSON data is
    written as it is (non-ASCII text included); anything else in it (a NaN, a tensor, a
    string with a lone surrogate) is first encoded with `FULL`."""
    try:
        text = json.dumps(value, indent=indent, ensure_ascii=False, allow_nan=False)
    except (ValueError, TypeError):
        return json.dumps(encode(value).data, indent=indent, ensure_ascii=False, allow_nan=False)
    if text.isascii() or not _has_lone_surrogate(text):
        return text
    return json.dumps(encode(value).data, indent=indent, ensure_ascii=False, allow_nan=False)


def _has_lone_surrogate(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


_SCALARS = (int, bool, type(None))


class _Notes(list[Conversion]):
    """The conversions of one encoding: the first `_MAX_CONVERSIONS`, then only a count."""

    more = 0

    def add(self, conversion: Conversion) -> None:
        if len(self) < _MAX_CONVERSIONS:
            self.append(conversion)
        else:
            self.more += 1


class _Walk:
    """One encoding: the policy, the conversions noted and, for `limit`, what was spent."""

    def __init__(self, policy: Policy, notes: _Notes) -> None:
        self.policy = policy
        self.summary = policy.mode == "summary"
        self.notes = notes
        self.values = 0
        self.bytes = 0

    def over(self, path: str, kind: str, values: int = 0, size: int = 0) -> dict[str, Any] | None:
        """Under `limit`: None when `values` and `size` more stay within the bounds (they are
        then counted), else the marker to write in place of the part (or `ValueTooLarge`)."""
        policy = self.policy
        if policy.mode != "limit":
            return None
        for spent, more, bound, unit in ((self.values, values, policy.max_values, "values"),
                                         (self.bytes, size, policy.max_bytes, "bytes")):
            if bound is not None and more and spent + more > bound:
                if policy.on_limit == "error":
                    raise ValueTooLarge(path, kind, spent + more, bound, unit)
                self.notes.add(Conversion(path, kind, f"omitted: over the limit of {bound:,} {unit}"))
                return {"__omitted__": {"kind": kind, "size": more, "unit": unit, "limit": bound}}
        self.values += values
        self.bytes += size
        return None

    def value(self, value: Any, path: str, depth: int) -> Any:
        if isinstance(value, _SCALARS):
            return value
        if isinstance(value, str):
            return self.text(value, path)
        if isinstance(value, float):
            return self.number(value, path)
        if depth > _MAX_DEPTH:
            self.notes.add(Conversion(path, type(value).__name__, "its repr (nested too deep)"))
            return self.text(repr(value), path)
        if is_tensor(value):
            return self.tensor(value, path)
        if _numpy_scalar(value):
            return self.value(value.item(), path, depth + 1)
        if isinstance(value, Mapping):
            return {str(k): self.value(v, f"{path}.{k}" if path else str(k), depth + 1) for k, v in value.items()}
        if isinstance(value, (list, tuple, set, frozenset)):
            return self.items(value, path, depth)
        if isinstance(value, (bytes, bytearray, memoryview)):
            raw = bytes(value)
            if self.summary:
                return {"__summary__": {"kind": "bytes", "length": len(raw)}}
            marker = self.over(path, f"bytes ({len(raw):,})", size=len(raw))
            if marker is not None:
                return marker
            self.notes.add(Conversion(path, f"bytes ({len(raw)})", "base64 text"))
            return base64.b64encode(raw).decode("ascii")
        if isinstance(value, Path):
            return self.text(str(value), path)
        if hasattr(value, "model_dump"):  # a pydantic model
            return self.value(value.model_dump(), path, depth + 1)
        text = repr(value)
        if self.summary:
            if len(text) > SUMMARY_TEXT:
                return {"__repr__": text[:SUMMARY_TEXT], "__summary__": {"kind": "repr", "length": len(text), "truncated": True}}
            return {"__repr__": self.text(text, path)}
        self.notes.add(Conversion(path, type(value).__name__, "its repr"))
        return self.text(text, path)

    def number(self, value: float, path: str) -> float | str:
        if math.isfinite(value):
            return value
        written = float_to_json(value)
        self.notes.add(Conversion(path, f"float {value}", f"the string {written!r}"))
        return written

    def text(self, value: str, path: str) -> Any:
        if self.summary and len(value) > SUMMARY_TEXT:
            head = self.text(value[:SUMMARY_TEXT], path)
            return {"__summary__": {"kind": "text", "length": len(value), "truncated": True, "head": head}}
        marker = self.over(path, f"a text of {len(value):,} characters", size=len(value))
        if marker is not None:
            return marker
        if value.isascii() or not _has_lone_surrogate(value):
            return value
        self.notes.add(Conversion(path, "text with lone surrogates", "\\uXXXX text in their place"))
        return value.encode("utf-8", "backslashreplace").decode("utf-8")

    def items(self, value: Any, path: str, depth: int) -> Any:
        if isinstance(value, (set, frozenset)):
            try:
                items = sorted(value)
            except TypeError:
                items = list(value)
        else:
            items = list(value)
        if self.summary and len(items) > SUMMARY_ITEMS:
            head = [self.value(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(items[:SUMMARY_ITEMS])]
            return {"__summary__": {"kind": "list", "length": len(items), "truncated": True, "head": head}}
        chars = _plain_chars(items, self.summary)
        if chars is not None:  # JSON as they are: only the limit's accounts to keep
            marker = self.over(path, f"a list of {len(items):,} items", values=len(items), size=chars)
            return items if marker is None else marker
        marker = self.over(path, f"a list of {len(items):,} items", values=len(items))
        if marker is not None:
            return marker
        return [self.value(v, f"{path}[{i}]", depth + 1) for i, v in enumerate(items)]

    def tensor(self, value: Any, path: str) -> Any:
        if self.summary:
            return {"__summary__": summarize(value)}
        torch = _torch_tensor(value)
        shape = [int(d) for d in value.shape]
        kind = f"{'tensor' if torch else 'ndarray'} {dtype_name(value)} {shape}" + (f" on {value.device}" if torch else "")
        # a 0 dim counts as 1: [1000000, 1000000, 0] holds no value but is a million lists of a million lists
        marker = self.over(path, kind, values=math.prod(max(d, 1) for d in shape))
        if marker is not None:
            return marker
        self.notes.add(Conversion(path, kind, "a nested list of its values"))
        host = to_host(value)
        if not _numpy_array(host):
            return _Walk(FULL, self.notes).value(host, path, 0)  # no numpy: plain lists from torch
        data = host.tolist()
        if host.dtype.kind in "biu" or (host.dtype.kind == "f" and bool(sys.modules["numpy"].isfinite(host).all())):
            return data  # JSON as it is
        # NaN, Inf, text or objects inside (already counted with the tensor)
        return _Walk(FULL, self.notes).value(data, path, 0)


def _plain_chars(items: list[Any], summary: bool) -> int | None:
    """The characters of text among `items` when every item is JSON as it is (None,
    booleans, integers, finite floats, ASCII text not too long for a summary); else None."""
    chars = 0
    for v in items:
        t = type(v)
        if t is float:
            if v - v != 0.0:  # NaN or infinite
                return None
        elif t is str:
            if not v.isascii() or (summary and len(v) > SUMMARY_TEXT):
                return None
            chars += len(v)
        elif t is not int and t is not bool and v is not None:
            return None
    return chars
