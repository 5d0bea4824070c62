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
from jupyter_flow.http_client import FlowClient
from jupyter_flow.http_errors import AnswerTooLarge, UnsendableRequest
from jupyter_flow.http_transport import PreparedHeaders, PreparedRequest, StreamedAnswer
from jupyter_flow.workers import Deadline

__all__ = ["MAX_RESPONSE_BYTES", "Answer", "WholeAnswer", "body_chunks", "read_body", "send"]

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
#: those headers as `_plain_request` keys what it works out for them (made once)
_JSON_GIVEN = tuple(_JSON_TYPE.items())
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
            if isinstance(client, FlowClient) and form is None and params is None and client.is_plain() and \
                    (plain := _plain_request(client, method, url, body if content is None else content, headers)) is not None:
                response = await client.start(plain)  # as `client.answer(plain)`, without a coroutine between
                taken = client.took(plain, response)
                response = taken if taken is not None else await client.follow(plain, response)
            else:
                request = client.build_request(method, _url(url), content=body if content is None else content, data=form,
                                               params=params, headers=headers, extensions=_WHOLE_CALL)
                response = await client.send(request, stream=True)
        except _REFUSED as exc:
            while isinstance(exc, _GROUPS):  # what went wrong, inside the group
                exc = exc.exceptions[0]  # type: ignore[attr-defined]
            raise UnsendableRequest(" ".join(str(exc).split()) or type(exc).__name__) from exc
        try:
            if type(response) is StreamedAnswer and (known := response.as_received()) is not None and not known.encoded:
                # the aiohttp transport's answer, as it came: read straight from aiohttp, kept in the answer
                if known.length is not None and known.length > max_bytes:
                    _check_length(response, max_bytes)
                try:
                    if await response.read_within(max_bytes) is None:
                        raise _past_bound(response, max_bytes)
                except httpx.RequestError as exc:  # as httpx's own reading of the stream names the request
                    exc.request = response.request
                    raise
                return response
            return await _read(response, max_bytes)
        finally:
            if not response.is_closed:  # httpx's reading closes it at the end
                await response.stream.aclose()  # type: ignore[union-attr]


def _plain_request(client: FlowClient, method: str, url: str, content: str | bytes | None,
                   headers: Mapping[str, str] | None) -> PreparedRequest | None:
    """The request `client.build_request(method, url, content=content, headers=headers)`
    builds, the same bytes in the same order, when the client adds nothing but its headers
    (the caller has checked it `is_plain()`; no query parameters of its own, an absolute
    URL with no user or password in it: else None): the URL and
    the merged headers are worked out once per URL and headers, and the body goes in as
    it is (no copy)."""
    if client.params:
        return None
    given = _JSON_GIVEN if headers is _JSON_TYPE else tuple(headers.items()) if headers else ()
    client_headers = client.headers
    key = (client_headers.stamp, url, given)  # kept under the stamp of the client's headers
    prepared = _PREPARED.get(key, _UNKNOWN)
    if prepared is _UNKNOWN:
        if len(_PREPARED) >= _PREPARED_KEPT:
            _PREPARED.clear()
        prepared = _PREPARED[key] = _prepared(client_headers, url, given)
    if prepared is None:  # a relative URL, or one with a user or password
        return None
    body = content.encode("utf-8") if isinstance(content, str) else content or b""
    return PreparedRequest(method, prepared.headers(method, len(body)), body, _WHOLE_CALL)


class _Prepared:
    """What `build_request` works out for one URL and set of headers (see `_prepared`),
    and the headers for each length of body (`Content-Length` after the others)."""

    __slots__ = ("url", "before", "empty", "length_given", "by_length")

    def __init__(self, url: httpx.URL, before: httpx.Headers, empty: httpx.Headers, length_given: bool) -> None:
        self.url, self.length_given = url, length_given
        self.before = PreparedHeaders(url, before, body=True)
        self.empty = (PreparedHeaders(url, empty, body=False), PreparedHeaders(url, before, body=False))
        self.by_length: dict[int, PreparedHeaders] = {}

    def headers(self, method: str, length: int) -> PreparedHeaders:
        if not length:
            return self.empty[0] if method.upper() in _SENT_WITH_LENGTH else self.empty[1]
        if self.length_given:
            return self.before
        headers = self.by_length.get(length)
        if headers is None:
            if len(self.by_length) >= _LENGTHS_KEPT:
                self.by_length.clear()
            made = httpx.Headers(self.before.headers)
            made["Content-Length"] = str(length)
            headers = self.by_length[length] = PreparedHeaders(self.url, made, body=True)
        return headers


#: what `_prepared` gave, by the stamp of a client's headers, the URL and the headers given
_PREPARED: dict[tuple[Any, ...], _Prepared | None] = {}
_PREPARED_KEPT = 256
_UNKNOWN: Any = object()

#: bodies of so many lengths have their headers kept per URL
_LENGTHS_KEPT = 256


#: methods httpx sends `Content-Length: 0` with when they have no body
_SENT_WITH_LENGTH = frozenset(("POST", "PUT", "PATCH"))


def _prepared(client_headers: httpx.Headers, url: str, given: tuple[tuple[str, str], ...]) -> _Prepared | None:
    """For a URL and the headers a call gives, over a client's headers: the URL, and the
    headers httpx's `build_request` makes for a body (`Host` first, the client's headers
    with the call's replacing those of the same name; `Content-Length` after them) and for
    none (with `Content-Length: 0` after `Host`, for the methods that send one). None for a
    relative URL, or one with a user or password (httpx's `send` makes them its auth)."""
    target = _url(url)
    if target.is_relative_url or target.userinfo:
        return None
    merged = httpx.Headers(client_headers.raw)
    merged.update(dict(given))
    auto = [] if "host" in merged or not target.host else [(b"Host", target.netloc)]
    length_given = "content-length" in merged or "transfer-encoding" in merged
    before = httpx.Headers(auto + merged.raw)
    empty = before if length_given else httpx.Headers([*auto, (b"Content-Length", b"0"), *merged.raw])
    return _Prepared(target, before, empty, length_given)


async def body_chunks(response: httpx.Response, max_bytes: int) -> AsyncGenerator[bytes, None]:
    """The body of a streamed `response` as it arrives, decoded as its Content-Encoding
    says; `AnswerTooLarge` before anything is read when its Content-Length is over
    `max_bytes`, or as soon as more than `max_bytes` bytes have arrived."""
    _check_length(response, max_bytes)
    read = 0
    async for chunk in response.aiter_bytes():
        read += len(chunk)
        if read > max_bytes:
            raise _past_bound(response, max_bytes)
        yield chunk


async def read_body(response: httpx.Response, max_bytes: int) -> bytes:
    """The whole body of a streamed `response`, within `max_bytes` (as `body_chunks`)."""
    if "content-encoding" in response.headers:
        return b"".join([chunk async for chunk in body_chunks(response, max_bytes)])
    return await _read_plain(response, max_bytes)


async def _read_plain(response: httpx.Response, max_bytes: int) -> bytes:
    """The body of an answer with no Content-Encoding, straight from its stream, its
    chunks kept as they come (one chunk, the common case, is the body itself: no copy)."""
    _check_length(response, max_bytes)
    chunks: list[bytes] = []
    read = 0
    try:
        async for chunk in response.stream:  # type: ignore[union-attr]
            read += len(chunk)
            if read > max_bytes:
                raise _past_bound(response, max_bytes)
            chunks.append(chunk)
    except httpx.RequestError as exc:  # as httpx's own reading of the stream names the request
        exc.request = response.request
        raise
    return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _check_length(response: httpx.Response, max_bytes: int) -> None:
    declared = response.headers.get("content-length", "").strip()
    if declared.isdigit() and int(declared) > max_bytes:
        raise AnswerTooLarge(f"its Content-Length is {int(declared)} bytes, over the bound of {max_bytes} bytes "
                             f"(max_response_bytes; raise it to read such answers)", limit=max_bytes, request=response.request)


def _past_bound(response: httpx.Response, max_bytes: int) -> AnswerTooLarge:
    return AnswerTooLarge(f"more than {max_bytes} bytes arrived and reading stopped there "
                          f"(max_response_bytes; raise it to read such answers)", limit=max_bytes, request=response.request)


async def _read(response: httpx.Response, max_bytes: int) -> Answer:
    """A streamed `response` read in full within `max_bytes`, as an answer: its status,
    headers, request and extensions, and its body (decoded) as its content (the aiohttp
    transport's answer as it came is read in `send`)."""
    if "content-encoding" not in response.headers:
        body = await _read_plain(response, max_bytes)
        if type(response) is StreamedAnswer:  # the aiohttp transport's, through the client's layers
            response.is_closed = True
            await response.stream.aclose()  # type: ignore[union-attr]  # the connection goes back to the pool
            response.keep_body(body)
            return response
        return WholeAnswer(body, response)
    body = b"".join([chunk async for chunk in body_chunks(response, max_bytes)])
    answer = httpx.Response(response.status_code, content=body, request=response.request, extensions=response.extensions)
    answer.headers = response.headers  # after the body is set: it is not decoded again
    answer.history = response.history
    return answer


class WholeAnswer(StreamedAnswer):
    """An answer of another transport with no Content-Encoding, read in full: `content` is
    the body as it came (and its stream gives the same bytes again), without a second pass
    of httpx's stream layers over bytes already read."""

    def __init__(self, body: bytes, response: httpx.Response) -> None:
        super(StreamedAnswer, self).__init__(  # httpx's constructor: its headers are set here
            response.status_code, stream=httpx.ByteStream(body), request=response.request, extensions=response.extensions,
            history=response.history, default_encoding=response.default_encoding)
        self.headers = response.headers  # the same headers (what was worked out about them kept)
        self.body = body


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
