"""An `httpx.AsyncBaseTransport` over aiohttp: httpx's client API (redirects, cookies, auth,
event hooks, decoding) over aiohttp's connection pool, which keeps up with many concurrent
calls where httpx's own pool spends its time checking connections.

httpx calls its transport interface "a strict point of cut-off": the client hands the
transport an `httpx.Request` and gets an `httpx.Response` back, and nothing else passes
between them. `AiohttpTransport` keeps to it:

- one `aiohttp.ClientSession` per event loop that sends through it, made on first use
  there, owned by the transport and closed by `aclose()` (an aiohttp session belongs to
  the loop it was made on);
- the request's method, URL, headers and body go out as httpx built them; aiohttp adds
  nothing of its own (no cookies, no content type, no user agent, no decompression) and
  follows no redirect: the client does all that;
- a proxy the environment names (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, less the hosts
  `NO_PROXY` names) carries the request, as it would through httpx's own transport;
- httpx's timeouts (`request.extensions["timeout"]`) become aiohttp's: `connect` for
  opening the connection, `read` for each wait for data, `pool` for waiting for a free
  connection (aiohttp has no write timeout);
- the answer's body streams through an `httpx.AsyncByteStream` over aiohttp's content,
  chunk by chunk as it arrives;
- every error aiohttp (or the socket under it) raises becomes httpx's error for the same
  failure (`jupyter_flow.http_errors.MAP_ERRORS`, the table `ERROR_MAP`), raised `from`
  aiohttp's and naming the request, so callers catch one tree of errors, httpx's, whatever
  the transport.
"""

from __future__ import annotations

import asyncio
import functools
import json
import ssl
import urllib.request
from collections.abc import AsyncIterator, Mapping
from typing import Any

import aiohttp
import httpx
import multidict
import yarl
from aiohttp import hdrs

from jupyter_flow.http_errors import MAP_ERRORS
from jupyter_flow.identity import ByIdentity

__all__ = ["AiohttpTransport", "KnownHeaders", "PreparedHeaders", "PreparedRequest", "StreamedAnswer"]


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx's transport interface over aiohttp (see the module doc).

    `limits`: the connections kept open at most and how long an idle one is kept;
    `ssl_context`: the TLS settings for every connection (made once by the caller)."""

    def __init__(self, *, limits: httpx.Limits, ssl_context: ssl.SSLContext) -> None:
        self._limits = limits
        self._ssl_context = ssl_context
        #: the session of the loop that sent last: most calls come from the same loop
        self._last: tuple[asyncio.AbstractEventLoop, aiohttp.ClientSession] | None = None
        #: each loop's session (a session holds its loop: weak keys would not let go of one)
        self._sessions: dict[asyncio.AbstractEventLoop, aiohttp.ClientSession] = {}
        self._closed = False
        #: answers already received, by the request they answer (`answered`)
        self._answered: dict[int, tuple[httpx.Request, httpx.Response]] = {}
        #: the proxies the environment names, read when the transport is made, as httpx
        #: reads them for its own (httpx leaves them to a transport it is given)
        self._proxies = {k: v for k, v in urllib.request.getproxies().items() if k in ("http", "https", "all", "no")}

    def _session(self) -> aiohttp.ClientSession:
        """The running loop's session (made on its first call)."""
        loop = asyncio.get_running_loop()
        last = self._last
        if last is not None and last[0] is loop:
            return last[1]
        session = self._sessions.get(loop)
        if session is None or session.closed:
            if self._closed:
                raise RuntimeError("the HTTP transport is closed: make a new client")
            # a loop that has ended took its connections with it: its session is let go
            self._sessions = {known: kept for known, kept in self._sessions.items() if not known.is_closed()}
            connector = aiohttp.TCPConnector(limit=self._limits.max_connections or 0, keepalive_timeout=self._limits.keepalive_expiry,
                                             ssl=self._ssl_context)
            session = aiohttp.ClientSession(
                connector=connector,
                cookie_jar=aiohttp.DummyCookieJar(),  # the client keeps the cookies
                auto_decompress=False,  # the client decodes, with httpx's decoders
                timeout=_timeout(None, None, None),
            )
            self._sessions[loop] = session
        self._last = (loop, session)
        return session

    def answered(self, request: httpx.Request, response: httpx.Response | None) -> None:
        """`response` is the answer to `request`, already received: the next
        `handle_async_request` of this very request returns it instead of sending the
        request (None: forget it). A client that sent the request itself and got a redirect
        hands the answer on to httpx's client this way, to follow it."""
        if response is None:
            self._answered.pop(id(request), None)
        else:
            self._answered[id(request)] = (request, response)

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if self._answered:
            known = self._answered.pop(id(request), None)
            if known is not None and known[0] is request:
                return known[1]
        session = self._session()
        extensions = request.given_extensions() if type(request) is PreparedRequest else request.extensions
        timeout = extensions.get("timeout")
        limits = _timeout(timeout.get("connect"), timeout.get("read"), timeout.get("pool")) if timeout else _timeout(None, None, None)
        body: bytes | AsyncIterator[bytes] | None
        try:  # as `with MAP_ERRORS:`, without a context manager per call
            if type(request) is PreparedRequest and request.untouched():  # its URL and headers as aiohttp takes them, worked out before
                prepared = request.prepared
                target = prepared.target
                if target is None:
                    target = _aiohttp_url(request.url)
                sent, skip, body = prepared.sent, prepared.skip, request.body or None
            else:
                target = _aiohttp_url(request.url)
                body = _body(request)
                sent, skip = _decoded(tuple(request.headers.raw), body is not None, body is not None and not isinstance(body, bytes))
            if skip is None and not self._proxies and "sni_hostname" not in extensions:  # the common case: fewer arguments
                answer = await session.request(request.method, target, headers=sent, data=body, allow_redirects=False, timeout=limits)
            else:
                answer = await session.request(
                    request.method,
                    target,
                    headers=sent,
                    skip_auto_headers=skip,
                    data=body,
                    allow_redirects=False,
                    timeout=limits,
                    server_hostname=extensions.get("sni_hostname"),
                    proxy=self._proxy_for(request.url) if self._proxies else None,
                )
        except Exception as exc:
            try:
                MAP_ERRORS.__exit__(type(exc), exc, exc.__traceback__)
                raise
            except httpx.RequestError as named:  # it names the request, as httpx's client's errors do
                named.request = request
                raise
        return StreamedAnswer(answer.status, KnownHeaders(answer.raw_headers, answer.headers), AiohttpBody(answer), request,
                              _extensions(answer.version == aiohttp.HttpVersion10, answer.reason))

    def _proxy_for(self, url: httpx.URL) -> str | None:
        """The proxy `HTTP_PROXY`, `HTTPS_PROXY` or `ALL_PROXY` names for `url`, unless
        `NO_PROXY` names its host."""
        proxies = self._proxies
        proxy = proxies.get(url.scheme) or proxies.get("all")
        if not proxy or _bypassed(url.host, proxies.get("no", "")):
            return None
        return proxy if "://" in proxy else f"http://{proxy}"

    async def aclose(self) -> None:
        """Close the sessions: the running loop's at once; one on another loop that still
        runs (in another thread) on that loop; one whose loop has ended cannot be closed
        any more (its connections went with the loop) and is dropped."""
        self._closed = True
        sessions = list(self._sessions.items())
        self._sessions.clear()
        self._last = None
        try:
            here: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        for loop, session in sessions:
            if session.closed:
                continue
            if loop is here:
                await session.close()
            elif loop.is_running() and not loop.is_closed():
                asyncio.run_coroutine_threadsafe(session.close(), loop)


class _CopiedExtensions:
    """httpx's `extensions` of a request or an answer: a copy of those it was given, made
    the first time someone reads them (most are never read); `given_extensions` reads them
    without making one."""

    _own_extensions: dict[str, Any] | None = None
    _given_extensions: Mapping[str, Any] = {}  # only ever read

    @property
    def extensions(self) -> dict[str, Any]:
        if self._own_extensions is None:  # made when first read: a copy of what was given
            self._own_extensions = dict(self._given_extensions)
        return self._own_extensions

    @extensions.setter
    def extensions(self, value: dict[str, Any]) -> None:
        self._own_extensions = value

    def given_extensions(self) -> Mapping[str, Any]:
        """The extensions as they are now, to read (never to change)."""
        return self._given_extensions if self._own_extensions is None else self._own_extensions


class StreamedAnswer(_CopiedExtensions, httpx.Response):
    """The transport's answer: an `httpx.Response` whose body streams from aiohttp, and
    which a reader that took the whole body straight from the stream hands back
    (`keep_body`): its `content` is then that body, and its stream gives the same bytes
    again, without a second pass of httpx's stream layers or a second answer object.

    Its headers become httpx's the first time anyone reads them, from the headers as they
    came (`known.raw`, with what the transport worked out about them first: `known`)."""

    body: bytes | None = None
    #: what the transport worked out about the headers as it received them
    known: KnownHeaders | None = None
    _own_headers: httpx.Headers | None = None
    _own_stream: httpx.SyncByteStream | httpx.AsyncByteStream | None = None

    def __init__(self, status_code: int, known: KnownHeaders, stream: httpx.AsyncByteStream, request: httpx.Request,
                 extensions: Mapping[str, Any]) -> None:
        # no super().__init__: it would make httpx's headers, which most readers never
        # ask for; what it sets for an answer given a stream (a test checks it is all there)
        self.status_code = status_code
        self.known = known
        self._own_stream = stream
        self._request: httpx.Request | None = request
        self.next_request: httpx.Request | None = None
        self._given_extensions = extensions  # copied when first read, as the headers are
        self.history: list[httpx.Response] = []
        self.is_closed = False
        self.is_stream_consumed = False
        self.default_encoding = "utf-8"
        self._num_bytes_downloaded = 0

    @property
    def stream(self) -> httpx.SyncByteStream | httpx.AsyncByteStream:
        own = self._own_stream
        if own is None:  # the body kept: a stream of it, made when asked for
            assert self.body is not None
            own = self._own_stream = httpx.ByteStream(self.body)
        return own

    @stream.setter
    def stream(self, value: httpx.SyncByteStream | httpx.AsyncByteStream) -> None:
        self._own_stream = value

    @property
    def headers(self) -> httpx.Headers:
        own = self._own_headers
        if own is None:  # made when first read
            known = self.known
            assert known is not None
            own = self._own_headers = httpx.Headers(known.raw)
        return own

    @headers.setter
    def headers(self, value: httpx.Headers) -> None:
        self._own_headers = value

    def as_received(self) -> KnownHeaders | None:
        """What the transport worked out about the headers, while the answer is as the
        transport made it (no one has read its headers, its body still streams from
        aiohttp); else None."""
        return self.known if self._own_headers is None and type(self._own_stream) is AiohttpBody else None

    def keep_body(self, body: bytes) -> None:
        self.body = body
        self._own_stream = None  # a stream of the body when someone asks

    async def read_within(self, limit: int) -> bytes | None:
        """For an answer `as_received`: the whole body, read straight from aiohttp, its
        chunks as they come (one chunk, the common case, is the body itself: no copy), and
        kept (`keep_body`), the answer closed and its connection back in the pool; or None
        as soon as more than `limit` bytes have arrived (the answer still open, to be
        closed). A failure is httpx's error for it (`MAP_ERRORS`)."""
        stream = self._own_stream
        assert isinstance(stream, AiohttpBody)
        answer = stream.answer
        content = answer.content
        chunks: list[bytes] = []
        read = 0
        try:
            while chunk := await content.readany():
                read += len(chunk)
                if read > limit:
                    return None
                chunks.append(chunk)
                if content.at_eof():  # the whole body is in: no read that only finds its end
                    break
        except Exception as exc:
            MAP_ERRORS.__exit__(type(exc), exc, exc.__traceback__)
            raise
        answer.release()
        body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
        self.is_closed = True
        self.keep_body(body)
        return body

    @property
    def content(self) -> bytes:
        body = self.body
        return super().content if body is None else body

    def json(self, **kwargs: Any) -> Any:
        body = self.body
        return super().json(**kwargs) if body is None else json.loads(body, **kwargs)  # as httpx reads `content`


class PreparedHeaders:
    """A request's headers as httpx builds them (`headers`) and as aiohttp takes them
    (`sent`, and the automatic headers it must `skip`), for a request with a body or
    without, and the URL they go to (`url`) as aiohttp takes it (`target`): worked out
    once for the many requests that send them."""

    __slots__ = ("headers", "sent", "skip", "url", "target")

    def __init__(self, url: httpx.URL, headers: httpx.Headers, *, body: bool) -> None:
        self.headers = headers
        self.sent, self.skip = _decoded(tuple(headers.raw), body, False)
        self.url = url
        try:
            self.target: yarl.URL | None = _url(str(url))
        except httpx.TransportError:  # aiohttp cannot take it: the transport says so when it is sent
            self.target = None


class PreparedRequest(_CopiedExtensions, httpx.Request):
    """The `httpx.Request` that `httpx.Request(method, prepared.url, headers=prepared.headers,
    stream=httpx.ByteStream(body), extensions=extensions)` makes (a test checks that it
    sets the same attributes) from parts worked out before: the URL is shared, not parsed
    again, and the headers and extensions are copied into the request's own only when
    someone reads them. The transport sends a request nobody has changed (`untouched`)
    with its `prepared` headers and `body` as they are."""

    _own_headers: httpx.Headers | None = None
    _own_stream: httpx.SyncByteStream | httpx.AsyncByteStream | None = None

    def __init__(self, method: str, prepared: PreparedHeaders, body: bytes, extensions: Mapping[str, Any]) -> None:
        # no super().__init__: it would parse the URL again and copy the headers
        self.method = method.upper()
        self.url = prepared.url
        self.prepared = prepared
        self.body = body
        self._given_extensions = extensions  # copied when first read, as the headers are

    @property
    def headers(self) -> httpx.Headers:
        own = self._own_headers
        if own is None:
            own = self._own_headers = httpx.Headers(self.prepared.headers)
        return own

    @headers.setter
    def headers(self, value: httpx.Headers) -> None:
        self._own_headers = value

    @property
    def stream(self) -> httpx.SyncByteStream | httpx.AsyncByteStream:
        own = self._own_stream
        if own is None:
            own = self._own_stream = httpx.ByteStream(self.body)
        return own

    @stream.setter
    def stream(self, value: httpx.SyncByteStream | httpx.AsyncByteStream) -> None:
        self._own_stream = value

    def untouched(self) -> bool:
        """Whether its headers and body are still the prepared ones (neither read: reading
        them gives a copy, which may be changed)."""
        return self._own_headers is None and self._own_stream is None


class AiohttpBody(httpx.AsyncByteStream):
    """An answer's body from aiohttp's content, a chunk as it arrives; closing it before
    the end closes the connection (a half-read answer cannot be reused), after the end
    gives the connection back to the pool. Its own iterator (no async generator per body).
    `answer` is aiohttp's answer it reads."""

    __slots__ = ("answer",)

    def __init__(self, answer: aiohttp.ClientResponse) -> None:
        self.answer = answer

    def __aiter__(self) -> AiohttpBody:
        return self

    async def __anext__(self) -> bytes:
        try:
            chunk = await self.answer.content.readany()
        except Exception as exc:  # as MAP_ERRORS does, without a context manager per chunk
            MAP_ERRORS.__exit__(type(exc), exc, exc.__traceback__)
            raise
        if not chunk:
            raise StopAsyncIteration
        return chunk

    async def aclose(self) -> None:
        answer = self.answer
        if answer.content.at_eof():
            answer.release()
        else:
            answer.close()


def _bypassed(host: str, no_proxy: str) -> bool:
    """Whether `NO_PROXY` (names separated by commas, or `*` for all) names `host`: a name
    stands for itself and the names under it (`example.com` and `.example.com` both cover
    `api.example.com`); an address stands for itself."""
    host = host.lower()
    for name in no_proxy.lower().split(","):
        name = name.strip().lstrip(".")
        if name == "*" or (name and (host == name or host.endswith("." + name))):
            return True
    return False


#: the automatic headers aiohttp would add where httpx's request has none: httpx's request
#: is sent as it is (Host and the body's length aiohttp still works out when missing)
_NOT_ADDED = ("Accept", "Accept-Encoding", "User-Agent", "Content-Type")


@functools.lru_cache(maxsize=64)
def _timeout(connect: float | None, read: float | None, pool: float | None) -> aiohttp.ClientTimeout:
    """httpx's timeouts as aiohttp's (one object per combination: they repeat)."""
    return aiohttp.ClientTimeout(total=None, connect=pool, sock_connect=connect, sock_read=read)


class KnownHeaders:
    """What a reader asks of an answer's headers before anyone reads them all, taken from
    aiohttp's view of them (`seen`, parsed as they came): the body's declared length (None
    when not given as one number), whether its bytes are encoded (`Content-Encoding`) and
    whether it sets a cookie; and the headers as they came (`raw`), which become httpx's
    headers for the answer when someone reads them."""

    __slots__ = ("raw", "length", "encoded", "sets_cookie")

    def __init__(self, raw: tuple[tuple[bytes, bytes], ...], seen: multidict.CIMultiDictProxy[str]) -> None:
        self.raw = raw
        declared = seen.getall(hdrs.CONTENT_LENGTH, ())  # every value: a length given twice is no length
        self.length = int(declared[0]) if len(declared) == 1 and declared[0].strip().isdigit() else None
        self.encoded = hdrs.CONTENT_ENCODING in seen
        self.sets_cookie = hdrs.SET_COOKIE in seen


@functools.lru_cache(maxsize=64)
def _extensions(http10: bool, reason: str | None) -> dict[str, bytes]:
    """An answer's `http_version` and `reason_phrase` as httpx's transports give them (one
    dict per combination: `httpx.Response` copies it)."""
    return {"http_version": b"HTTP/1.0" if http10 else b"HTTP/1.1", "reason_phrase": (reason or "").encode("latin-1", "replace")}


#: each httpx URL object as aiohttp's URL
_URLS: ByIdentity[yarl.URL] = ByIdentity(512)


def _aiohttp_url(url: httpx.URL) -> yarl.URL:
    """`url` as aiohttp's URL type: kept per URL object (the requests of a flow's calls
    share theirs), else worked out from its text."""
    made = _URLS.get(url)
    return made if made is not None else _URLS.put(url, _url(str(url)))


@functools.lru_cache(maxsize=512)
def _url(url: str) -> yarl.URL:
    """The URL httpx built, as aiohttp's URL type, as it is (httpx has encoded it; parsed
    once per URL: a flow calls the same few again and again)."""
    with MAP_ERRORS:
        return yarl.URL(url, encoded=True)


@functools.lru_cache(maxsize=512)
def _decoded(raw: tuple[tuple[bytes, bytes], ...], body: bool,
             streamed: bool) -> tuple[multidict.CIMultiDictProxy[str], frozenset[str] | None]:
    """httpx's header bytes, names in the case the caller gave, as the text aiohttp takes
    (it encodes them back as UTF-8, the same bytes), in the read-only multidict aiohttp
    reads without a copy of its own, and the headers aiohttp would add of its own that
    httpx's request goes without (None when it has them all, aiohttp's fast path); for a
    request with a `body`, sent as a stream or not. A body sent as a stream goes without
    httpx's `Transfer-Encoding: chunked`: aiohttp chunks it, and says so itself. Worked
    out once per set of headers (a flow sends the same few again)."""
    dropped = b"transfer-encoding" if streamed else None
    headers = tuple((name.decode(), value.decode()) for name, value in raw if name.lower() != dropped)
    given = {name.lower() for name, _ in headers}
    # aiohttp adds a Content-Type only to a request with a body
    missing = frozenset(name for name in _NOT_ADDED if name.lower() not in given and (body or name != "Content-Type"))
    return multidict.CIMultiDictProxy(multidict.CIMultiDict(headers)), missing or None


def _body(request: httpx.Request) -> bytes | AsyncIterator[bytes] | None:
    """The request's body: its bytes when httpx holds them (any `content=`, `json=` or
    form: a `ByteStream`, which gives them as they are, without a copy), else its stream,
    sent chunk by chunk."""
    stream = request.stream
    if isinstance(stream, httpx.ByteStream):
        return b"".join(stream) or None  # its one chunk, as it is
    return _chunks(stream)


async def _chunks(stream: Any) -> AsyncIterator[bytes]:
    async for chunk in stream:
        yield chunk
