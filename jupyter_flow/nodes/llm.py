"""`llm`: a chat or text completion from any OpenAI-compatible server (vLLM, Ollama, TGI,
LiteLLM, `transformers serve`, OpenAI itself).

Streaming is on by default: while the answer arrives, the text so far is kept in the
node record's ``extra["partial_text"]`` (the workbench inspector shows it live), and the
time to the first token lands in ``extra["ttft_s"]``. The server does the batching.
"""

from __future__ import annotations

import codecs
import contextlib
import functools
import json
import os
import re
import time
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any, ClassVar

import httpx
from pydantic import model_validator

from jupyter_flow.errors import NodeError, RemoteError
from jupyter_flow.http import DEFAULT_TIMEOUT_S
from jupyter_flow.http_errors import transport_errors
from jupyter_flow.http_send import MAX_RESPONSE_BYTES, body_chunks, read_body, send
from jupyter_flow.nodes.base import Node, NodeConfig, NodeContext
from jupyter_flow.nodes.http import ResponseBytes, Secrets, call_error, env_names
from jupyter_flow.spec import RetrySpec
from jupyter_flow.workers import within

__all__ = ["LlmCall", "LlmConfig", "LlmNode"]


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
    #: bytes of the answer (a stream's included) read at most: a larger one fails the node
    max_response_bytes: ResponseBytes = MAX_RESPONSE_BYTES

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


@dataclass(frozen=True)
class LlmCall:
    """One request to the server: the `url` it goes to (`where`, as messages show it: no
    value from the environment), its JSON `body` and `headers`, and the `secrets` that
    went into them, kept out of every message."""

    url: str
    where: str
    body: dict[str, Any]
    headers: dict[str, str]
    secrets: Secrets


class LlmNode(Node):
    """POST to `base_url` + `/chat/completions` (`messages`) or `/completions` (`prompt`).

    Output: `{"text", "finish_reason", "usage"}`. A 429 or 5xx answer, a refused
    connection, a timeout or a stream cut short is retried (3 attempts unless the node
    sets `retry`); any other error answer is not, and its message names the server's own
    explanation. An answer over `max_response_bytes` fails the node.
    """

    kind = "llm"
    Config = LlmConfig
    config: LlmConfig
    default_retry: ClassVar[RetrySpec | None] = RetrySpec(max_attempts=3, backoff_s=0.5)

    def describe(self) -> str:
        if self.spec.description or self.spec.title:
            return super().describe()
        return f"asks `{self.config.model}` at `{self.config.base_url}`"

    @functools.cached_property
    def _env_names(self) -> frozenset[str]:
        """The variables the config names (the config never changes: worked out once)."""
        return env_names(self.config.model_dump())

    def _request(self, inputs: dict[str, Any]) -> LlmCall:
        secrets = Secrets(self.id, allowed=self._env_names)
        base = secrets.expand(str(inputs["base_url"]), "config.base_url")
        body: dict[str, Any] = {"model": str(inputs["model"])}
        if inputs.get("messages") is not None:
            path = "/chat/completions"
            body["messages"] = [{**m, "content": m["content"] if isinstance(m["content"], (str, list)) else str(m["content"])}
                                for m in inputs["messages"]]
        else:
            path = "/completions"
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
        headers = secrets.headers(inputs.get("headers") or {})
        key_env = inputs.get("api_key_env")
        if key_env:
            secret = os.environ.get(str(key_env))
            if secret is None:
                raise NodeError(f"environment variable {key_env} (config.api_key_env) is not set", node=self.id, retryable=False)
            secrets.keep(secret)
            headers.setdefault("Authorization", f"Bearer {secret}")
        return LlmCall(base.value.rstrip("/") + path, base.shown.rstrip("/") + path, body, headers, secrets)

    def _status_error(self, call: LlmCall, status: int, text: str) -> RemoteError:
        return RemoteError(
            call.secrets.mask(f"{call.where} answered HTTP {status}: {_server_message(text)}"),
            node=self.id,
            status_code=status,
            retryable=status >= 500 or status in (408, 429),
        )

    def _protocol_error(self, call: LlmCall, message: str, *, retryable: bool = False) -> RemoteError:
        return RemoteError(call.secrets.mask(f"{call.where} {message}"), node=self.id, retryable=retryable)

    async def run(self, inputs: dict[str, Any], ctx: NodeContext) -> Any:
        call = self._request(inputs)
        timeout = self.spec.timeout_s or DEFAULT_TIMEOUT_S
        ctx.record.extra["stream"] = call.body["stream"]
        try:
            work = self._stream(call, timeout, ctx) if call.body["stream"] else self._complete(call, timeout, ctx)
            # one deadline for the whole answer, however slowly it trickles in
            return await within(work, timeout)
        except _TRANSPORT_ERRORS as exc:
            raise call_error(exc, call.where, timeout, node=self.id, secrets=call.secrets) from call.secrets.cause(exc)

    async def _complete(self, call: LlmCall, timeout: float, ctx: NodeContext) -> dict[str, Any]:
        answer = await self._answer(call, timeout, ctx)
        try:
            text, finish_reason = _read_choice(answer["choices"][0], 0, "message")
        except ValueError as exc:
            raise self._protocol_error(call, f"answered a choice that is not the protocol's: {exc}") from None
        return {"text": text or "", "finish_reason": finish_reason, "usage": answer.get("usage")}

    async def _answer(self, call: LlmCall, timeout: float, ctx: NodeContext) -> dict[str, Any]:
        """A whole (not streamed) answer's JSON, whose first choice is an object, read
        within `timeout` and the node's `max_response_bytes`."""
        response = await send(ctx.http, "POST", call.url, json=call.body, headers=call.headers, timeout_s=timeout,
                              max_bytes=self.config.max_response_bytes)
        ctx.record.extra["http_status"] = response.status_code
        if response.status_code >= 400:
            raise self._status_error(call, response.status_code, response.text)
        try:
            answer = response.json()
            if not isinstance(answer["choices"][0], dict):
                raise TypeError("a choice is an object")
        except (ValueError, KeyError, IndexError, TypeError):
            raise self._protocol_error(call, f"answered without `choices`: {_server_message(response.text)}") from None
        return dict(answer)

    async def _stream(self, call: LlmCall, timeout: float, ctx: NodeContext) -> dict[str, Any]:
        extra = ctx.record.extra
        started = time.perf_counter()
        parts: list[str] = []
        finish_reason: str | None = None
        usage: Any = None
        done = False
        partial = _Partial(extra)
        limit = self.config.max_response_bytes
        async with ctx.http.stream("POST", call.url, json=call.body, headers=call.headers, timeout=httpx.Timeout(timeout)) as response:
            extra["http_status"] = response.status_code
            if response.status_code >= 400:
                raise self._status_error(call, response.status_code, (await read_body(response, limit)).decode("utf-8", "replace"))
            extra["partial_text"] = ""
            async with contextlib.aclosing(_lines(response, limit)) as lines:
                async for line in lines:
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        done = True
                        break
                    try:
                        chunk = json.loads(data)
                    except ValueError:
                        raise self._protocol_error(call, f"streamed a line that is not JSON: {data[:200]!r}") from None
                    if isinstance(chunk, dict) and chunk.get("error"):
                        raise self._protocol_error(call, f"reported an error mid-answer: {_server_message(data)}", retryable=True)
                    try:
                        pieces, reason, said_usage = _read_chunk(chunk)
                    except ValueError as exc:
                        raise self._protocol_error(call, f"streamed a chunk that is not the protocol's: {exc}: {data[:200]!r}") from None
                    usage = said_usage or usage
                    finish_reason = reason or finish_reason
                    for piece in pieces:
                        if not parts:
                            extra["ttft_s"] = time.perf_counter() - started
                        parts.append(piece)
                        partial.grew(parts, len(piece))
        text = "".join(parts)
        if not done and finish_reason is None:
            raise self._protocol_error(call, f"sent {len(text)} characters, then the stream ended before the answer was complete "
                                             "(no finish_reason and no [DONE])", retryable=True)
        extra.pop("partial_text", None)
        return {"text": text, "finish_reason": finish_reason, "usage": usage}


_TRANSPORT_ERRORS = transport_errors()
#: an event stream ends its lines with CR LF, LF or CR
_LINE_END = re.compile(r"\r\n|\r|\n")
#: seconds between updates of the partial text, unless it grew by an eighth since the last
_PARTIAL_EVERY_S = 0.05


async def _lines(response: httpx.Response, max_bytes: int) -> AsyncGenerator[str, None]:
    """The lines of a streamed answer as they arrive, read within `max_bytes` (a line cut
    between chunks is joined; a line never ended is bounded by the same bytes)."""
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    pending = ""
    async with contextlib.aclosing(body_chunks(response, max_bytes)) as chunks:
        async for chunk in chunks:
            *ended, pending = _LINE_END.split(pending + decoder.decode(chunk))
            for line in ended:
                yield line
    pending += decoder.decode(b"", final=True)
    if pending:
        yield pending


class _Partial:
    """The text so far in the record's ``extra["partial_text"]``, joined again when it grew
    by an eighth or after `_PARTIAL_EVERY_S`: live for the inspector, linear in the length
    of the answer (a join per piece would be quadratic)."""

    def __init__(self, extra: dict[str, Any]) -> None:
        self.extra = extra
        self.length = 0
        self.shown = 0
        self.at = time.perf_counter()

    def grew(self, parts: list[str], by: int) -> None:
        self.length += by
        now = time.perf_counter()
        if self.length * 8 >= self.shown * 9 or now - self.at >= _PARTIAL_EVERY_S:
            self.extra["partial_text"] = "".join(parts)
            self.shown, self.at = self.length, now


def _read_chunk(chunk: Any) -> tuple[list[str], str | None, Any]:
    """The text pieces, finish reason and usage of one streamed chunk; `ValueError`
    saying what in it is not the protocol's."""
    if not isinstance(chunk, dict):
        raise ValueError(f"it is not an object but {type(chunk).__name__}")
    choices = chunk.get("choices")
    if choices is None:
        choices = []
    if not isinstance(choices, list):
        raise ValueError(f"`choices` is not a list but {type(choices).__name__}")
    pieces: list[str] = []
    finish_reason: str | None = None
    for i, choice in enumerate(choices):
        piece, reason = _read_choice(choice, i, "delta")
        if piece:
            pieces.append(piece)
        finish_reason = reason or finish_reason
    return pieces, finish_reason, chunk.get("usage")


def _read_choice(choice: Any, i: int, part: str) -> tuple[str | None, str | None]:
    """The text and finish reason of `choices[i]`, whose text is in `part` (``message``
    for a whole answer, ``delta`` for a chunk), else in ``text`` (a completion);
    `ValueError` saying what is not the protocol's."""
    if not isinstance(choice, dict):
        raise ValueError(f"`choices[{i}]` is not an object but {type(choice).__name__}")
    if part in choice:
        holder = choice[part] if choice[part] is not None else {}
        if not isinstance(holder, dict):
            raise ValueError(f"`choices[{i}].{part}` is not an object but {type(holder).__name__}")
        text, name = holder.get("content"), f"choices[{i}].{part}.content"
    else:
        text, name = choice.get("text"), f"choices[{i}].text"
    if text is not None and not isinstance(text, str):
        raise ValueError(f"`{name}` is not text but {type(text).__name__}")
    reason = choice.get("finish_reason")
    if reason is not None and not isinstance(reason, str):
        raise ValueError(f"`choices[{i}].finish_reason` is not text but {type(reason).__name__}")
    return text, reason
