"""The Open Inference Protocol (KServe V2 / Triton REST): tensors both ways.

Tensors travel as ``{"name", "datatype", "shape", "data"}`` with ``data`` flat in row-major
order (nested lists are read too). ``BYTES`` carries text; numbers use the numeric
datatypes below. The binary tensor extension is read on requests (what `tritonclient`
sends by default); answers are JSON, which every client reads.

This module is the one codec: `jupyter-flow serve model` answers with it
(`jupyter_flow.serve.v2`), and the ``inference`` node kind builds its requests and reads answers with
it (`encode`, `decode`).

NaN and infinite values of the float datatypes travel as the strings ``"NaN"``,
``"Infinity"`` and ``"-Infinity"`` (JSON has no number for them; see `jupyter_flow.values`);
`decode` reads them back as floats.

Bounds, for requests and answers alike (a tensor's nested lists are built from its shape,
so a shape alone must not be able to ask for more than a tensor may hold):

- a shape has at most `MAX_DIMS` dims;
- every dim, and the product of the dims, is at most `MAX_VALUES`, a 0 dim counted as 1
  (``[1000000, 1000000, 0]`` holds no value but would be a million lists of a million
  empty lists).

`decode` reads strictly: integer datatypes take JSON integers within their range, ``BOOL``
takes ``true``/``false``, float datatypes take numbers their type can hold (or the three
strings above), ``BYTES`` takes strings; ``binary_data_size`` is a byte count that fits the
binary part, and ``BF16`` and ``BYTES`` binary data must be whole values. Anything else is a
`ProtocolError` that names the tensor and what is wrong; nothing is cut or coerced.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from jupyter_flow import values
from jupyter_flow.models import import_torch
from jupyter_flow.values import dtype_name, float_from_json, is_tensor, to_host

__all__ = ["DATATYPES", "MAX_DIMS", "MAX_VALUES", "ProtocolError", "Tensor", "cast", "check_shape", "decode", "encode", "json_text",
           "to_torch"]

#: The most dims a tensor's shape may have.
MAX_DIMS = 32
#: The most a dim, or the product of a shape's dims (a 0 dim counted as 1), may be.
MAX_VALUES = 2**26

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
#: the values each integer datatype holds
_INT_RANGES = {"UINT8": (0, 2**8 - 1), "UINT16": (0, 2**16 - 1), "UINT32": (0, 2**32 - 1), "UINT64": (0, 2**64 - 1),
               "INT8": (-(2**7), 2**7 - 1), "INT16": (-(2**15), 2**15 - 1), "INT32": (-(2**31), 2**31 - 1),
               "INT64": (-(2**63), 2**63 - 1)}
#: the smallest magnitude each float datatype rounds to infinity
_FLOAT_OVERFLOW = {"FP16": 2.0**16 - 2.0**4, "BF16": 2.0**128 - 2.0**119, "FP32": 2.0**128 - 2.0**103}
_TORCH_DTYPES = {"BOOL": "bool", "UINT8": "uint8", "INT8": "int8", "INT16": "int16", "INT32": "int32", "INT64": "int64",
                 "FP16": "float16", "BF16": "bfloat16", "FP32": "float32", "FP64": "float64",
                 "UINT16": "int32", "UINT32": "int64", "UINT64": "int64"}


class ProtocolError(ValueError):
    """A tensor that does not fit the protocol (wrong shape for its data, unknown datatype)."""


def check_shape(shape: Any, where: str) -> list[int]:
    """`shape` as a list of sizes within `MAX_DIMS` and `MAX_VALUES`, or a `ProtocolError`
    that names `where` and the bound."""
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise ProtocolError(f"{where}: `shape` must be a list of sizes (integers, 0 or more), got {_short(shape)}")
    if len(shape) > MAX_DIMS:
        raise ProtocolError(f"{where}: shape has {len(shape)} dims, more than the limit of {MAX_DIMS}")
    spanned = 1
    for i, d in enumerate(shape):
        spanned *= max(d, 1)
        if spanned > MAX_VALUES:
            which = f"dim {i} ({d:,})" if d > MAX_VALUES else f"the product of dims 0..{i}"
            raise ProtocolError(f"{where}: shape {_short(shape)}: {which} is over the limit of {MAX_VALUES:,} "
                                "values (a 0 dim counted as 1)")
    return list(shape)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."


@dataclass
class Tensor:
    """One tensor of the protocol: `data` flat, in row-major order. Its shape is checked
    against the bounds (`check_shape`) when it is made."""

    name: str
    datatype: str
    shape: list[int]
    data: list[Any]

    def __post_init__(self) -> None:
        self.shape = check_shape(self.shape, f"tensor '{self.name}'")

    def to_json(self) -> dict[str, Any]:
        """The tensor as JSON data (NaN and infinity as the strings of `jupyter_flow.values`)."""
        return {"name": self.name, "datatype": self.datatype, "shape": self.shape, "data": values.encode(self.data).data}

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
        if not all(isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in want):
            raise ProtocolError(f"shape {want} must be a list of sizes (one may be -1)")
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
    return Tensor(name, dt, found_shape, _checked(flat, dt, f"tensor '{name}'", strict=False))


def cast(tensor: Tensor, datatype: str) -> Tensor:
    """`tensor` as `datatype`, checked as `encode` checks a value sent with a datatype chosen
    for it (whole floats pass as integers, values past the datatype's range are refused)."""
    if datatype == tensor.datatype:
        return tensor
    if datatype not in DATATYPES:
        raise ProtocolError(f"unknown datatype {datatype!r} (known: {', '.join(DATATYPES)})")
    if tensor.datatype == "BYTES" and datatype != "BYTES":
        raise ProtocolError(f"tensor '{tensor.name}' is text (BYTES), not {datatype}")
    return Tensor(tensor.name, datatype, tensor.shape, _checked(tensor.data, datatype, f"tensor '{tensor.name}'", strict=False))


def _inspect(value: Any) -> tuple[str, list[int], list[Any]]:
    """(datatype, shape, flat data) of a value."""
    if is_tensor(value):
        dtype = dtype_name(value)
        dt = _DTYPE_NAMES.get(dtype)
        if dt is None:
            if dtype.startswith(("<U", ">U", "|U", "<S", "|S", "object")):
                dt = "BYTES"
            else:
                raise ProtocolError(f"no datatype of the protocol for dtype {dtype}")
        shape = [int(d) for d in value.shape]
        host = to_host(value)
        flat = host.reshape(-1).tolist() if hasattr(host, "reshape") else _flatten(host if isinstance(host, list) else [host])
        return dt, shape, [_text(v) if isinstance(v, (str, bytes)) else v for v in flat] if dt == "BYTES" else flat
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
    if all(is_tensor(v) for v in value):  # flat, never through nested lists its shape alone may ask for
        arrays = [_inspect(v) for v in value]
        if any(a[1] != arrays[0][1] for a in arrays):
            return None, []
        return [len(value), *arrays[0][1]], [x for a in arrays for x in a[2]]
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


def _checked(flat: list[Any], datatype: str, where: str, *, strict: bool) -> list[Any]:
    """`flat` as values of `datatype`, or a `ProtocolError` naming the first that does not
    fit. `strict` (what a peer sent): JSON types must match the datatype. Otherwise (a
    Python value sent with a datatype chosen for it): whole floats pass as integers, 0 and
    1 as booleans, and anything but text and bytes goes to BYTES as JSON text."""
    if datatype == "BYTES":
        if strict:
            bad = next((i for i, v in enumerate(flat) if not isinstance(v, str)), None)
            if bad is not None:
                raise ProtocolError(f"{where}: BYTES data must be strings; value {bad} is {_short(flat[bad])}")
            return flat
        return [v if isinstance(v, str) else _text(v) if isinstance(v, bytes) else json_text(v) for v in flat]
    if datatype == "BOOL":
        out_bool: list[Any] = []
        for i, v in enumerate(flat):
            if not isinstance(v, bool) and (strict or v not in (0, 1)):
                raise ProtocolError(f"{where}: BOOL data must be true or false; value {i} is {_short(v)}")
            out_bool.append(bool(v))
        return out_bool
    if datatype in _INTS:
        lo, hi = _INT_RANGES[datatype]
        out_int: list[Any] = []
        for i, v in enumerate(flat):
            if isinstance(v, bool) or not isinstance(v, int):
                if strict or not isinstance(v, float) or not v.is_integer():
                    raise ProtocolError(f"{where}: {datatype} data must be integers; value {i} is {_short(v)}")
                v = int(v)
            if not lo <= v <= hi:
                raise ProtocolError(f"{where}: {datatype} holds {lo}..{hi}; value {i} is {v}")
            out_int.append(v)
        return out_int
    top = _FLOAT_OVERFLOW.get(datatype, math.inf)
    out: list[Any] = []
    for i, v in enumerate(flat):
        try:
            f = float_from_json(v)
        except OverflowError:  # an integer past any float
            raise ProtocolError(f"{where}: value {i} is too large for {datatype}") from None
        if f is None:
            raise ProtocolError(f"{where}: {datatype} data must be numbers (or \"NaN\", \"Infinity\", \"-Infinity\"); "
                                f"value {i} is {_short(v)}")
        if math.isfinite(f) and abs(f) >= top:
            raise ProtocolError(f"{where}: value {i} ({_short(v)}) is too large for {datatype}")
        out.append(f)
    return out


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def json_text(value: Any) -> str:
    """JSON text of a value that is not a tensor (a mapping, ragged lists), tensors inside as lists."""
    return values.dumps(value)


def _reshape(flat: list[Any], shape: Sequence[int]) -> Any:
    if len(shape) <= 1:
        return list(flat)
    step = math.prod(shape[1:])
    return [_reshape(flat[i * step:(i + 1) * step], shape[1:]) for i in range(shape[0])]


# -- tensors to values --------------------------------------------------------------------
def decode(entry: Any, *, where: str, binary: bytes | None = None, offset: int = 0) -> tuple[Tensor, int]:
    """A tensor from its JSON form (and, for the binary extension, the bytes after the JSON
    header starting at `offset`); returns it and the offset past its binary data. Read
    strictly (see the module docstring): what does not fit is a `ProtocolError`."""
    if not isinstance(entry, Mapping):
        raise ProtocolError(f"{where}: a tensor is an object with name, datatype, shape and data")
    name, datatype = entry.get("name"), entry.get("datatype")
    if not isinstance(name, str) or not name:
        raise ProtocolError(f"{where}: a tensor needs a `name`")
    where = f"{where} '{name}'"
    if datatype not in DATATYPES:
        raise ProtocolError(f"{where}: unknown datatype {_short(datatype)} (known: {', '.join(DATATYPES)})")
    shape = check_shape(entry.get("shape"), where)
    params = entry.get("parameters")
    if params is not None and not isinstance(params, Mapping):
        raise ProtocolError(f"{where}: `parameters` must be an object, got {_short(params)}")
    size = params.get("binary_data_size") if params is not None else None
    if size is not None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise ProtocolError(f"{where}: `binary_data_size` must be a byte count (an integer, 0 or more), got {_short(size)}")
        if binary is None:
            raise ProtocolError(f"{where}: `binary_data_size` is given but the body has no binary part "
                                "(set the Inference-Header-Content-Length header)")
        if offset + size > len(binary):
            raise ProtocolError(f"{where}: binary_data_size {size} runs past the end of the request "
                                f"({len(binary) - offset} bytes left)")
        flat = _from_binary(binary[offset:offset + size], datatype, where)
        offset += size
    else:
        if "data" not in entry:
            raise ProtocolError(f"{where}: no `data`")
        data = entry["data"]
        flat = _flatten(data if isinstance(data, list) else [data])
    if len(flat) != math.prod(shape):
        raise ProtocolError(f"{where}: shape {shape} holds {math.prod(shape)} values but `data` has {len(flat)}")
    if size is None:
        flat = _checked(flat, datatype, where, strict=True)
    return Tensor(name, datatype, shape, flat), offset


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
        items: list[Any] = []
        i = 0
        while i < len(raw):
            if i + 4 > len(raw):
                raise ProtocolError(f"{where}: truncated BYTES element")
            (n,) = struct.unpack_from("<I", raw, i)
            if i + 4 + n > len(raw):
                raise ProtocolError(f"{where}: BYTES element {len(items)} says {n} bytes but {len(raw) - i - 4} are left")
            items.append(raw[i + 4:i + 4 + n].decode("utf-8", errors="replace"))
            i += 4 + n
        return items
    if datatype == "BF16":
        if len(raw) % 2:
            raise ProtocolError(f"{where}: {len(raw)} bytes is not a whole number of BF16 values (2 bytes each)")
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
    torch = import_torch("inference nodes with `tensors: torch`")
    return torch.tensor(tensor.data, dtype=getattr(torch, _TORCH_DTYPES[tensor.datatype])).reshape(tensor.shape)
