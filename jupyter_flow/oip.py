"""The Open Inference Protocol (KServe V2 / Triton REST): tensors both ways, and the routes
of a served model.

Tensors travel as ``{"name", "datatype", "shape", "data"}`` with ``data`` flat in row-major
order (nested lists are read too). ``BYTES`` carries text; numbers use the numeric
datatypes below. The binary tensor extension is read on requests (what `tritonclient`
sends by default); answers are JSON, which every client reads.

This module is the one codec: `jupyter-flow serve model` answers with it
(`routes(app)`), and the ``inference`` node kind builds its requests and reads answers with
it (`encode`, `decode`).

============================================  ======  =========================================
route                                         method  answer
============================================  ======  =========================================
``/v2/health/live``, ``/v2/health/ready``     GET     ``{"live": true}``, ``{"ready": true}``
``/v2``                                       GET     server name, version, extensions
``/v2/models/{name}[/versions/{v}]``          GET     inputs and outputs (names, datatypes, shapes)
``/v2/models/{name}[/versions/{v}]/ready``    GET     ``{"name", "ready"}``
``/v2/models/{name}[/versions/{v}]/infer``    POST    ``{"model_name", "id", "outputs": [...]}``
============================================  ======  =========================================

Errors are ``{"error": "..."}`` with 400 (a bad request), 404 (another model), 500 (the
model failed) or 504 (a timeout).
"""

from __future__ import annotations

import json
import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jupyter_flow.flow import Flow
    from jupyter_flow.trace import RunResult

__all__ = ["DATATYPES", "ProtocolError", "Tensor", "decode", "encode", "routes", "to_flow_value"]

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
    return "BYTES", [1], [_json_text(value)]


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
            return [v if isinstance(v, str) else _text(v) if isinstance(v, bytes) else _json_text(v) for v in flat]
        if datatype == "BOOL":
            return [bool(v) for v in flat]
        if datatype in _INTS:
            return [int(v) for v in flat]
        return [float(v) for v in flat]
    except (TypeError, ValueError) as exc:
        raise ProtocolError(f"data does not fit datatype {datatype}: {exc}") from None


def _text(value: str | bytes) -> str:
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else value


def _json_text(value: Any) -> str:
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


# -- the served model's side --------------------------------------------------------------
_TEXT_TYPES = {"string", "text", "file"}
_SCALAR_TYPES = {"number": "FP64", "integer": "INT64", "boolean": "BOOL"}


def input_metadata(flow: Flow) -> list[dict[str, Any]]:
    """The model's inputs, from the service's declared inputs."""
    out = []
    for name, spec in flow.spec.inputs.items():
        if spec.type in _TEXT_TYPES:
            out.append({"name": name, "datatype": "BYTES", "shape": [-1]})
        elif spec.type in _SCALAR_TYPES:
            out.append({"name": name, "datatype": _SCALAR_TYPES[spec.type], "shape": [-1]})
        else:  # a tensor of any numeric datatype, passed on as nested lists
            out.append({"name": name, "datatype": "FP32", "shape": [-1]})
    return out


def to_flow_value(tensor: Tensor, input_type: str) -> Any:
    """A request tensor as the value of a flow input of type `input_type`: text and numbers
    as one value when the tensor has one element, else a list; tensors as nested lists."""
    one = math.prod(tensor.shape) == 1
    if input_type in _TEXT_TYPES or input_type in _SCALAR_TYPES:
        if input_type in _TEXT_TYPES and tensor.datatype != "BYTES":
            raise ProtocolError(f"input '{tensor.name}' is text: send it as BYTES, not {tensor.datatype}")
        if input_type in _SCALAR_TYPES and tensor.datatype == "BYTES":
            raise ProtocolError(f"input '{tensor.name}' is a {input_type}: send a numeric datatype, not BYTES")
        return tensor.data[0] if one else list(tensor.data)
    if tensor.datatype == "BYTES" and one:
        return tensor.data[0]
    return tensor.nested() if tensor.shape else tensor.data[0]


def output_tensors(answer: Any) -> list[Tensor]:
    """A model's answer as output tensors: a mapping gives one tensor per key; a list of
    mappings (one per item of a list input) stacks each key's values along a first dim."""
    if isinstance(answer, list) and answer and all(isinstance(a, Mapping) for a in answer):
        names = list(answer[0])
        return [_stack(name, [a.get(name) for a in answer]) for name in names]
    if isinstance(answer, Mapping):
        return [encode(str(k), v) for k, v in answer.items()]
    return [encode("output", answer)]


def _stack(name: str, values: list[Any]) -> Tensor:
    parts = [encode(name, v) for v in values]
    first = parts[0]
    if all(p.datatype == first.datatype and p.shape == first.shape for p in parts):
        shape = [len(parts)] + ([] if first.shape == [1] and not _is_array(values[0]) else first.shape)
        return Tensor(name, first.datatype, shape, [x for p in parts for x in p.data])
    return Tensor(name, "BYTES", [len(values)], [_json_text(v) for v in values])


def _is_array(value: Any) -> bool:
    return isinstance(value, (list, tuple)) or hasattr(value, "shape")


class _Routes:
    """The protocol's routes on a served model's app (`jupyter_flow.serve._ServiceApp`)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen_outputs: list[dict[str, Any]] = []  # learned from the first answer

    @property
    def flow(self) -> Flow:
        flow: Flow = self.app.service.flow
        return flow

    def _json(self, body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse(body, status_code=status, headers=dict(headers or {}))

    def _ready(self) -> bool:
        (planned,) = self.flow.plan.nodes.values()
        return self.app.warm_error is None and not planned.node.needs_warm_up

    def _other_model(self, request: Any) -> Any:
        name = request.path_params["name"]
        if name != self.flow.name:
            return self._json({"error": f"no model {name!r} here (this server serves {self.flow.name!r})"}, 404)
        return None

    async def live(self, request: Any) -> Any:
        return self._json({"live": True})

    async def ready(self, request: Any) -> Any:
        ready = self._ready()
        return self._json({"ready": ready}, 200 if ready else 503)

    async def server(self, request: Any) -> Any:
        from jupyter_flow import __version__

        return self._json({"name": "jupyter-flow", "version": __version__, "extensions": ["binary_tensor_data"]})

    async def metadata(self, request: Any) -> Any:
        other = self._other_model(request)
        if other is not None:
            return other
        (planned,) = self.flow.plan.nodes.values()
        return self._json({"name": self.flow.name, "versions": ["1"], "platform": f"jupyter-flow/{planned.spec.type}",
                           "inputs": input_metadata(self.flow), "outputs": self.seen_outputs})

    async def model_ready(self, request: Any) -> Any:
        other = self._other_model(request)
        if other is not None:
            return other
        ready = self._ready()
        return self._json({"name": self.flow.name, "ready": ready}, 200 if ready else 503)

    async def infer(self, request: Any) -> Any:
        """One inference, run like a ``/predict`` request (same flow, micro-batcher, file
        rules, scrubbed messages, metrics and run history); only the body's shape differs."""
        from jupyter_flow import telemetry
        from jupyter_flow.errors import FlowError, FlowValidationError
        from jupyter_flow.serve_guard import BodyTooLarge

        app = self.app
        async with app.exchange("/v2/infer") as ex:
            flow, files = ex.flow, ex.files
            try:
                other = self._other_model(request)
                if other is not None:
                    ex.status = 404
                    return other
                try:
                    body, requested, request_id = await self._read(request, flow)
                    inputs = flow.resolve_inputs(files.confine(body))
                except BodyTooLarge as exc:
                    ex.status = 413
                    return self._json({"error": str(exc)}, 413)
                except ProtocolError as exc:
                    ex.status = 400
                    return self._json({"error": files.scrubber.text(str(exc))}, 400)
                except FlowValidationError as exc:
                    ex.status = 400
                    return self._json({"error": files.scrubber.text("; ".join(map(str, exc.problems)))}, 400)
                with telemetry.continue_trace(request.headers):
                    result = await flow.arun(inputs, http_client=app.client, raise_on_error=False, wait_for_shadows=False)
                code, answer = app.answer(result, files.scrubber)
                headers = app.run_headers(result)
                if code != 200:
                    ex.status = code
                    return self._json({"error": answer.get("error") or "the model failed"}, code, headers)
                try:
                    reply = self._response(result, requested, request_id)
                except ProtocolError as exc:
                    return self._json({"error": f"the model's answer does not fit the protocol: {exc}"}, 500, headers)
                ex.status = 200
                return self._json(files.scrubber.value(reply), 200, headers)
            except FlowError as exc:
                return self._json({"error": files.scrubber.text(str(exc))}, 500)

    async def _read(self, request: Any, flow: Flow) -> tuple[dict[str, Any], list[str] | None, Any]:
        from jupyter_flow.errors import FlowValidationError
        from jupyter_flow.serve import MAX_BODY_DEPTH
        from jupyter_flow.spec import parse_json

        raw = await request.body()
        header_len = request.headers.get("inference-header-content-length")
        binary: bytes | None = None
        if header_len is not None:
            try:
                cut = int(header_len)
            except ValueError:
                raise ProtocolError("Inference-Header-Content-Length is not a number") from None
            raw, binary = raw[:cut], raw[cut:]
        try:
            body = parse_json(raw, source="body", max_depth=MAX_BODY_DEPTH)
        except FlowValidationError as exc:
            raise ProtocolError(f"the request body is not usable JSON: {exc.problems[0].message}") from None
        if not isinstance(body, Mapping) or not isinstance(body.get("inputs"), list):
            raise ProtocolError("an inference request is a JSON object with an `inputs` list")
        declared = flow.spec.inputs
        values: dict[str, Any] = {}
        offset = 0
        for i, entry in enumerate(body["inputs"]):
            tensor, offset = decode(entry, where=f"inputs[{i}]", binary=binary, offset=offset)
            spec = declared.get(tensor.name)
            if declared and spec is None:
                raise ProtocolError(f"unknown input {tensor.name!r} (the model takes: {', '.join(declared)})")
            values[tensor.name] = to_flow_value(tensor, spec.type if spec is not None else "any")
        requested = None
        if isinstance(body.get("outputs"), list):
            requested = [str(o.get("name")) for o in body["outputs"] if isinstance(o, Mapping)]
        return values, requested, body.get("id")

    def _response(self, result: RunResult, requested: list[str] | None, request_id: Any) -> dict[str, Any]:
        (answer,) = result.outputs.values()
        tensors = output_tensors(answer)
        if not self.seen_outputs:
            self.seen_outputs = [{"name": t.name, "datatype": t.datatype, "shape": [-1] * len(t.shape)} for t in tensors]
        if requested is not None:
            known = {t.name: t for t in tensors}
            missing = [n for n in requested if n not in known]
            if missing:
                raise ProtocolError(f"no output named {', '.join(map(repr, missing))} (outputs: {', '.join(known)})")
            tensors = [known[n] for n in requested]
        body: dict[str, Any] = {"model_name": self.flow.name, "model_version": "1", "outputs": [t.to_json() for t in tensors]}
        if request_id is not None:
            body["id"] = request_id
        return body


def routes(app: Any) -> list[Any]:
    """The protocol's routes for a served model; `app` is the service's state (its flow,
    HTTP client, metrics, warm-up outcome), shared with ``/predict``."""
    from starlette.routing import Route

    r = _Routes(app)
    model = "/v2/models/{name}"
    versioned = "/v2/models/{name}/versions/{version}"
    found = [
        Route("/v2/health/live", r.live, methods=["GET"]),
        Route("/v2/health/ready", r.ready, methods=["GET"]),
        Route("/v2", r.server, methods=["GET"]),
    ]
    for base in (model, versioned):
        found += [
            Route(base, r.metadata, methods=["GET"]),
            Route(base + "/ready", r.model_ready, methods=["GET"]),
            Route(base + "/infer", r.infer, methods=["POST"]),
        ]
    return found
