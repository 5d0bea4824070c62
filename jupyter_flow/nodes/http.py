"""`http`: call a remote model endpoint with JSON in and JSON out."""

from __future__ import annotations

import asyncio
import functools
import json
import re
from typing import Any, Literal

from jupyter_flow import environ, telemetry
from jupyter_flow.errors import NodeError, Problem, RemoteError, TemplateError
from jupyter_flow.expressions import Renderer, compile_value
from jupyter_flow.http import DEFAULT_TIMEOUT_S
from jupyter_flow.http_errors import describe_error, transport_errors
from jupyter_flow.http_send import Answer, send
from jupyter_flow.nodes.base import Node, NodeConfig, NodeContext
from jupyter_flow.spec import NodeSpec

__all__ = ["HttpNode", "expand_env"]

_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(text: str, *, node: str, field: str) -> str:
    """Expand `${VAR}` from the environment at run time; a missing variable is an error."""
    parts = _env_parts(text)
    if len(parts) == 1:
        return text
    out = [parts[0]]
    for i in range(1, len(parts), 2):
        name = parts[i]
        value = environ.get(name)
        if value is None:
            raise NodeError(
                f"environment variable {name} (used in {field}) is not set", node=node, retryable=False
            )
        out += (value, parts[i + 1])
    return "".join(out)


@functools.lru_cache(maxsize=1024)
def _env_parts(text: str) -> tuple[str, ...]:
    """`text` split at its `${VAR}` references: literal, name, literal, name, ..., literal
    (one literal when there is none), worked out once per text."""
    return tuple(_ENV_VAR.split(text)) if "${" in text else (text,)


class HttpConfig(NodeConfig):
    endpoint: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "get", "post", "put", "patch", "delete"] = "POST"
    input_mapping: dict[str, Any] | None = None
    body: Any = None
    params: dict[str, Any] | None = None
    headers: dict[str, str] = {}
    output_key: str | None = None
    #: output names to templates over the answer, read as `response`
    #: (`{label: "{{ response.outputs[0].data[0] }}"}`)
    output_mapping: dict[str, Any] | None = None
    #: a body sent as is (text), or as a form (`application/x-www-form-urlencoded`)
    content: Any = None
    form: dict[str, Any] | None = None
    #: `json`: the answer's JSON is the output; `full`: `{status_code, body (text), headers}`,
    #: whatever the status, so a flow can branch on `status_code`
    response: Literal["json", "full"] = "json"


class HttpNode(Node):
    """POST (by default) the `input_mapping` as JSON to `endpoint`; the JSON answer is the output.

    `output_key` names the field the node publishes its result under: an object answer that
    already has that field is used as is, anything else is wrapped as `{output_key: answer}`.
    `output_mapping` picks the output out of the answer instead: each name gets its
    template's value, evaluated over the answer (`response`).
    Connection errors, timeouts and 5xx answers are retryable; 4xx and non-JSON are not.
    """

    kind = "http"
    Config = HttpConfig
    config: HttpConfig
    own_templates = frozenset({"output_mapping"})
    keeps_own_deadline = True  # the whole call, Retry-After waits included, ends by timeout_s

    def __init__(self, spec: NodeSpec) -> None:
        super().__init__(spec)
        self._mapping, self._mapping_problems = compile_response_mapping(self.config.output_mapping, node=self.id)

    def problems(self) -> list[Problem]:
        return list(self._mapping_problems)

    def describe(self) -> str:
        if self.spec.description or self.spec.title:
            return super().describe()
        return f"{self.config.method.upper()} `{self.config.endpoint}`"

    @classmethod
    def endpoint_changes(cls, url: str) -> dict[str, Any]:
        """`endpoint` is the whole URL called (`${VAR}` in it expanded at run time)."""
        return {"endpoint": url}

    async def run(self, inputs: dict[str, Any], ctx: NodeContext) -> Any:
        endpoint = expand_env(str(inputs["endpoint"]), node=self.id, field="config.endpoint")
        given = inputs.get("headers")
        headers = {k: expand_env(str(v), node=self.id, field=f"config.headers.{k}") for k, v in given.items()} if given else None
        if ctx.traced:
            headers = headers or {}
            telemetry.inject(headers)
        method = str(inputs.get("method") or "POST").upper()
        payload = inputs.get("input_mapping")
        if inputs.get("body") is not None:
            payload = inputs["body"]
        params = inputs.get("params")
        if method == "GET" and payload is not None and params is None:
            params, payload = payload, None
        content = inputs.get("content")
        form = inputs.get("form")
        if content is not None:  # sent as it is: no JSON body beside it
            content, form, payload = content if isinstance(content, (str, bytes)) else json.dumps(content), None, None
        elif form is not None:
            form, payload = {k: "" if v is None else str(v) for k, v in form.items()}, None
        timeout = self.spec.timeout_s or DEFAULT_TIMEOUT_S
        # the call, within `timeout` seconds in all: a server trickling its answer a byte at a
        # time does not hold the node past it (sent from here, not from a coroutine of its own:
        # every call of every HTTP node comes this way)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        wait_when_asked = inputs.get("response") != "full"
        waits = 0
        while True:
            try:
                response = await send(ctx.http, method, endpoint, json=payload, content=content, form=form, params=params,
                                      headers=headers, timeout_s=max(deadline - loop.time(), 0.001))
            except _TRANSPORT_ERRORS as exc:
                raise RemoteError(describe_error(exc, endpoint, timeout), node=self.id) from exc
            wait = retry_after(response) if wait_when_asked else None
            if wait is None or waits >= _MAX_RETRY_AFTER_WAITS:
                break
            self._check_wait(ctx, endpoint, response, wait, deadline - loop.time(), timeout)
            waits += 1
            ctx.record.extra["retry_after_waits"] = waits
            await asyncio.sleep(wait)
        ctx.record.extra["http_status"] = response.status_code
        if inputs.get("response") == "full":
            full = {"status_code": response.status_code, "body": response.text, "headers": dict(response.headers)}
            return map_response(self._mapping, full, node=self.id) if self._mapping else full
        if response.status_code >= 400:
            raise RemoteError(
                f"{endpoint} answered HTTP {response.status_code}: {_snippet(response.text)}",
                node=self.id,
                status_code=response.status_code,
                retryable=response.status_code >= 500 or response.status_code in (408, 429),
            )
        try:
            answer = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            ctype = response.headers.get("content-type", "none")
            raise RemoteError(
                f"{endpoint} answered HTTP {response.status_code} with something that is not JSON "
                f"(content-type {ctype}): {_snippet(response.text)}",
                node=self.id,
                status_code=response.status_code,
                retryable=False,
            ) from None
        if self._mapping:
            answer = map_response(self._mapping, answer, node=self.id)
        key = inputs.get("output_key")
        if key:
            return answer if isinstance(answer, dict) and key in answer else {key: answer}
        return answer if isinstance(answer, dict) else {"result": answer}

    def _check_wait(self, ctx: NodeContext, endpoint: str, response: Answer, wait: float, left: float, timeout: float) -> None:
        """A 429 or 503 with `Retry-After` is sent again after the wait the server asks for
        while that wait ends before the deadline; a wait past it fails the node at once (no
        quicker retry the server asked not to get)."""
        ctx.record.extra["retry_after_s"] = wait
        if wait >= left:
            raise RemoteError(
                f"{endpoint} answered HTTP {response.status_code} asking to retry after {wait:g} s, past the node's "
                f"deadline ({max(left, 0):.1f} s left of timeout_s={timeout:g}): {_snippet(response.text)}",
                node=self.id,
                status_code=response.status_code,
                retryable=False,
            )


_MAX_RETRY_AFTER_WAITS = 10
_TRANSPORT_ERRORS = transport_errors()


def retry_after(response: Answer) -> float | None:
    """Seconds a 429 or 503 answer asks the client to wait (`Retry-After` in seconds or as
    an HTTP date); None when it does not ask."""
    if response.status_code not in (429, 503):
        return None
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    import email.utils
    import time

    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


def compile_response_mapping(mapping: dict[str, Any] | None, *, node: str) -> tuple[dict[str, Renderer], list[Problem]]:
    """`output_mapping` compiled, and its problems: templates that do not parse, and ones
    that read anything but the answer (`response`)."""
    compiled: dict[str, Renderer] = {}
    problems: list[Problem] = []
    for name, value in (mapping or {}).items():
        field = f"config.output_mapping.{name}"
        try:
            renderer = compile_value(value, node=node, where=field)
        except TemplateError as exc:
            problems.append(exc.problem)
            continue
        others = sorted({ref.name for ref in renderer.refs} - {"response"})
        if others:
            problems.append(Problem(f"reads {', '.join(map(repr, others))}: an output mapping reads only the answer, as `response` "
                                    f"(e.g. \"{{{{ response.outputs[0].data[0] }}}}\"); use a node downstream to combine it with others",
                                    node=node, field=field))
            continue
        compiled[name] = renderer
    return compiled, problems


def map_response(mapping: dict[str, Renderer], answer: Any, *, node: str) -> dict[str, Any]:
    """The output `mapping` picks from `answer`; a template that does not fit the answer is
    an error naming its field and showing the answer."""
    context = {"response": answer}
    out: dict[str, Any] = {}
    for name, renderer in mapping.items():
        try:
            out[name] = renderer(context)
        except TemplateError as exc:
            shown = _snippet(json.dumps(answer, default=str))
            raise NodeError(f"config.output_mapping.{name}: {exc.problem.message}; the answer was {shown}", node=node, retryable=False) from None
    return out


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return repr(text[:limit] + ("..." if len(text) > limit else ""))
