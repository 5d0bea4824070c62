"""The client `make_client` makes over the aiohttp transport: `httpx.AsyncClient` with a
`send` that hands a request straight to the transport when the client has nothing of its
own to do for it.

httpx's client does a fixed round of work around every request: auth, redirects, event
hooks, and the cookie jar, which it asks on every answer (wrapping request and answer for
`http.cookiejar`, cookie or not). For a client that has no auth, no hooks and no cookies
(what `make_client` makes, until someone adds them), that round changes nothing but costs
three times what the transport and aiohttp do together. `FlowClient.send` then does only
what still applies, through httpx's public API:

- the request goes to the transport's `handle_async_request` as it is, with the client's
  timeout when it has none of its own; an error raised there names the request, as
  httpx's client does;
- an answer that redirects is handed to httpx's own `send`, which follows it with all its
  rules (the transport gives it the answer it already has, `AnsweringTransport.answered`,
  instead of sending the request twice);
- an answer that sets a cookie has it stored in the client's jar (from then on the jar is
  not empty, and httpx's own `send` sends it back);
- `elapsed` is set when the answer is closed, and the `httpx` logger gets its line.

A client with auth (its own or in the URL), event hooks, cookies, or redirects turned off
goes through httpx's own `send`, unchanged.
"""

from __future__ import annotations

import datetime
import http.cookiejar
import itertools
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from typing import Any, Protocol, runtime_checkable

import httpx

from jupyter_flow.http_transport import PreparedRequest, StreamedAnswer

__all__ = ["AnsweringTransport", "FlowClient", "WatchedHeaders", "WatchedJar"]


@runtime_checkable
class AnsweringTransport(Protocol):
    """A transport that can be handed an answer it gave, to give it again for the same
    request (`jupyter_flow.http_transport.AiohttpTransport`)."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response: ...

    def answered(self, request: httpx.Request, response: httpx.Response | None) -> None: ...

    async def aclose(self) -> None: ...

#: the logger httpx's client writes a line per request to (at INFO)
_HTTPX_LOG = logging.getLogger("httpx")
#: the statuses of an answer that redirects (when it has a Location), as httpx's
_REDIRECTS = frozenset((301, 302, 303, 307, 308))


class FlowClient(httpx.AsyncClient):
    """An `httpx.AsyncClient` over `transport` whose `send` skips the steps of httpx's that
    have nothing to do (see the module doc); anything else is httpx's."""

    def __init__(self, *, transport: httpx.AsyncBaseTransport, **settings: Any) -> None:
        if not isinstance(transport, AnsweringTransport):
            raise TypeError(f"FlowClient needs a transport that takes back its answers (AnsweringTransport), not {type(transport).__name__}")
        if settings.get("cookies") is None:
            settings["cookies"] = WatchedJar()
        super().__init__(transport=transport, **settings)
        self._direct: AnsweringTransport = transport

    @property
    def headers(self) -> WatchedHeaders:
        """The headers the client sends with every request (httpx's), which count their
        changes (`WatchedHeaders.stamp`)."""
        return self._watched_headers

    @headers.setter
    def headers(self, headers: Any) -> None:
        base = httpx.AsyncClient.headers
        base.fset(self, headers)  # type: ignore[attr-defined]  # httpx's own headers before these
        self._watched_headers = WatchedHeaders(base.fget(self))  # type: ignore[attr-defined]

    def is_plain(self) -> bool:
        """Whether the client has nothing of its own to add to a request or take from an
        answer: no auth, no event hooks, no cookies, and redirects followed."""
        hooks = self.event_hooks
        if self.auth is not None or not self.follow_redirects or hooks["request"] or hooks["response"]:
            return False
        cookies = self.cookies
        jar = cookies.jar
        return jar.never_set if type(jar) is WatchedJar else not cookies

    async def send(
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: Any = httpx.USE_CLIENT_DEFAULT,
        follow_redirects: Any = httpx.USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        if (auth is not httpx.USE_CLIENT_DEFAULT and auth is not None) or follow_redirects is False \
                or request.url.userinfo or not self.is_plain():
            return await super().send(request, stream=stream, auth=auth, follow_redirects=follow_redirects)
        return await self.send_plain(request, stream=stream)

    async def send_plain(self, request: httpx.Request, *, stream: bool = False) -> httpx.Response:
        """`send` for a client that `is_plain()`, of a request with no user or password in
        its URL (the caller has checked both): straight to the transport."""
        start = time.perf_counter()
        response = await self.answer(request)
        if not response.history:  # else httpx's own send followed a redirect, and times the answer
            assert isinstance(response.stream, httpx.AsyncByteStream)
            response.stream = _Timed(response.stream, response, start)
        if not stream:
            try:
                await response.aread()
            except BaseException:
                await response.aclose()
                raise
        return response

    async def answer(self, request: httpx.Request) -> httpx.Response:
        """The answer to a request `send_plain` may send, as httpx's client has it before it
        reads the body (`start`, then `took`, or `follow` for a redirect)."""
        response = await self.start(request)
        taken = self.took(request, response)
        return taken if taken is not None else await self.follow(request, response)

    def start(self, request: httpx.Request) -> Awaitable[httpx.Response]:
        """The transport's call for a request `send_plain` may send, checked as httpx's
        client checks it (an error it raises names the request): await it, and hand its
        answer to `took`. Awaited by the caller, not by a coroutine of the client's: every
        HTTP node's call comes this way."""
        if self.is_closed:
            raise RuntimeError("Cannot send a request, as the client has been closed.")
        if type(request) is not PreparedRequest and not isinstance(request.stream, httpx.AsyncByteStream):
            raise RuntimeError("Attempted to send a sync request with an AsyncClient instance.")
        if "timeout" not in (request.given_extensions() if type(request) is PreparedRequest else request.extensions):
            request.extensions["timeout"] = self.timeout.as_dict()
        return self._direct.handle_async_request(request)

    def took(self, request: httpx.Request, response: httpx.Response) -> httpx.Response | None:
        """What httpx's client does with the transport's answer before the body is read: a
        cookie kept and the log line written (but no `elapsed`: the caller that reads the
        body says when it is done); None for an answer that redirects, which `follow`
        takes on."""
        if response.status_code in _REDIRECTS and response.has_redirect_location:
            return None
        if type(response) is StreamedAnswer:  # the aiohttp transport's answer to this request (it names it)
            sets_cookie = response.known.sets_cookie  # type: ignore[union-attr]  # worked out with the headers
        else:
            response.request = request
            sets_cookie = "set-cookie" in response.headers
        if sets_cookie:
            self.cookies.extract_cookies(response)
        if _HTTPX_LOG.isEnabledFor(logging.INFO):
            _HTTPX_LOG.info('HTTP Request: %s %s "%s %d %s"', request.method, request.url, response.http_version,
                            response.status_code, response.reason_phrase)
        return response

    async def follow(self, request: httpx.Request, response: httpx.Response) -> httpx.Response:
        """httpx follows the redirect, with all its rules, starting from this answer: the
        request is not sent again."""
        self._direct.answered(request, response)
        try:
            return await super().send(request, stream=True)
        finally:
            self._direct.answered(request, None)


class WatchedHeaders(httpx.Headers):
    """httpx's headers, with a `stamp` that changes whenever they do (every change goes
    through `__setitem__`, `__delitem__` or `update`) and that no other headers object
    ever has: what is worked out from the headers can be kept under their stamp."""

    def __init__(self, headers: Any = None, encoding: str | None = None) -> None:
        super().__init__(headers, encoding)
        self.stamp = (next(_STAMPS), 0)

    def __setitem__(self, key: str, value: str) -> None:
        super().__setitem__(key, value)
        self.stamp = (self.stamp[0], self.stamp[1] + 1)

    def __delitem__(self, key: str) -> None:
        super().__delitem__(key)
        self.stamp = (self.stamp[0], self.stamp[1] + 1)

    def update(self, headers: Any = None) -> None:  # type: ignore[override]
        super().update(headers)
        self.stamp = (self.stamp[0], self.stamp[1] + 1)


_STAMPS = itertools.count()


class WatchedJar(http.cookiejar.CookieJar):
    """The standard cookie jar, which says whether a cookie has ever been set in it
    (`never_set`): a jar that never held one needs no walk through it to be known empty.
    Every cookie goes in through `set_cookie` (httpx's `Cookies.set`, the jar's
    `extract_cookies` and `set_cookie_if_ok`)."""

    def __init__(self, policy: http.cookiejar.CookiePolicy | None = None) -> None:
        super().__init__(policy)
        self.never_set = True

    def set_cookie(self, cookie: http.cookiejar.Cookie) -> None:
        self.never_set = False
        super().set_cookie(cookie)


class _Timed(httpx.AsyncByteStream):
    """An answer's body that sets the answer's `elapsed` when it is closed, as httpx's
    client does."""

    __slots__ = ("_stream", "_response", "_start")

    def __init__(self, stream: httpx.AsyncByteStream, response: httpx.Response, start: float) -> None:
        self._stream = stream
        self._response = response
        self._start = start

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._stream.__aiter__()

    async def aclose(self) -> None:
        self._response.elapsed = datetime.timedelta(seconds=time.perf_counter() - self._start)
        await self._stream.aclose()
