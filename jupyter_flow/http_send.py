"""One HTTP call read in full, within one deadline for the whole call and one bound on the
bytes of its answer: how the `http`, `inference` and `llm` nodes call out. The call goes
through the client like any other (its redirects, cookies, auth, event hooks and
transport apply); the answer is an `httpx.Response`, read.

Every answer a node reads is read through `body_chunks` (`send` for a whole answer, the
`llm` node for a stream), which stops at the node's `max_response_bytes`
(`MAX_RESPONSE_BYTES` unless it sets one) with `AnswerTooLarge`: an answer whose
Content-Length is over the bound is refused before any of its body is read, and one that
goes on past it stops there. The bound counts the bytes the body decodes to (a
compressed answer cannot slip past it)."""

from __future__ import annotations

import builtins
import functools
import json as _json
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import httpx

from jupyter_flow.http import DEFAULT_TIMEOUT_S
from jupyter_flow.http_errors import AnswerTooLarge, UnsendableRequest
from jupyter_flow.workers import Deadline

__all__ = ["MAX_RESPONSE_BYTES", "Answer", "body_chunks", "read_body", "send"]

#: Bytes of one answer read at most (as its body decodes), unless the node's
#: `max_response_bytes` says otherwise.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024

#: An answer read in full: status, headers (`dict(answer.headers)` gives names in lower
#: case, repeated ones joined with ", "), `content`, `text` (the charset the answer names,
#: else UTF-8; bytes that do not decode become U+FFFD) and `json()`.
Answer = httpx.Response

_NO_BODY = object()
#: JSON as httpx encodes a `json=` body (UTF-8, compact, no NaN), one encoder for all calls
_ENCODE_JSON = _json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode
#: the content type httpx sends with a `json=` body (shared: never changed)
_JSON_TYPE: Mapping[str, str] = {"content-type": "application/json"}
#: no timeout per phase of the call: the deadline bounds the whole of it (shared: httpx
#: copies a request's extensions)
_WHOLE_CALL: Mapping[str, Any] = {"timeout": httpx.Timeout(None).as_dict()}


async def send(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    *,
    json: Any = _NO_BODY,
    content: str | bytes | None = None,
    form: dict[str, str] | None = None,
    params: Mapping[str, Any] | None = None,
    headers: Mapping[str, str] | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    max_bytes: int = MAX_RESPONSE_BYTES,
) -> Answer:
    """One request read in full, within `timeout_s` seconds in all (a server trickling its
    answer does not hold the call past it: `asyncio.TimeoutError`) and `max_bytes` bytes
    of answer (`AnswerTooLarge` past them). A `json=` body is encoded before anything is
    sent (a value JSON cannot carry raises `ValueError` or `UnicodeEncodeError`); a request
    httpx cannot build as given raises `UnsendableRequest`; a call that fails raises httpx's
    errors (`jupyter_flow.http_errors`)."""
    body = None if json is _NO_BODY or json is None else _ENCODE_JSON(json).encode("utf-8")  # as httpx encodes `json=`
    if body is not None and not (headers and any(name.lower() == "content-type" for name in headers)):
        headers = {**_JSON_TYPE, **headers} if headers else _JSON_TYPE  # as httpx sets it for `json=`
    with Deadline(timeout_s):
        try:
            request = client.build_request(method, _url(url), content=body if content is None else content, data=form,
                                           params=params, headers=headers, extensions=_WHOLE_CALL)
            response = await client.send(request, stream=True)
        except _REFUSED as exc:
            while isinstance(exc, _GROUPS):  # what went wrong, inside the group
                exc = exc.exceptions[0]  # type: ignore[attr-defined]
            raise UnsendableRequest(" ".join(str(exc).split()) or type(exc).__name__) from exc
        try:
            return _read(response, await read_body(response, max_bytes))
        finally:
            await response.aclose()


async def body_chunks(response: httpx.Response, max_bytes: int) -> AsyncGenerator[bytes, None]:
    """The body of a streamed `response` as it arrives, decoded as its Content-Encoding
    says; `AnswerTooLarge` before anything is read when its Content-Length is over
    `max_bytes`, or as soon as more than `max_bytes` bytes have arrived."""
    declared = response.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise AnswerTooLarge(f"its Content-Length is {int(declared)} bytes, over the bound of {max_bytes} bytes "
                             f"(max_response_bytes; raise it to read such answers)", limit=max_bytes, request=response.request)
    read = 0
    async for chunk in response.aiter_bytes():
        read += len(chunk)
        if read > max_bytes:
            raise AnswerTooLarge(f"more than {max_bytes} bytes arrived and reading stopped there "
                                 f"(max_response_bytes; raise it to read such answers)", limit=max_bytes, request=response.request)
        yield chunk


async def read_body(response: httpx.Response, max_bytes: int) -> bytes:
    """The whole body of a streamed `response`, within `max_bytes` (`body_chunks`)."""
    return b"".join([chunk async for chunk in body_chunks(response, max_bytes)])


def _read(response: httpx.Response, body: bytes) -> Answer:
    """`response` as an answer read in full: its status, headers, request and extensions,
    with `body` (already decoded) as its content."""
    answer = httpx.Response(response.status_code, content=body, request=response.request, extensions=response.extensions)
    answer.headers = response.headers  # after the body is set: it is not decoded again
    answer.history = response.history
    return answer


#: a group of errors (Python 3.11+): httpx's own transport raises one for some requests
#: it cannot send (a port out of range), from the task group that connects
_GROUPS: tuple[type[BaseException], ...] = tuple(k for k in (getattr(builtins, "ExceptionGroup", None),) if k is not None)
#: what httpx's models (a URL they cannot parse, a header they cannot encode) and httpx's
#: own transport raise for a request that cannot be sent as given; the aiohttp transport
#: raises `httpx.LocalProtocolError` for these
_REFUSED: tuple[type[BaseException], ...] = (httpx.InvalidURL, ValueError, OverflowError, *_GROUPS)


@functools.lru_cache(maxsize=512)
def _url(url: str) -> httpx.URL:
    """`url` parsed by httpx, once per URL (a flow calls the same few again and again;
    httpx's URLs do not change)."""
    return httpx.URL(url)
