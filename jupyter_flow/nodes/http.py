"""`http`: call a remote model endpoint with JSON in and JSON out.

Here too is what every node that calls out shares: `expand_env` (a `${VAR}` is expanded
from the environment at run time, and shown as `***`), `Secrets` (the values one call
expanded, kept out of its messages and traces), `call_error` (a failed call as the
node's error) and `ResponseBytes` (the `max_response_bytes` bound of an answer)."""

from __future__ import annotations

import asyncio
import functools
import json
import math
import re
from collections.abc import Mapping
from collections.abc import Set as AbstractSet
from typing import Annotated, Any, Literal, NamedTuple

from pydantic import Field

from jupyter_flow import environ, telemetry
from jupyter_flow.errors import NodeError, Problem, RemoteError, TemplateError
from jupyter_flow.expressions import Renderer, compile_value
from jupyter_flow.http import DEFAULT_TIMEOUT_S
from jupyter_flow.http_errors import AnswerTooLarge, describe_error, transport_errors
from jupyter_flow.http_send import MAX_RESPONSE_BYTES, Answer, send
from jupyter_flow.nodes.base import Node, NodeConfig, NodeContext
from jupyter_flow.spec import NodeSpec

__all__ = ["MASK", "Expanded", "HttpNode", "ResponseBytes", "Secrets", "call_error", "env_names", "expand_env"]

_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
#: what messages and traces show in place of a value expanded from the environment
MASK = "***"
#: values shorter than this are not looked for in other text (a `1` would be found everywhere);
#: the texts they were expanded into still are
_SHORTEST_SECRET = 4

#: a node's bound on the bytes of an answer it reads (`max_response_bytes`)
ResponseBytes = Annotated[int, Field(gt=0, description="bytes of an answer read at most; a larger answer fails the node")]


class Expanded(NamedTuple):
    """A config text with its `${VAR}` references expanded: `value` is what is sent,
    `shown` what messages and traces show (each reference as `***`), `secrets` the
    values that went in."""

    value: str
    shown: str
    secrets: tuple[str, ...] = ()


def expand_env(text: str, *, node: str, field: str, allowed: AbstractSet[str] | None = None) -> Expanded:
    """Expand `${VAR}` from the environment at run time; a missing variable is an error
    (it names the variable, never a value). With `allowed`, only those names are expanded:
    a `${VAR}` that came in through a template (a served flow's client typing
    ``${AWS_SECRET_ACCESS_KEY}`` into an input that reaches a URL) stays as it is."""
    plan = _env_plan(text, allowed if allowed is None or type(allowed) is frozenset else frozenset(allowed))
    names = plan.names
    if not names:  # nothing to expand: the text as it is
        return plan.plain  # type: ignore[return-value]
    values = (environ.get(names[0]),) if len(names) == 1 else tuple(map(environ.get, names))
    expanded = _EXPANDED.get((plan, values))
    if expanded is None:
        if None in values:
            name = names[values.index(None)]
            raise NodeError(f"environment variable {name} (used in {field}) is not set", node=node, retryable=False)
        expanded = _expanded(plan, values)  # type: ignore[arg-type]  # every value is set
    return expanded


class _EnvPlan(NamedTuple):
    """A text split at its `${VAR}` references (literal, name, ..., literal), the names to
    expand in it (in order; those outside `allowed` stay as written), and the text as its
    own expansion (`plain`) when there is none."""

    parts: tuple[str, ...]
    names: tuple[str, ...]
    plain: Expanded | None


@functools.lru_cache(maxsize=1024)
def _env_plan(text: str, allowed: frozenset[str] | None) -> _EnvPlan:
    """How `text` expands under `allowed`, worked out once per text (a node expands the
    same endpoint and headers on every call)."""
    parts = tuple(_ENV_VAR.split(text)) if "${" in text else (text,)
    if allowed is not None:  # a name outside `allowed` stays as written, in the literal around it
        merged = [parts[0]]
        for i in range(1, len(parts), 2):
            if parts[i] in allowed:
                merged += (parts[i], parts[i + 1])
            else:
                merged[-1] += "${" + parts[i] + "}" + parts[i + 1]
        parts = tuple(merged)
    names = parts[1::2]
    return _EnvPlan(parts, names, None if names else Expanded(text, text))


#: expansions by plan and the values that went in (the same few, call after call)
_EXPANDED: dict[tuple[_EnvPlan, tuple[str | None, ...]], Expanded] = {}
_EXPANDED_KEPT = 256


def _expanded(plan: _EnvPlan, values: tuple[str, ...]) -> Expanded:
    parts = plan.parts
    out = [parts[0]]
    for value, literal in zip(values, parts[2::2]):
        out += (value, literal)
    expanded = Expanded("".join(out), MASK.join(parts[0::2]), values)
    if len(_EXPANDED) >= _EXPANDED_KEPT:
        _EXPANDED.clear()
    _EXPANDED[(plan, values)] = expanded
    return expanded


def env_names(written: Any) -> frozenset[str]:
    """The `${VAR}` names a node's config, as the flow file wrote it, refers to."""
    return frozenset(_ENV_VAR.findall(json.dumps(written, default=str)))


@functools.lru_cache(maxsize=256)
def _secret_forms(secret: str) -> tuple[str, ...]:
    """The forms of `secret` that messages may quote: as given, without the line break a
    key file ends with, and as a repr quotes it (those long enough to look for), worked
    out once per value (a flow expands the same few on every call)."""
    forms = (secret, secret.strip(), secret.encode("unicode_escape").decode("ascii"))
    return tuple(dict.fromkeys(form for form in forms if len(form) >= _SHORTEST_SECRET))


class Secrets:
    """What one call expanded from the environment, kept out of every message it gives:
    `expand` is `expand_env` remembering what went in, `mask` puts `***` in its place in
    any text (a server's error that echoes the key, a library's error that quotes a
    header), and `cause` is the error to chain a node's error to (none once a secret was
    expanded: a trace records the chain's messages)."""

    __slots__ = ("node", "allowed", "_went", "_table")

    def __init__(self, node: str, written: Any = None, *, allowed: frozenset[str] | None = None) -> None:
        self.node = node
        #: the variables the flow file itself names in the node's config (`written`, before
        #: templates, or `allowed`, those names worked out once by `env_names`): the only
        #: ones expanded; None when the caller gives neither
        self.allowed: frozenset[str] | None = allowed if written is None else env_names(written)
        #: what went in, in order: expansions with values from the environment, and secrets
        #: kept (`keep`); the table of their shown forms is made when a message needs it
        self._went: list[Expanded | str] = []
        self._table: dict[str, str] | None = None

    def expand(self, text: str, field: str) -> Expanded:
        expanded = expand_env(text, node=self.node, field=field, allowed=self.allowed)
        if expanded.secrets:
            self._went.append(expanded)
            self._table = None
        return expanded

    def keep(self, secret: str) -> None:
        """Keep `secret`, read from the environment some other way, out of messages too."""
        self._went.append(secret)
        self._table = None

    def _shown(self) -> dict[str, str]:
        """Text that went out -> its shown form: each expanded text as shown, and each form of
        each secret in it (`_secret_forms`) as `***`."""
        table = self._table
        if table is None:
            table = self._table = {}
            for went in self._went:
                if isinstance(went, str):
                    secrets: tuple[str, ...] = (went,)
                else:
                    table[went.value] = went.shown
                    secrets = went.secrets
                for secret in secrets:
                    for form in _secret_forms(secret):
                        table[form] = MASK
        return table

    def headers(self, given: Mapping[str, Any], field: str = "config.headers") -> dict[str, str]:
        """Header values with their references expanded."""
        return {k: self.expand(str(v), f"{field}.{k}").value for k, v in given.items()}

    def mask(self, text: str) -> str:
        """`text` with every value this call expanded shown as `***` (the longest first)."""
        shown = self._shown()
        for value in sorted(shown, key=len, reverse=True):
            text = text.replace(value, shown[value])
        return text

    def cause(self, exc: BaseException) -> BaseException | None:
        """`exc`, or None once a value was expanded (its message may quote it)."""
        return None if self._shown() else exc


def call_error(exc: BaseException, endpoint: str, timeout: float, *, node: str, secrets: Secrets) -> RemoteError:
    """A call that failed (one of `transport_errors()`) as the node's error, naming
    `endpoint` as shown; an answer over the node's bound is not tried again."""
    return RemoteError(secrets.mask(describe_error(exc, endpoint, timeout)), node=node,
                       retryable=False if isinstance(exc, AnswerTooLarge) else None)


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
    #: bytes of the answer read at most: a larger one fails the node (refused before
    #: reading when its Content-Length says so)
    max_response_bytes: ResponseBytes = MAX_RESPONSE_BYTES


class HttpNode(Node):
    """POST (by default) the `input_mapping` as JSON to `endpoint`; the JSON answer is the output.

    `output_key` names the field the node publishes its result under: an object answer that
    already has that field is used as is, anything else is wrapped as `{output_key: answer}`.
    `output_mapping` picks the output out of the answer instead: each name gets its
    template's value, evaluated over the answer (`response`).
    Connection errors, timeouts and 5xx answers are retryable; 4xx, non-JSON and answers
    over `max_response_bytes` are not. Messages show each `${VAR}` of the endpoint as `***`.
    """

    kind = "http"
    Config = HttpConfig
    config: HttpConfig
    own_templates = frozenset({"output_mapping"})
    keeps_own_deadline = True  # the whole call, Retry-After waits included, ends by timeout_s

    def __init__(self, spec: NodeSpec) -> None:
        super().__init__(spec)
        self._mapping, self._mapping_problems = compile_response_mapping(self.config.output_mapping, node=self.id)
        self._env_names = env_names(self.config.model_dump())  # the config never changes: read once
        #: the last endpoint expanded, with the Secrets of a call that expanded nothing else
        self._last_endpoint: tuple[Expanded, Secrets] | None = None

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
        given = inputs.get("headers")
        if given:
            secrets = Secrets(self.id, allowed=self._env_names)
            endpoint = secrets.expand(str(inputs["endpoint"]), "config.endpoint")
            headers: dict[str, str] | None = secrets.headers(given)
        else:
            endpoint, secrets = self._endpoint(str(inputs["endpoint"]))
            headers = None
        where = endpoint.shown  # what messages say: no value from the environment
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
                response = await send(ctx.http, method, endpoint.value, json=payload, content=content, form=form, params=params,
                                      headers=headers, timeout_s=max(deadline - loop.time(), 0.001),
                                      max_bytes=self.config.max_response_bytes)
            except _TRANSPORT_ERRORS as exc:
                raise call_error(exc, where, timeout, node=self.id, secrets=secrets) from secrets.cause(exc)
            wait = retry_after(response) if wait_when_asked else None
            if wait is None or waits >= _MAX_RETRY_AFTER_WAITS:
                break
            self._check_wait(ctx, where, response, wait, deadline - loop.time(), timeout, secrets)
            waits += 1
            ctx.record.extra["retry_after_waits"] = waits
            await asyncio.sleep(wait)
        ctx.record.extra["http_status"] = response.status_code
        if inputs.get("response") == "full":
            full = {"status_code": response.status_code, "body": response.text, "headers": dict(response.headers)}
            return map_response(self._mapping, full, node=self.id, secrets=secrets) if self._mapping else full
        if response.status_code >= 400:
            raise self._unusable(response, where, "", secrets, retryable=response.status_code >= 500 or response.status_code in (408, 429))
        try:
            answer = response.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            ctype = response.headers.get("content-type", "none")
            raise self._unusable(response, where, f" with something that is not JSON (content-type {ctype})", secrets,
                                 retryable=False) from None
        if self._mapping:
            answer = map_response(self._mapping, answer, node=self.id, secrets=secrets)
        key = inputs.get("output_key")
        if key:
            return answer if isinstance(answer, dict) and key in answer else {key: answer}
        return answer if isinstance(answer, dict) else {"result": answer}

    def _endpoint(self, text: str) -> tuple[Expanded, Secrets]:
        """`text` expanded, and the Secrets of a call that expands nothing else: the same
        pair as the last call's while the expansion is the same (a node calls one endpoint
        call after call, and such a Secrets is only read from then on)."""
        expanded = expand_env(text, node=self.id, field="config.endpoint", allowed=self._env_names)
        last = self._last_endpoint
        if last is None or last[0] is not expanded:
            secrets = Secrets(self.id, allowed=self._env_names)
            last = self._last_endpoint = (secrets.expand(text, "config.endpoint"), secrets)
        return last

    def _check_wait(self, ctx: NodeContext, where: str, response: Answer, wait: float, left: float, timeout: float,
                    secrets: Secrets) -> None:
        """A 429 or 503 with `Retry-After` is sent again after the wait the server asks for
        while that wait is a number of seconds (finite, 0 or more) that ends before the
        deadline; any other fails the node at once (no quicker retry the server asked not
        to get, no wait past the deadline)."""
        ctx.record.extra["retry_after_s"] = wait if math.isfinite(wait) else str(wait)
        if not (math.isfinite(wait) and wait >= 0):
            why = "which is no number of seconds to wait (Retry-After gives a finite number, 0 or more)"
        elif wait >= left:
            why = f"past the node's deadline ({max(left, 0):.1f} s left of timeout_s={timeout:g})"
        else:
            return
        raise self._unusable(response, where, f" and asked to wait {wait:g} s before retrying, {why}", secrets, retryable=False)

    def _unusable(self, response: Answer, where: str, what: str, secrets: Secrets, *, retryable: bool) -> RemoteError:
        """An answer the node cannot use, as its error: "`where` answered HTTP <status>`what`:
        <the start of the body>", with what the call expanded masked."""
        return RemoteError(secrets.mask(f"{where} answered HTTP {response.status_code}{what}: {_snippet(response.text)}"),
                           node=self.id, status_code=response.status_code, retryable=retryable)


_MAX_RETRY_AFTER_WAITS = 10
_TRANSPORT_ERRORS = transport_errors()


def retry_after(response: Answer) -> float | None:
    """Seconds a 429 or 503 answer asks the client to wait (`Retry-After` in seconds, as
    given: it may be negative, infinite or NaN; or as an HTTP date, 0 once it has passed);
    None when it does not ask."""
    if response.status_code not in (429, 503):
        return None
    value = response.headers.get("retry-after", "").strip()
    if not value:
        return None
    try:
        return float(value)
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


def map_response(mapping: dict[str, Renderer], answer: Any, *, node: str, secrets: Secrets | None = None) -> dict[str, Any]:
    """The output `mapping` picks from `answer`; a template that does not fit the answer is
    an error naming its field and showing the answer (with `secrets` masked)."""
    context = {"response": answer}
    out: dict[str, Any] = {}
    for name, renderer in mapping.items():
        try:
            out[name] = renderer(context)
        except TemplateError as exc:
            shown = _snippet(json.dumps(answer, default=str))
            if secrets is not None:
                shown = secrets.mask(shown)
            raise NodeError(f"config.output_mapping.{name}: {exc.problem.message}; the answer was {shown}", node=node, retryable=False) from None
    return out


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return repr(text[:limit] + ("..." if len(text) > limit else ""))
