"""`llm`: a chat or text completion from any OpenAI-compatible server (vLLM, Ollama, TGI,
LiteLLM, `transformers serve`, OpenAI itself).

Streaming is on by default: while the answer arrives, the text so far is kept in the
node record's ``extra["partial_text"]`` (the workbench inspector shows it live), and the
time to the first token lands in ``extra["ttft_s"]``. The server does the batching.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from typing import Any, ClassVar

import httpx
from pydantic import model_validator

from jupyter_flow.errors import NodeError, RemoteError
from jupyter_flow.http import DEFAULT_TIMEOUT_S
from jupyter_flow.http_errors import describe_error
from jupyter_flow.nodes.base import Node, NodeConfig, NodeContext
from jupyter_flow.nodes.http import expand_env
from jupyter_flow.spec import RetrySpec
from jupyter_flow.workers import within

__all__ = ["LlmConfig", "LlmNode"]


class LlmConfig(NodeConfig):
    base_url: str
    model: str
    messages: list[dict[str, Any]] | None = None
    prompt: Any = None
    temperature: Any = None
    max_tokens: Any = None
    top_p: Any = None
    stop: Any = None
    response_format: Any = None
    stream: bool = True
    api_key_env: str | None = None
    headers: dict[str, str] = {}
    extra_body: dict[str, Any] = {}

    @model_validator(mode="after")
    def _one_input(self) -> LlmConfig:
        if (self.messages is None) == (self.prompt is None):
            raise ValueError("give either `messages` (a list of {role, content}) or `prompt`, not both and not neither")
        for i, message in enumerate(self.messages or []):
            if not isinstance(message, dict) or "role" not in message or "content" not in message:
                raise ValueError(f"messages[{i}] needs `role` and `content`, e.g. {{role: user, content: '{{{{ question }}}}'}}")
        return self


def _server_message(text: str) -> str:
    """The error an OpenAI-compatible server put in its answer, or the answer's start."""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict) and error.get("message"):
            return str(error["message"])
        if isinstance(error, str):
            return error
        if body.get("detail"):
            return str(body["detail"])
        if body.get("message"):
            return str(body["message"])
    text = " ".join(text.split())
    return repr(text[:200] + ("..." if len(text) > 200 else ""))


class LlmNode(Node):
    """POST to `base_url` + `/chat/completions` (`messages`) or `/completions` (`prompt`).

    Output: `{"text", "finish_reason", "usage"}`. A 429 or 5xx answer, a refused
    connection or a timeout is retried (3 attempts unless the node sets `retry`); any other
    error answer is not, and its message names the server's own explanation.
    """

    kind = "llm"
    Config = LlmConfig
    config: LlmConfig
    default_retry: ClassVar[RetrySpec | None] = RetrySpec(max_attempts=3, backoff_s=0.5)

    def describe(self) -> str:
        if self.spec.description or self.spec.title:
            return super().describe()
        return f"asks `{self.config.model}` at `{self.config.base_url}`"

    def _request(self, inputs: dict[str, Any]) -> tuple[str, dict[str, Any], dict[str, str]]:
        base = expand_env(str(inputs["base_url"]), node=self.id, field="config.base_url").rstrip("/")
        body: dict[str, Any] = {"model": str(inputs["model"])}
        if inputs.get("messages") is not None:
            url = f"{base}/chat/completions"
            body["messages"] = [{**m, "content": m["content"] if isinstance(m["content"], (str, list)) else str(m["content"])}
                                for m in inputs["messages"]]
        else:
            url = f"{base}/completions"
            body["prompt"] = inputs["prompt"] if isinstance(inputs["prompt"], (str, list)) else str(inputs["prompt"])
        for key in ("temperature", "max_tokens", "top_p", "stop", "response_format"):
            if inputs.get(key) not in (None, ""):
                body[key] = inputs[key]
        if isinstance(body.get("response_format"), str):
            body["response_format"] = {"type": body["response_format"]}
        body.update(inputs.get("extra_body") or {})
        body["stream"] = bool(inputs.get("stream", True))
        if body["stream"]:
            body["stream_options"] = {"include_usage": True}
        headers = {k: expand_env(str(v), node=self.id, field=f"config.headers.{k}") for k, v in (inputs.get("headers") or {}).items()}
        key_env = inputs.get("api_key_env")
        if key_env:
            secret = os.environ.get(str(key_env))
            if secret is None:
                raise NodeError(f"environment variable {key_env} (config.api_key_env) is not set", node=self.id, retryable=False)
            headers.setdefault("Authorization", f"Bearer {secret}")
        return url, body, headers

    def _status_error(self, url: str, status: int, text: str) -> RemoteError:
        return RemoteError(
            f"{url} answered HTTP {status}: {_server_message(text)}",
            node=self.id,
            status_code=status,
            retryable=status >= 500 or status in (408, 429),
        )

    async def run(self, inputs: dict[str, Any], ctx: NodeContext) -> Any:
        url, body, headers = self._request(inputs)
        timeout = self.spec.timeout_s or DEFAULT_TIMEOUT_S
        ctx.record.extra["stream"] = body["stream"]
        try:
            call = self._stream(url, body, headers, timeout, ctx) if body["stream"] else self._complete(url, body, headers, timeout, ctx)
            # one deadline for the whole answer, however slowly it trickles in
            return await within(call, timeout)
        except (httpx.HTTPError, asyncio.TimeoutError) as exc:
            raise RemoteError(describe_error(exc, url, timeout), node=self.id) from exc

    async def _complete(self, url: str, body: dict[str, Any], headers: dict[str, str], timeout: float, ctx: NodeContext) -> dict[str, Any]:
        answer = await self._answer(url, body, headers, timeout, ctx)
        choice = answer["choices"][0]
        message = choice.get("message") or {}
        text = message.get("content") if "message" in choice else choice.get("text")
        return {"text": text or "", "finish_reason": choice.get("finish_reason"), "usage": answer.get("usage")}

    async def _answer(self, url: str, body: dict[str, Any], headers: dict[str, str], timeout: float, ctx: NodeContext) -> dict[str, Any]:
        """A whole (not streamed) answer's JSON, whose first choice is an object."""
        response = await ctx.http.post(url, json=body, headers=headers, timeout=httpx.Timeout(timeout))
        ctx.record.extra["http_status"] = response.status_code
        if response.status_code >= 400:
            raise self._status_error(url, response.status_code, response.text)
        try:
            answer = response.json()
            if not isinstance(answer["choices"][0], dict):
                raise TypeError("a choice is an object")
        except (ValueError, KeyError, IndexError, TypeError):
            raise RemoteError(f"{url} answered without `choices`: {_server_message(response.text)}", node=self.id, retryable=False) from None
        return dict(answer)

    async def _stream(self, url: str, body: dict[str, Any], headers: dict[str, str], timeout: float, ctx: NodeContext) -> dict[str, Any]:
        extra = ctx.record.extra
        started = time.perf_counter()
        parts: list[str] = []
        finish_reason: str | None = None
        usage: Any = None
        async with ctx.http.stream("POST", url, json=body, headers=headers, timeout=httpx.Timeout(timeout)) as response:
            extra["http_status"] = response.status_code
            if response.status_code >= 400:
                raise self._status_error(url, response.status_code, (await response.aread()).decode("utf-8", "replace"))
            extra["partial_text"] = ""
            async for line in response.aiter_lines():
                if not line.startswith("data:"):
                    continue
                data = line[5:].strip()
                if data == "[DONE]":
                    break
                try:
                    chunk = json.loads(data)
                except ValueError:
                    raise RemoteError(f"{url} streamed a line that is not JSON: {data[:200]!r}", node=self.id, retryable=False) from None
                if isinstance(chunk, dict) and chunk.get("error"):
                    raise RemoteError(f"{url} reported an error mid-answer: {_server_message(data)}", node=self.id)
                usage = chunk.get("usage") or usage
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    piece = delta.get("content") if "delta" in choice else choice.get("text")
                    if piece:
                        if not parts:
                            extra["ttft_s"] = time.perf_counter() - started
                        parts.append(piece)
                        extra["partial_text"] += piece
                    finish_reason = choice.get("finish_reason") or finish_reason
        extra.pop("partial_text", None)
        return {"text": "".join(parts), "finish_reason": finish_reason, "usage": usage}
