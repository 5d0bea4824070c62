"""`http`: call a remote model endpoint with JSON in and JSON out."""

from __future__ import annotations

import asyncio
import json
import os
import re
from typing import Any, Literal

import httpx

from jupyter_flow.errors import NodeError, RemoteError
from jupyter_flow.http import DEFAULT_TIMEOUT_S, describe_error
from jupyter_flow.nodes.base import Node, NodeConfig, NodeContext

__all__ = ["HttpNode", "expand_env"]

_ENV_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand_env(text: str, *, node: str, field: str) -> str:
    """Expand `${VAR}` from the environment at run time; a missing variable is an error."""

    def sub(match: re.Match[str]) -> str:
        name = match.group(1)
        value = os.environ.get(name)
        if value is None:
            raise NodeError(
                f"environment variable {name} (used in {field}) is not set", node=node, retryable=False
            )
        return value

    return _ENV_VAR.sub(sub, text)


class HttpConfig(NodeConfig):
    endpoint: str
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE", "get", "post", "put", "patch", "delete"] = "POST"
    input_mapping: dict[str, Any] | None = None
    body: Any = None
    params: dict[str, Any] | None = None
    headers: dict[str, str] = {}
    output_key: str | None = None


class HttpNode(Node):
    """POST (by default) the `input_mapping` as JSON to `endpoint`; the JSON answer is the output.

    `output_key` names the field the node publishes its result under: an object answer that
    already has that field is used as is, anything else is wrapped as `{output_key: answer}`.
    Connection errors, timeouts and 5xx answers are retryable; 4xx and non-JSON are not.
    """

    kind = "http"
    Config = HttpConfig
    config: HttpConfig

    def describe(self) -> str:
        if self.spec.description or self.spec.title:
            return super().describe()
        return f"{self.config.method.upper()} `{self.config.endpoint}`"

    async def run(self, inputs: dict[str, Any], ctx: NodeContext) -> Any:
        endpoint = expand_env(str(inputs["endpoint"]), node=self.id, field="config.endpoint")
        headers = {
            k: expand_env(str(v), node=self.id, field=f"config.headers.{k}") for k, v in (inputs.get("headers") or {}).items()
        }
        method = str(inputs.get("method") or "POST").upper()
        payload = inputs.get("input_mapping")
        if inputs.get("body") is not None:
            payload = inputs["body"]
        params = inputs.get("params")
        if method == "GET" and payload is not None and params is None:
            params, payload = payload, None
        timeout = self.spec.timeout_s or DEFAULT_TIMEOUT_S
        try:
            # the deadline is for the whole call: a server trickling its answer a byte at a
            # time does not hold the node past it
            response = await asyncio.wait_for(
                ctx.http.request(method, endpoint, json=payload, params=params, headers=headers, timeout=httpx.Timeout(timeout)),
                timeout,
            )
        except (httpx.HTTPError, asyncio.TimeoutError) as exc:
            raise RemoteError(describe_error(exc, endpoint, timeout), node=self.id) from exc
        ctx.record.extra["http_status"] = response.status_code
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
        key = inputs.get("output_key")
        if key:
            return answer if isinstance(answer, dict) and key in answer else {key: answer}
        return answer if isinstance(answer, dict) else {"result": answer}


def _snippet(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return repr(text[:limit] + ("..." if len(text) > limit else ""))
