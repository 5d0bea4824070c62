"""The Open Inference Protocol (KServe V2 / Triton REST): tensors both ways.

Tensors travel as ``{"name", "datatype", "shape", "data"}`` with ``data`` flat in row-major
order (nested lists are read too). ``BYTES`` carries text; numbers use the numeric
datatypes below. The binary tensor extension is read on requests (what `tritonclient`
sends by default); answers are JSON, which every client reads.

This module is the one codec: `jupyter-flow serve model` answers with it
(`jupyter_flow.serve.v2`), and the ``inference`` node kind builds its requests and reads answers with
it (`encode`, `decode`).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["DATATYPES", "ProtocolError", "Tensor", "decode", "encode", "json_text", "to_torch"]

#: Datatypes of the protocol, and the struct code of each in the binary extension.
DATATYPES: dict[str, str] = {
    "BOOL": "?", "UINT8": "B", "UINT16": "H", "UINT32": "I", "UINT64": "Q",
    "INT8": "b", "INT16": "h", "INT32": "i", "INT64": "q",
    "FP16": "e", "FP32": "f", "FP64": "d", "BF16": "", "BYTES": "",
}
_FLOATS = {"FP16", "FP32", "FP64", "BF16"}
_INTS = {"UINT8", "UINT16", "UINT32", "UINT64", "INT8", "INT16", "INT32", "INT64"}
#: torch / numpy dtype names to datatypes
_DTYPE_NAMES = {
    "bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
    "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
    "float16": "FP16", "half": "FP16", "float32": "FP32", "float": "FP32", "float64": "FP64", "double": "FP64",
    "bfloat16": "BF16",
}
_TORCH_DTYPES = {"BOOL": "bool", "UINT8": "uint8", "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
                 "FP16": "float16", "BF16": "bfloat16", "FP32": "float32", "FP64": "float64",
                 "UINT16": "int32", "UINT32": "int64", "UINT64": "int64"}


class ProtocolError(ValueError):
    """A tensor that does not fit the protocol (wrong shape for its data, unknown datatype)."""


@dataclass
class Tensor:
    """One tensor of the protocol: `data` flat, in row-major order."""

    name: str
    datatype: str
    shape: list[int]
    data: list[Any]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape, "data": self.data}

    def nested(self) -> Any:
        """The data as nested lists of `shape` (a shape of one element or none gives a list of one)."""
        return _reshape(self.data, self.shape)


# -- values to tensors --------------------------------------------------------------------
def encode(name: str, value: Any, *, datatype: str | None = None, shape: Sequence[int] | None = None) -> Tensor:
    """A tensor from a Python value: a torch tensor or numpy array (its dtype and shape), a
    string (BYTES), a number, or (nested) lists of them. `datatype` and `shape` override
    what is inferred; a shape may hold one -1, worked out from the data."""
    if datatype is not None and datatype not in DATATYPES:
        raise ProtocolError(f"unknown datatype {datatype!r} (known: {', '.join(DATATYPES)})")
    inferred, found_shape, flat = _inspect(value)
    dt = datatype or inferred
    if shape is not None:
        want = list(shape)
        if want.count(-1) > 1:
            raise ProtocolError(f"shape {want} has more than one -1")
        if -1 in want:
            known = math.prod(d for d in want if d != -1)
            if known == 0 or len(flat) % known:
                raise ProtocolError(f"shape {want} does not fit {len(flat)} values")
            want[want.index(-1)] = len(flat) // known
        if math.prod(want) != len(flat):
            raise ProtocolError(f"shape {list(shape)} holds {math.prod(want)} values but the data has {len(flat)}")
        found_shape = want
    return Tensor(name, dt, found_shape, _cast(flat, dt))


def _inspect(value: Any) -> tuple[str, list[int], list[Any]]:
    """(datatype, shape, flat data) of a value."""
    if hasattr(value, "shape") and hasattr(value, "dtype") and hasattr(value, "tolist"):
        data = value.detach().cpu() if hasattr(value, "detach") else value
        dtype = str(getattr(value, "dtype", "")).rpartition(".")[2]
        dt = _DTYPE_NAMES.get(dtype)
        if dt is None:
            if dtype.startswith(("<U", "<S", "|S", "object")) or dtype in ("str", "bytes"):
                dt = "BYTES"
            else:
                raise ProtocolError(f"no datatype of the protocol for dtype {dtype}")
        shape = [int(d) for d in value.shape]
        if dt == "BF16" and hasattr(data, "float"):
            data = data.float()
        flat = data.reshape(-1).tolist()
        return dt, shape, [_text(v) for v in flat] if dt == "BYTES" else flat
    if isinstance(value, (str, bytes)):
        return "BYTES", [1], [_text(value)]
    if isinstance(value, bool):
        return "BOOL", [1], [value]
    if isinstance(value, int):
        return "INT64", [1], [value]
    if isinstance(value, float):
        return "FP32", [1], [value]
    if isinstance(value, (list, tuple)):
        nested, flat = _nested_shape(value)
        if nested is not None:
            return _leaf_type(flat), nested, flat
    # anything else (mappings, ragged lists) goes as JSON text
    return "BYTES", [1], [json_text(value)]


def _nested_shape(value: Sequence[Any]) -> tuple[list[int] | None, list[Any]]:
    """The shape and flat data of rectangular nested lists of numbers, booleans or strings;
    (None, []) for anything else."""
    if not value:
        return [0], []
    if all(isinstance(v, (list, tuple)) for v in value):
        parts = [_nested_shape(v) for v in value]
        first = parts[0][0]
        if first is None or any(p[0] != first for p in parts):
            return None, []
        return [len(value), *first], [x for p in parts for x in p[1]]
    if all(isinstance(v, (str, bytes)) for v in value) or all(isinstance(v, (int, float)) for v in value):
        return [len(value)], [_text(v) if isinstance(v, (str, bytes)) else v for v in value]
    if all(hasattr(v, "tolist") and hasattr(v, "shape") for v in value):
        shape, flat = _nested_shape([v.tolist() for v in value])
        return shape, flat
    return None, []


def _leaf_type(flat: list[Any]) -> str:
    if not flat:
        return "FP32"
    if all(isinstance(v, str) for v in flat):
        return "BYTES"
    if all(isinstance(v, bool) for v in flat):
        return "BOOL"
    if all(isinstance(v, int) and not isinstance(v, bool) for v in flat):
        return "INT64"
    if all(isinstance(v, (int, float)) for v in flat):
        return "FP32"
    raise ProtocolError("a tensor's values must all be numbers, all booleans or all text")


def _cast(flat: list[Any], datatype: str) -> list[Any]:
    try:
        if datatype == "BYTES":
            return [v if isinstance(v, str) else _text(v) if isinstance(v, bytes) else json_text(v) for v in flat]
        if datatype == "BOOL":
            return [bool(v) for v in flat]
        if datatype in _INTS:
            return [int(v) for v in flat]
        return [float(v) for v in flat]
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"data does not fit datatype {datatype}: {exc}") from None


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def json_text(value: Any) -> str:
    """JSON text of a value that is not a tensor (a mapping, ragged lists), tensors inside as lists."""

    def fallback(obj: Any) -> Any:
        if hasattr(obj, "tolist"):
            data = obj.detach().cpu() if hasattr(obj, "detach") else obj
            return data.tolist()
        return str(obj)

    return json.dumps(value, default=fallback)


def _reshape(flat: list[Any], shape: Sequence[int]) -> Any:
    if len(shape) <= 1:
        return list(flat)
    step = math.prod(shape[1:])
    return [_reshape(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


# -- tensors to values --------------------------------------------------------------------
def decode(entry: Any, *, where: str, binary: bytes | None = None, offset: int = 0) -> tuple[Tensor, int]:
    """A tensor from its JSON form (and, for the binary extension, the bytes after the JSON
    header starting at `offset`); returns it and the offset past its binary data."""
    if not isinstance(entry, Mapping):
        raise ProtocolError(f"{where}: a tensor is an object with name, datatype, shape and data")
    name, datatype, shape = entry.get("name"), entry.get("datatype"), entry.get("shape")
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"{where}: a tensor needs a `name`")
    where = f"{where} '{name}'"
    if datatype not in DATATYPES:
        raise ProtocolError(f"{where}: unknown datatype {datatype!r} (known: {', '.join(DATATYPES)})")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ProtocolError(f"{where}: `shape` must be a list of sizes, got {shape!r}")
    params = entry.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, Mapping) else None
    if size is not None:
        if binary is None or offset + int(size) > len(binary):
            raise ProtocolError(f"{where}: binary_data_size {size} runs past the end of the request")
        flat = _from_binary(binary[offset:offset + int(size)], datatype, where)
        offset += int(size)
    else:
        if "data" not in entry:
            raise ProtocolError(f"{where}: no `data`")
        data = entry["data"]
        flat = _flatten(data if isinstance(data, list) else [data])
    if len(flat) != math.prod(shape):
        raise ProtocolError(f"{where}: shape {shape} holds {math.prod(shape)} values but `data` has {len(flat)}")
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in flat):
            raise ProtocolError(f"{where}: BYTES data must be strings")
    elif not all(isinstance(v, (int, float)) for v in flat):
        raise ProtocolError(f"{where}: {datatype} data must be numbers")
    return Tensor(name, datatype, list(shape), _cast(flat, datatype)), offset


def _flatten(data: list[Any]) -> list[Any]:
    out: list[Any] = []
    for v in data:
        if isinstance(v, list):
            out.extend(_flatten(v))
        else:
            out.append(v)
    return out


def _from_binary(raw: bytes, datatype: str, where: str) -> list[Any]:
    if datatype == "BYTES":
        items, i = [], 0
        while i < len(raw):
            if i + 4 > len(raw):
                raise ProtocolError(f"{where}: truncated BYTES element")
            (n,) = struct.unpack_from("<I", raw, i)
            items.append(raw[i + 4:i + 4 + n].decode("utf-8", errors="replace"))
            i += 4 + n
        return items
    if datatype == "BF16":
        halves = struct.unpack(f"<{len(raw) // 2}H", raw[: len(raw) // 2 * 2])
        return [struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in halves]
    code = DATATYPES[datatype]
    width = struct.calcsize(code)
    if len(raw) % width:
        raise ProtocolError(f"{where}: {len(raw)} bytes is not a whole number of {datatype} values")
    return list(struct.unpack(f"<{len(raw) // width}{code}", raw))


def to_torch(tensor: Tensor) -> Any:
    """A tensor's data as a torch tensor of its dtype and shape (BYTES stays nested lists)."""
    if tensor.datatype == "BYTES":
        return tensor.nested()
    from jupyter_flow.models import import_torch

    torch = import_torch("inference nodes with `tensors: torch`")
    return torch.tensor(tensor.data, dtype=getattr(torch, _TORCH_DTYPES[tensor.datatype])).reshape(tensor.shape)
