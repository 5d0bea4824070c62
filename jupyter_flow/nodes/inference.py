"""`inference`: call a model over the Open Inference Protocol (KServe V2 / Triton REST).

Works against Triton, KServe, Seldon MLServer, TorchServe's V2 API and
`jupyter-flow serve model` alike::

    - id: classify
      type: inference
      config:
        endpoint: http://triton:8000        # the server (or the full .../infer URL)
        model: clause-bert
        inputs:
          text: "{{ extract.output.text }}"  # datatype and shape from the value
          pixels: {data: "{{ image.output.tensor }}", datatype: FP16, shape: [1, 3, 224, 224]}
        outputs: [label, logits]             # optional: only these
        tensors: list                        # or torch

The output has one field per output tensor, by name: nested lists of the tensor's shape
(text as strings), or torch tensors with ``tensors: torch``.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Literal

from pydantic import field_validator

from jupyter_flow import telemetry
from jupyter_flow.errors import NodeError, RemoteError
from jupyter_flow.expressions import is_template
from jupyter_flow.http import DEFAULT_TIMEOUT_S
from jupyter_flow.http_errors import transport_errors
from jupyter_flow.http_send import MAX_RESPONSE_BYTES, send
from jupyter_flow.nodes.base import Node, NodeConfig, NodeContext
from jupyter_flow.nodes.http import ResponseBytes, Secrets, call_error, env_names
from jupyter_flow.serve.codec import DATATYPES, ProtocolError, Tensor, decode, encode, to_torch

__all__ = ["InferenceNode"]

_OVERRIDES = {"data", "datatype", "shape", "parameters"}


class InferenceConfig(NodeConfig):
    endpoint: str
    model: str
    version: str | None = None
    #: input names to templates, or to `{data, datatype, shape, parameters}`
    inputs: dict[str, Any]
    outputs: list[str] | None = None
    tensors: Literal["list", "torch"] = "list"
    headers: dict[str, str] = {}
    parameters: dict[str, Any] | None = None
    #: bytes of the answer read at most: a larger one fails the node
    max_response_bytes: ResponseBytes = MAX_RESPONSE_BYTES

    @field_validator("inputs")
    @classmethod
    def _inputs(cls, value: dict[str, Any]) -> dict[str, Any]:
        if not value:
            raise ValueError("name at least one input, e.g. {text: \"{{ text }}\"}")
        for name, spec in value.items():
            if not isinstance(spec, dict):
                continue
            extra = set(spec) - _OVERRIDES
            if "data" not in spec or extra:
                raise ValueError(f"input {name!r}: give a template, or an object with `data` and optionally "
                                 f"`datatype`, `shape`, `parameters`" + (f" (unknown: {', '.join(sorted(extra))})" if extra else ""))
            datatype = spec.get("datatype")
            if datatype is not None and datatype not in DATATYPES and not is_template(datatype):
                raise ValueError(f"input {name!r}: unknown datatype {datatype!r} (known: {', '.join(DATATYPES)})")
            shape = spec.get("shape")
            if shape is not None and not is_template(shape) and not (
                isinstance(shape, list) and all(isinstance(d, int) and not isinstance(d, bool) and d >= -1 for d in shape)
            ):
                raise ValueError(f"input {name!r}: `shape` is a list of sizes (one may be -1), got {shape!r}")
        return value


class InferenceNode(Node):
    """Send named inputs as tensors to a model served over the Open Inference Protocol;
    publish its output tensors by name. Connection errors, timeouts and 5xx answers are
    retryable; 4xx (the server's `error` is shown) and answers that are not the protocol's
    are not."""

    kind = "inference"
    Config = InferenceConfig
    config: InferenceConfig

    def describe(self) -> str:
        if self.spec.description or self.spec.title:
            return super().describe()
        return f"model `{self.config.model}` at `{self.config.endpoint}` (Open Inference Protocol)"

    def url(self, endpoint: str) -> str:
        endpoint = endpoint.rstrip("/")
        if endpoint.endswith("/infer"):
            return endpoint
        version = f"/versions/{self.config.version}" if self.config.version else ""
        return f"{endpoint}/v2/models/{self.config.model}{version}/infer"

    def request(self, inputs: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
        tensors = []
        for name, value in inputs["inputs"].items():
            field = f"config.inputs.{name}"
            spec = value if isinstance(self.spec.config["inputs"].get(name), dict) else {"data": value}
            try:
                tensor = encode(name, spec["data"], datatype=spec.get("datatype"), shape=spec.get("shape"))
            except ProtocolError as exc:
                raise NodeError(f"{field}: {exc}", node=self.id, retryable=False) from None
            entry = tensor.to_json()
            if spec.get("parameters"):
                entry["parameters"] = spec["parameters"]
            tensors.append(entry)
        body: dict[str, Any] = {"id": f"{ctx.result.run_id}-{self.id}", "inputs": tensors}
        if self.config.outputs:
            body["outputs"] = [{"name": n, "parameters": {"binary_data": False}} for n in self.config.outputs]
        if inputs.get("parameters"):
            body["parameters"] = inputs["parameters"]
        return body

    @functools.cached_property
    def _env_names(self) -> frozenset[str]:
        """The variables the config names (the config never changes: worked out once)."""
        return env_names(self.config.model_dump())

    async def run(self, inputs: dict[str, Any], ctx: NodeContext) -> Any:
        secrets = Secrets(self.id, allowed=self._env_names)
        given = secrets.expand(str(inputs["endpoint"]), "config.endpoint")
        endpoint, where = self.url(given.value), self.url(given.shown)  # `where`: what messages show
        headers = secrets.headers(inputs.get("headers") or {})
        if ctx.traced:
            telemetry.inject(headers)
        body = self.request(inputs, ctx)
        timeout = self.spec.timeout_s or DEFAULT_TIMEOUT_S
        try:
            response = await send(ctx.http, "POST", endpoint, json=body, headers=headers, timeout_s=timeout,
                                  max_bytes=self.config.max_response_bytes)
        except _TRANSPORT_ERRORS as exc:
            raise call_error(exc, where, timeout, node=self.id, secrets=secrets) from secrets.cause(exc)
        ctx.record.extra["http_status"] = response.status_code
        try:
            answer = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            answer = None
        if response.status_code >= 400:
            said = answer.get("error") if isinstance(answer, dict) and isinstance(answer.get("error"), str) else _snippet(response.text)
            raise RemoteError(
                secrets.mask(f"{where} answered HTTP {response.status_code}: {said}"),
                node=self.id,
                status_code=response.status_code,
                retryable=response.status_code >= 500 or response.status_code in (408, 429),
            )
        if not isinstance(answer, dict) or not isinstance(answer.get("outputs"), list):
            raise RemoteError(secrets.mask(f"{where} did not answer an inference response (an object with `outputs`): {_snippet(response.text)}"),
                              node=self.id, status_code=response.status_code, retryable=False)
        return self.publish(answer["outputs"], where)

    def publish(self, outputs: list[Any], endpoint: str) -> dict[str, Any]:
        """The answer's tensors by name, read strictly and within the codec's bounds (a
        shape that asks for more than `MAX_VALUES` values is refused before anything is
        built from it)."""
        result: dict[str, Any] = {}
        for i, entry in enumerate(outputs):
            try:
                tensor: Tensor = decode(entry, where=f"outputs[{i}]")[0]
                if tensor.name in result:
                    raise ProtocolError(f"outputs[{i}] '{tensor.name}': two outputs have this name")
            except ProtocolError as exc:
                params = entry.get("parameters") if isinstance(entry, dict) else None
                if isinstance(params, dict) and "binary_data_size" in params:
                    exc = ProtocolError(f"{exc} (binary outputs are not read: ask for JSON outputs)")
                raise RemoteError(f"{endpoint} answered a tensor this node cannot read: {exc}", node=self.id, retryable=False) from None
            result[tensor.name] = to_torch(tensor) if self.config.tensors == "torch" else tensor.nested()
        return result


_TRANSPORT_ERRORS = transport_errors()


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return repr(text[:limit] + ("..." if len(text) > limit else ""))
