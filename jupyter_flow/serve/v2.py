"""The Open Inference Protocol (KServe V2 / Triton REST): the routes of a served model.

Requests and answers go through `jupyter_flow.serve.codec`; a request is run like a
``/predict`` request of the same app (same flow, micro-batcher, guards, metrics).

============================================  ======  =========================================
route                                         method  answer
============================================  ======  =========================================
``/v2/health/live``, ``/v2/health/ready``     GET     ``{"live": true}``, ``{"ready": true}``
``/v2``                                       GET     server name, version, extensions
``/v2/models/{name}[/versions/{v}]``          GET     inputs and outputs (names, datatypes, shapes)
``/v2/models/{name}[/versions/{v}]/ready``    GET     ``{"name", "ready"}``
``/v2/models/{name}[/versions/{v}]/infer``    POST    ``{"model_name", "id", "outputs": [...]}``
============================================  ======  =========================================

Errors are ``{"error": "..."}`` with 400 (a bad request: a tensor that does not fit the
protocol or its bounds, an input given twice, an output asked for twice), 404 (another
model), 500 (the model failed, or its answer does not fit the protocol) or 504 (a
timeout). Answers are strict JSON: NaN and infinity as ``"NaN"``, ``"Infinity"``,
``"-Infinity"`` (`jupyter_flow.values`). ``/metrics`` counts each answer by the status
sent.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from jupyter_flow import telemetry
from jupyter_flow.errors import FlowError, FlowValidationError
from jupyter_flow.serve.codec import ProtocolError, Tensor, decode, encode, json_text
from jupyter_flow.serve.guards import MAX_BODY_DEPTH, BodyRefused
from jupyter_flow.spec import parse_json
from jupyter_flow.values import is_tensor
from jupyter_flow.version import __version__

if TYPE_CHECKING:
    from jupyter_flow.flow import Flow
    from jupyter_flow.trace import RunResult

__all__ = ["input_metadata", "output_tensors", "routes", "to_flow_value"]

log = logging.getLogger("jupyter_flow.serve")

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
    return Tensor(name, "BYTES", [len(values)], [json_text(v) for v in values])


def _is_array(value: Any) -> bool:
    return isinstance(value, (list, tuple)) or is_tensor(value)


class _Routes:
    """The protocol's routes on a served model's app (`jupyter_flow.serve.app._ServiceApp`)."""

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

        async with self.app.exchange("/v2/infer") as ex:
            response = await self._infer(request, ex)
            ex.status = response.status_code  # what is counted is what is sent
            return response

    async def _infer(self, request: Any, ex: Any) -> Any:
        app, flow, files = self.app, ex.flow, ex.files
        try:
            other = self._other_model(request)
            if other is not None:
                return other
            try:
                body, requested, request_id = await self._read(request, flow)
                inputs = flow.resolve_inputs(files.confine(body))
            except BodyRefused as exc:
                return self._json({"error": str(exc)}, exc.status)
            except ProtocolError as exc:
                return self._json({"error": files.scrubber.text(str(exc))}, 400)
            except FlowValidationError as exc:
                return self._json({"error": files.scrubber.text("; ".join(map(str, exc.problems)))}, 400)
            with telemetry.continue_trace(request.headers):
                result = await flow.arun(inputs, http_client=app.client, raise_on_error=False, wait_for_shadows=False)
            app.record(result, files.scrubber)
            headers = app.run_headers(result)
            if not result.ok:
                code, answer = app.failure(result, files.scrubber)
                return self._json({"error": answer.get("error") or "the model failed"}, code, headers)
            try:
                reply = self._response(result, requested, request_id)
            except ProtocolError as exc:
                return self._json({"error": files.scrubber.text(f"the model's answer does not fit the protocol: {exc}")}, 500, headers)
            return self._json(files.scrubber.value(reply), 200, headers)
        except FlowError as exc:
            return self._json({"error": files.scrubber.text(str(exc))}, 500)
        except Exception as exc:
            log.exception("/v2/infer failed")
            return self._json({"error": f"the server failed to answer: {type(exc).__name__}"}, 500)

    async def _read(self, request: Any, flow: Flow) -> tuple[dict[str, Any], list[str] | None, Any]:

        raw = await request.body()
        header_len = request.headers.get("inference-header-content-length")
        binary: bytes | None = None
        if header_len is not None:
            try:
                cut = int(header_len)
            except ValueError:
                raise ProtocolError("Inference-Header-Content-Length is not a number") from None
            if not 0 <= cut <= len(raw):
                raise ProtocolError(f"Inference-Header-Content-Length is {cut}, but the body has {len(raw)} bytes")
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
            if tensor.name in values:
                raise ProtocolError(f"inputs[{i}] '{tensor.name}': the input is given twice")
            values[tensor.name] = to_flow_value(tensor, spec.type if spec is not None else "any")
        if binary is not None and offset != len(binary):
            raise ProtocolError(f"the binary part has {len(binary) - offset} bytes past the last tensor's `binary_data_size`")
        requested = None
        if isinstance(body.get("outputs"), list):
            requested = []
            for i, o in enumerate(body["outputs"]):
                name = o.get("name") if isinstance(o, Mapping) else None
                if not isinstance(name, str) or not name:
                    raise ProtocolError(f"outputs[{i}]: a requested output is an object with a `name`")
                if name in requested:
                    raise ProtocolError(f"outputs[{i}] '{name}': the output is asked for twice")
                requested.append(name)
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
