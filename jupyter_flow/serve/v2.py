"""The Open Inference Protocol (KServe V2 / Triton REST): the routes of a served model or flow.

Requests and answers go through `jupyter_flow.serve.codec`; a request is run like a
``/predict`` (or, for a served flow, ``/run``) request of the same app (same flow,
micro-batcher, guards, metrics). A served model is named by its config's ``name``, a served
flow by the flow's ``name``; a flow answers with its declared ``outputs:`` (without them,
one tensor per node).

============================================  ======  =========================================
route                                         method  answer
============================================  ======  =========================================
``/v2/health/live``, ``/v2/health/ready``     GET     ``{"live": true}``, ``{"ready": true}``
``/v2``                                       GET     server name, version, extensions
``/v2/models/{name}[/versions/{v}]``          GET     inputs and outputs (names, datatypes, shapes)
``/v2/models/{name}[/versions/{v}]/ready``    GET     ``{"name", "ready"}``
``/v2/models/{name}[/versions/{v}]/infer``    POST    ``{"model_name", "id", "outputs": [...]}``
============================================  ======  =========================================

The metadata lists the outputs before the first request, so that a client can plan with
them:

- a model config may declare them: ``outputs: {logits: {datatype: FP32, shape: [-1, 2]}}``
  (``shape`` defaults to ``[-1]``; -1 is any size). Answers then hold exactly those outputs,
  in that order, cast to the declared datatype; an answer that lacks one, or whose shape
  does not fit, is a 500 naming the output. A one-item request (every input a text or
  number tensor of shape ``[1]``) whose answer lacks the leading batch dim gets it back.
- a served model's are otherwise described by one example call at start-up. Each required
  input gets a placeholder (``"example"`` text, 0, false; inputs with a default keep it).
  Names and datatypes are what that call answered, every dim -1. A call that cannot be
  built (an input of another type without a default, or a node marked ``cache: false``
  because its effects matter), fails or takes over `EXAMPLE_TIMEOUT_S` is logged as a
  warning and the outputs stay unlisted until the first answer: a placeholder the model
  refuses must not keep the service from starting (a bad declaration does, as an invalid
  config).
- a served flow is never run to describe it (its nodes may have effects: an HTTP call, a
  write): its metadata lists its declared ``outputs:`` by name, datatype ``BYTES`` and
  shape ``[-1]`` until the first answer (after each edit of its file) tells their real
  datatypes; a flow without ``outputs:`` lists none until then.

Errors are ``{"error": "..."}`` with 400 (a bad request: a tensor that does not fit the
protocol or its bounds, an input given twice, an output asked for twice), 404 (another
model), 500 (the model failed, or its answer does not fit the protocol) or 504 (a
timeout). Answers are strict JSON: NaN and infinity as ``"NaN"``, ``"Infinity"``,
``"-Infinity"`` (`jupyter_flow.values`). ``/metrics`` counts each answer by the status
sent.
"""

from __future__ import annotations

import asyncio
import logging
import math
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from jupyter_flow import telemetry
from jupyter_flow.errors import FlowError, FlowValidationError, Problem
from jupyter_flow.serve.codec import DATATYPES, ProtocolError, Tensor, cast, check_shape, decode, encode, json_text
from jupyter_flow.serve.guards import MAX_BODY_DEPTH, BodyRefused
from jupyter_flow.spec import parse_json
from jupyter_flow.values import is_tensor
from jupyter_flow.version import __version__

if TYPE_CHECKING:
    from jupyter_flow.flow import Flow
    from jupyter_flow.trace import RunResult

__all__ = ["EXAMPLE_TIMEOUT_S", "Protocol", "TensorSpec", "declared_outputs", "example_inputs", "input_metadata",
           "output_tensors", "routes", "to_flow_value"]

log = logging.getLogger("jupyter_flow.serve")

_TEXT_TYPES = {"string", "text", "file"}
_SCALAR_TYPES = {"number": "FP64", "integer": "INT64", "boolean": "BOOL"}
#: what the example call at start-up gives a required input of each type
_PLACEHOLDERS: dict[str, Any] = {"string": "example", "text": "example", "number": 0.0, "integer": 0, "boolean": False}
#: seconds the example call that describes a model's outputs may take
EXAMPLE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class TensorSpec:
    """A tensor as the metadata describes it: a name, a datatype and a shape (-1: any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}

    def fits(self, shape: list[int]) -> bool:
        return len(shape) == len(self.shape) and all(want in (-1, got) for want, got in zip(self.shape, shape))


def declared_outputs(raw: Any, *, source: str | None = None) -> tuple[TensorSpec, ...]:
    """A model config's `outputs:` (``{name: {datatype, shape}}``) as tensor specs, or a
    `FlowValidationError` naming every field that is wrong; () when there is none."""
    if raw is None:
        return ()
    if not isinstance(raw, Mapping) or not raw:
        raise FlowValidationError([Problem("must map output names to {datatype, shape}", field="outputs")], source=source)
    found: list[TensorSpec] = []
    problems: list[Problem] = []
    for name, entry in raw.items():
        field = f"outputs.{name}"
        if not isinstance(name, str) or not name:
            problems.append(Problem("an output name must be text", field="outputs"))
            continue
        if not isinstance(entry, Mapping):
            problems.append(Problem("must be a mapping with `datatype` (and `shape`)", field=field))
            continue
        unknown = sorted(map(str, set(entry) - {"datatype", "shape"}))
        if unknown:
            problems.append(Problem(f"unknown field {', '.join(unknown)} (an output has `datatype` and `shape`)", field=field))
        datatype = entry.get("datatype")
        if datatype not in DATATYPES:
            problems.append(Problem(f"unknown datatype {datatype!r} (known: {', '.join(DATATYPES)})", field=f"{field}.datatype"))
        shape = entry.get("shape", [-1])
        try:
            if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape):
                raise ProtocolError(f"must be a list of sizes (integers; -1 for any size), got {shape!r}"[:200])
            check_shape([max(d, 1) for d in shape], "shape")
        except ProtocolError as exc:
            problems.append(Problem(str(exc).removeprefix("shape: "), field=f"{field}.shape"))
            continue
        if not unknown and datatype in DATATYPES:
            found.append(TensorSpec(name, str(datatype), tuple(shape)))
    if problems:
        raise FlowValidationError(problems, source=source)
    return tuple(found)


def example_inputs(flow: Flow) -> dict[str, Any]:
    """The inputs of the example call that describes a model's outputs: a placeholder for
    each required text, number or boolean input (others keep their defaults); a
    `ProtocolError` names a required input of another type, which has no placeholder."""
    inputs: dict[str, Any] = {}
    for name, spec in flow.spec.inputs.items():
        if not spec.is_required:
            continue
        if spec.type not in _PLACEHOLDERS:
            raise ProtocolError(f"input {name!r} is of type {spec.type} and has no default to try the model with")
        inputs[name] = _PLACEHOLDERS[spec.type]
    return inputs


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


class Protocol:
    """The protocol's routes on a served model's or flow's app
    (`jupyter_flow.serve.app._ServiceApp`), and what its metadata says of the outputs."""

    def __init__(self, app: Any, *, outputs: tuple[TensorSpec, ...] = ()) -> None:
        self.app = app
        self.declared = outputs
        #: the outputs an example call (or the first answer) showed, by served flow
        self.described: weakref.WeakKeyDictionary[Flow, list[TensorSpec]] = weakref.WeakKeyDictionary()
        self._describing: asyncio.Lock | None = None

    @property
    def flow(self) -> Flow:
        flow: Flow = self.app.service.flow
        return flow

    def _json(self, body: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Any:
        from starlette.responses import JSONResponse

        return JSONResponse(body, status_code=status, headers=dict(headers or {}))

    def _ready(self) -> bool:
        return self.app.warm_error is None and not any(node.needs_warm_up for node in self.flow.plan.node_objects())

    def _other_model(self, request: Any) -> Any:
        name = request.path_params["name"]
        if name != self.flow.name:
            return self._json({"error": f"no model {name!r} here (this server serves {self.flow.name!r})"}, 404)
        return None

    # -- what the outputs are -------------------------------------------------------------
    async def start(self) -> None:
        """At start-up: a served model's outputs described. A served flow is never run to
        describe it: its declared outputs are listed until its first answer tells more."""
        if self.app.mode == "model":
            await self.describe()

    async def describe(self) -> None:
        """Describe the served model's outputs with one example call, unless they are declared
        or already known. A served flow is not described so (see `outputs`)."""
        flow = self.flow
        if self.app.mode != "model" or self.declared or flow in self.described:
            return
        if self._describing is None:
            self._describing = asyncio.Lock()
        async with self._describing:
            if flow not in self.described:
                self.described[flow] = await self._example(flow)

    async def _example(self, flow: Flow) -> list[TensorSpec]:
        what = f"{self.app.mode} {flow.name!r}"
        try:
            if self.app.warm_error is not None:
                raise ProtocolError(self.app.warm_error)
            effects = [spec.id for spec in flow.spec.nodes if not spec.cache]
            if effects:
                raise ProtocolError(f"node {effects[0]!r} has `cache: false` (its effects matter), so no example call is made")
            inputs = example_inputs(flow)
            run = flow.arun(inputs, http_client=self.app.client, raise_on_error=False, wait_for_shadows=True)
            result = await asyncio.wait_for(run, EXAMPLE_TIMEOUT_S)
            if not result.ok:
                raise ProtocolError(result.error or "the run failed")
            tensors = output_tensors(self._answer(result))
        except asyncio.TimeoutError:
            reason = f"it took over {EXAMPLE_TIMEOUT_S:g} s"
        except (ProtocolError, FlowError) as exc:
            reason = str(exc)
        except Exception as exc:  # whatever the model raised: the service still starts
            reason = f"{type(exc).__name__}: {exc}"
        else:
            return [TensorSpec(t.name, t.datatype, (-1,) * len(t.shape)) for t in tensors]
        hint = " (declare them under `outputs:` in the config)" if self.app.mode == "model" else ""
        log.warning("%s: the example call that describes the outputs failed, so the protocol's metadata lists none "
                    "until the first answer%s: %s", what, hint, reason)
        return []

    def outputs(self, flow: Flow) -> list[TensorSpec]:
        """What the metadata lists: the declared outputs, else what an example call or the
        first answer told; for a flow not answered yet, its `outputs:` names (BYTES, any size)."""
        if self.declared:
            return list(self.declared)
        told = self.described.get(flow)
        if told is not None:
            return told
        if self.app.mode == "model":
            return []
        return [TensorSpec(name, "BYTES", (-1,)) for name in flow.spec.outputs]

    def _answer(self, result: RunResult) -> Any:
        if self.app.mode == "model":
            (answer,) = result.outputs.values()
            return answer
        return result.flow_outputs if result.flow_outputs is not None else result.outputs

    def _conform(self, tensors: list[Tensor], single: bool) -> list[Tensor]:
        """The answer's tensors as the declared outputs say: those, in their order and datatypes."""
        known = {t.name: t for t in tensors}
        out = []
        for spec in self.declared:
            tensor = known.get(spec.name)
            if tensor is None:
                raise ProtocolError(f"the answer has no output {spec.name!r}, which the config declares "
                                    f"(it has: {', '.join(known) or 'none'})")
            shape = tensor.shape
            if single and len(shape) == len(spec.shape) - 1 and spec.shape[0] in (-1, 1):
                shape = [1, *shape]  # a one-item request: the batch dim back
            if not spec.fits(shape):
                raise ProtocolError(f"output {spec.name!r} has shape {tensor.shape}, but the config declares {list(spec.shape)}")
            out.append(cast(Tensor(tensor.name, tensor.datatype, shape, tensor.data), spec.datatype))
        return out

    # -- routes -----------------------------------------------------------------------
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
        await self.describe()
        flow = self.flow
        if self.app.mode == "model":
            (planned,) = flow.plan.nodes.values()
            platform = f"jupyter-flow/{planned.spec.type}"
        else:
            platform = "jupyter-flow/flow"
        return self._json({"name": flow.name, "versions": ["1"], "platform": platform, "inputs": input_metadata(flow),
                           "outputs": [o.to_json() for o in self.outputs(flow)]})

    async def model_ready(self, request: Any) -> Any:
        other = self._other_model(request)
        if other is not None:
            return other
        ready = self._ready()
        return self._json({"name": self.flow.name, "ready": ready}, 200 if ready else 503)

    async def infer(self, request: Any) -> Any:
        """One inference, run like a ``/predict`` or ``/run`` request (same flow, micro-batcher,
        file rules, scrubbed messages, metrics and run history); only the body's shape differs."""

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
                body, requested, request_id, single = await self._read(request, flow)
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
                reply = self._response(flow, result, requested, request_id, single)
            except ProtocolError as exc:
                return self._json({"error": files.scrubber.text(f"the model's answer does not fit the protocol: {exc}")}, 500, headers)
            return self._json(files.scrubber.value(reply), 200, headers)
        except FlowError as exc:
            return self._json({"error": files.scrubber.text(str(exc))}, 500)
        except Exception as exc:
            log.exception("/v2/infer failed")
            return self._json({"error": f"the server failed to answer: {type(exc).__name__}"}, 500)

    async def _read(self, request: Any, flow: Flow) -> tuple[dict[str, Any], list[str] | None, Any, bool]:
        """The request's inputs, the outputs it asks for, its id, and whether it is one item
        (every input a text or number tensor of shape [1])."""
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
        single = bool(body["inputs"])
        for i, entry in enumerate(body["inputs"]):
            tensor, offset = decode(entry, where=f"inputs[{i}]", binary=binary, offset=offset)
            spec = declared.get(tensor.name)
            if declared and spec is None:
                raise ProtocolError(f"unknown input {tensor.name!r} (the model takes: {', '.join(declared)})")
            if tensor.name in values:
                raise ProtocolError(f"inputs[{i}] '{tensor.name}': the input is given twice")
            input_type = spec.type if spec is not None else "any"
            values[tensor.name] = to_flow_value(tensor, input_type)
            single = single and tensor.shape == [1] and (input_type in _TEXT_TYPES or input_type in _SCALAR_TYPES)
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
        return values, requested, body.get("id"), single

    def _response(self, flow: Flow, result: RunResult, requested: list[str] | None, request_id: Any,
                  single: bool) -> dict[str, Any]:
        tensors = output_tensors(self._answer(result))
        if self.declared:
            tensors = self._conform(tensors, single)
        elif not self.described.get(flow):  # no example call told (or a flow): the first answer does
            self.described[flow] = [TensorSpec(t.name, t.datatype, (-1,) * len(t.shape)) for t in tensors]
        if requested is not None:
            known = {t.name: t for t in tensors}
            missing = [n for n in requested if n not in known]
            if missing:
                raise ProtocolError(f"no output named {', '.join(map(repr, missing))} (outputs: {', '.join(known)})")
            tensors = [known[n] for n in requested]
        body: dict[str, Any] = {"model_name": flow.name, "model_version": "1", "outputs": [t.to_json() for t in tensors]}
        if request_id is not None:
            body["id"] = request_id
        return body

    def routes(self) -> list[Any]:
        """The protocol's routes, sharing the app's state (its flow, HTTP client, metrics,
        warm-up outcome) with ``/predict`` or ``/run``."""
        from starlette.routing import Route

        model = "/v2/models/{name}"
        versioned = "/v2/models/{name}/versions/{version}"
        found = [
            Route("/v2/health/live", self.live, methods=["GET"]),
            Route("/v2/health/ready", self.ready, methods=["GET"]),
            Route("/v2", self.server, methods=["GET"]),
        ]
        for base in (model, versioned):
            found += [
                Route(base, self.metadata, methods=["GET"]),
                Route(base + "/ready", self.model_ready, methods=["GET"]),
                Route(base + "/infer", self.infer, methods=["POST"]),
            ]
        return found


def routes(app: Any) -> list[Any]:
    """The protocol's routes for a served model or flow (`Protocol.routes`)."""
    return Protocol(app).routes()
