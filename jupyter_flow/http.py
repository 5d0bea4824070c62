"""The one HTTP client factory: every part that calls model endpoints gets its client here.

The engine, batch runs, Ray replicas and served flows all call `make_client` (or share
one through `shared_client`), so an endpoint answers the same through `jupyter-flow run`,
`jupyter-flow batch` and `jupyter-flow serve flow`: redirects are followed (a 307 to
another path works everywhere), connections are pooled with the same limits, and every
request carries the same `User-Agent`.

The client keeps httpx's API (nodes and users write against it) over aiohttp's transport
(the `httpx-aiohttp` package), which keeps up with many concurrent calls where httpx's
own pool spends its time checking connections. `JUPYTER_FLOW_HTTP_TRANSPORT=httpx` picks
httpx's own transport instead.

`send` is how the `http` node calls: on a client made here over aiohttp it sends a JSON
request through the aiohttp session under the transport, skipping the request and
response models httpx would build around it (they cost more CPU than aiohttp's own call);
anything else, and any other client, goes through httpx as usual. Both ways give the same
`Answer` and the same errors.

`shared_client()` is the client of the running event loop: `Flow.arun` without a client
of its own uses it, so repeated runs (in a notebook, a served flow, user code) reuse
connections. It is closed when its loop shuts down (`asyncio.run` ending) or at exit.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import functools
import json as _json
import os
import threading
import weakref
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any

from jupyter_flow.http_errors import UnsendableRequest, describe_error, transport_errors, unsendable_errors
from jupyter_flow.workers import Deadline, within
from jupyter_flow.version import __version__

if TYPE_CHECKING:
    import httpx

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "TRANSPORT_ENV",
    "Answer",
    "UnsendableRequest",
    "describe_error",
    "make_client",
    "send",
    "shared_client",
    "transport_errors",
    "transport_name",
]

#: Seconds an HTTP call may take in all when its node sets no `timeout_s`.
DEFAULT_TIMEOUT_S = 60.0
#: Connections kept open at most, and kept idle for reuse, unless the caller asks for more.
MAX_CONNECTIONS = 256
MAX_KEEPALIVE = 64
#: Environment variable choosing the transport: `aiohttp` (default when installed) or `httpx`.
TRANSPORT_ENV = "JUPYTER_FLOW_HTTP_TRANSPORT"


def transport_name() -> str:
    """The transport `make_client` uses here: "aiohttp" or "httpx"."""
    if os.environ.get(TRANSPORT_ENV, "").strip().lower() == "httpx":
        return "httpx"
    try:
        import httpx_aiohttp  # noqa: F401
    except ImportError:
        return "httpx"
    return "aiohttp"


def make_client(
    *,
    concurrency: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    headers: Mapping[str, str] | None = None,
) -> httpx.AsyncClient:
    """An `httpx.AsyncClient` with jupyter-flow's settings. `concurrency` (items or requests
    in flight at once) raises the pool limits when it needs more than the defaults."""
    import httpx


    limits = httpx.Limits(
        max_connections=max(MAX_CONNECTIONS, 4 * (concurrency or 0)),
        max_keepalive_connections=max(MAX_KEEPALIVE, concurrency or 0),
    )
    transport: httpx.AsyncBaseTransport | None = None
    if transport_name() == "aiohttp":
        from httpx_aiohttp import AiohttpTransport

        # the process's TLS settings, made once (the transport would load the certificates
        # again for every client: tens of milliseconds on each new event loop)
        transport = AiohttpTransport(limits=limits, client=_session_factory(limits),
                                     verify=_ssl_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")))
    client = httpx.AsyncClient(
        limits=limits,
        transport=transport,
        follow_redirects=True,
        timeout=httpx.Timeout(timeout_s),
        headers={"user-agent": f"jupyter-flow/{__version__}", **dict(headers or {})},
    )
    if transport is not None and not _proxies_configured():  # with a proxy set, httpx's routing applies: no short cut
        _MADE[id(client)] = _Made(client, transport)
        weakref.finalize(client, _MADE.pop, id(client), None)
    return client


def _session_factory(limits: httpx.Limits) -> Any:
    """What makes the aiohttp session under a client, on first use: the pool the transport
    would make, without aiohttp's own cookie store (httpx keeps the client's cookies, and
    `send` leaves any call that involves cookies to httpx)."""

    def make() -> Any:
        import aiohttp

        connector = aiohttp.TCPConnector(limit=limits.max_connections or 0, keepalive_timeout=limits.keepalive_expiry,
                                         ssl=_ssl_context(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR")))
        return aiohttp.ClientSession(connector=connector, cookie_jar=aiohttp.DummyCookieJar())

    return make


@functools.lru_cache(maxsize=4)
def _ssl_context(cert_file: str | None, cert_dir: str | None) -> Any:
    """The TLS settings httpx would make (its certificate bundle, or the one `SSL_CERT_FILE`
    or `SSL_CERT_DIR` names), made once per process and shared by every client: loading
    the bundle costs tens of milliseconds, which a script that runs a flow on a new event
    loop each time would otherwise pay on every first call. The two variables, which httpx
    reads, key the cache."""
    import httpx

    return httpx.create_ssl_context()


def _proxies_configured() -> bool:
    """Whether the environment names a proxy (`HTTP_PROXY`, `HTTPS_PROXY`, `ALL_PROXY`, as
    httpx reads them)."""
    import urllib.request

    return any(scheme in ("http", "https", "all") for scheme in urllib.request.getproxies_environment())


class _Made:
    """A client `make_client` made over aiohttp, as it was made: `send` may call its aiohttp
    session directly while the client is still so. Also the client's own headers as the
    short cut sends them, with what they were worked out from."""

    __slots__ = ("client", "transport", "base_url", "params", "headers_from", "headers")

    def __init__(self, client: httpx.AsyncClient, transport: Any) -> None:
        self.client = weakref.ref(client)
        self.transport = transport
        self.base_url = client.base_url
        self.params = client.params
        self.headers_from: Any = None
        self.headers: dict[str, str] = {}


#: the clients `make_client` made over aiohttp, by `id` (looked up on every call: no weak
#: reference made per lookup, as a WeakKeyDictionary would)
_MADE: dict[int, _Made] = {}


def _made(client: httpx.AsyncClient) -> _Made | None:
    made = _MADE.get(id(client))
    return made if made is not None and made.client() is client else None


#: headers aiohttp sets itself
_OWN_HEADERS = frozenset({"connection", "host", "content-length", "transfer-encoding"})


class Answer:
    """An HTTP answer read in full: status, headers (lower-case names; repeated ones joined
    with ", ", as `dict(httpx.Headers)` gives them) and body."""

    __slots__ = ("status_code", "_headers", "_raw_headers", "content")

    def __init__(self, status_code: int, headers: dict[str, str] | None, content: bytes, raw_headers: Any = ()) -> None:
        self.status_code = status_code
        self._headers = headers
        self._raw_headers = raw_headers  # (name, value) bytes pairs, decoded when first asked
        self.content = content

    @property
    def headers(self) -> dict[str, str]:
        if self._headers is None:
            self._headers = _decoded_headers(self._raw_headers)
            self._raw_headers = ()
        return self._headers

    @property
    def text(self) -> str:
        """The body as text: the charset the answer names, else UTF-8; bytes that do not
        decode become U+FFFD."""
        charset = _charset(self.headers.get("content-type", "")) or "utf-8"
        try:
            return self.content.decode(charset, errors="replace")
        except LookupError:
            return self.content.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON (raises `json.JSONDecodeError` or `UnicodeDecodeError`)."""
        return _json.loads(self.content)

    @classmethod
    def from_httpx(cls, response: httpx.Response) -> Answer:
        return cls(response.status_code, dict(response.headers), response.content)


def _charset(content_type: str) -> str | None:
    """The charset a Content-Type names, read as httpx reads it (any case, quoted or not)."""
    if "charset" not in content_type.lower():
        return None
    import email.message

    message = email.message.Message()
    message["content-type"] = content_type
    return message.get_content_charset(failobj=None)


def _decoded_headers(raw: Any) -> dict[str, str]:
    """Raw header pairs (bytes) as `dict(httpx.Headers)` gives them: names in lower case,
    repeated ones joined with ", ", every value decoded as httpx decodes it (ASCII, else
    UTF-8, else Latin-1, the same for all)."""
    for encoding in ("ascii", "utf-8", "latin-1"):
        try:
            pairs = [(name.decode(encoding).lower(), value.decode(encoding)) for name, value in raw]
        except UnicodeDecodeError:
            continue
        out: dict[str, str] = {}
        for key, value in pairs:
            out[key] = f"{out[key]}, {value}" if key in out else value
        return out
    raise AssertionError("unreachable: Latin-1 decodes any bytes")  # pragma: no cover


#: answers after which httpx sends another request (`Location` says where)
_REDIRECTS = frozenset({301, 302, 303, 307, 308})


_NO_BODY = object()
#: JSON as httpx encodes a `json=` body (UTF-8, compact, no NaN), one encoder for all calls
_ENCODE_JSON = _json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode


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
) -> Answer:
    """One request read in full, following redirects as the client says, within
    `timeout_s` seconds in all (a server trickling its answer does not hold the call past
    it: `asyncio.TimeoutError`). A request the transport cannot send as given raises
    `UnsendableRequest`; other errors are the transport's. `describe_error` names them all.

    A JSON body (`json=`, or no body) on a client that is as `make_client` made it (over
    aiohttp; no auth, cookies, params or event hooks added since) goes straight to its
    aiohttp session, encoded as httpx encodes it. A redirect, or an answer that sets a
    cookie, is then handled by httpx's own rules from there on; any other call goes through
    `client.request`."""
    body = None if json is _NO_BODY or json is None else _ENCODE_JSON(json).encode("utf-8")  # as httpx encodes `json=`
    if body is not None and not (headers and any(name.lower() == "content-type" for name in headers)):
        headers = {**_JSON_TYPE, **headers} if headers else _JSON_TYPE  # as httpx sets it for `json=`
    try:
        made = _made(client)
        if made is None or content is not None or form is not None or not _as_made(client, made, headers):
            return await within(_send_httpx(client, method, url, body, content, form, params, headers, timeout_s), timeout_s)
        sent = _base_headers(client, made)
        if headers:
            for name, value in headers.items():
                sent[name.lower()] = value
        target: Any = url
        if params:
            import httpx
            import yarl

            target = yarl.URL(str(httpx.URL(url, params=params)), encoded=True)
        session = _session_of(made.transport)
        # the call itself, here rather than in a coroutine of its own: every HTTP node makes it
        with Deadline(timeout_s):
            async with session.request(method, target, data=body, headers=sent, allow_redirects=False, auto_decompress=False,
                                       timeout=_unbounded()) as response:
                data = await response.read()
            seen = response.headers  # aiohttp's own view of the headers: a quick look, without decoding them all
            answer = Answer(response.status, None, data, response.raw_headers)
            if "content-encoding" in seen:  # decoded by httpx's decoders, as the transport path does
                answer.content = _decoded_body(answer.status_code, response.raw_headers, data)
            if "set-cookie" not in seen and not (answer.status_code in _REDIRECTS and "location" in seen):
                return answer
            # a cookie to keep, or a redirect to follow: httpx's rules from here on, as they would have been
            return await _by_httpx_rules(client, answer, method, url, params, headers, body, response.raw_headers, data)
    except unsendable_errors() as exc:
        while getattr(exc, "exceptions", None):  # an exception group: what went wrong, inside it
            exc = exc.exceptions[0]  # type: ignore[attr-defined]
        raise UnsendableRequest(" ".join(str(exc).split()) or type(exc).__name__) from exc


def _base_headers(client: httpx.AsyncClient, made: _Made) -> dict[str, str]:
    """A fresh copy of the client's own headers as the short cut sends them (worked out
    again whenever they change: compared with httpx's own list of them where it keeps one,
    which costs no copy)."""
    headers = client.headers
    now = getattr(headers, "_list", None)
    if not isinstance(now, list):  # pragma: no cover - another httpx layout
        now = headers.raw
    if made.headers_from != now:
        made.headers = {k: v for k, v in headers.items() if k not in _OWN_HEADERS}
        made.headers_from = list(now)
    return dict(made.headers)


def _as_made(client: httpx.AsyncClient, made: _Made, headers: Mapping[str, str] | None) -> bool:
    """Whether the short cut gives what httpx would: the client still as `make_client`
    made it (no auth, base URL, params, event hooks or cookies added, redirects followed),
    and header values HTTP can carry as they are (httpx refuses others)."""
    if client.is_closed or client.auth is not None or not client.follow_redirects:
        return False
    if client.base_url is not made.base_url or client.params is not made.params:  # each setter makes a new one
        return False
    hooks = client.event_hooks
    if hooks.get("request") or hooks.get("response") or _has_cookies(client):
        return False
    if headers:
        for name, value in headers.items():
            if not value.isascii() or name.lower() == "host":
                return False
    return True


def _has_cookies(client: httpx.AsyncClient) -> bool:
    """Whether the client's cookie jar may hold a cookie (a look at the jar's own store,
    where it has the standard library's layout, rather than a walk through it)."""
    jar = client.cookies.jar
    store = getattr(jar, "_cookies", None)
    return bool(store) if isinstance(store, dict) else bool(client.cookies)


#: the content type httpx sends with a `json=` body (shared: never changed)
_JSON_TYPE: Mapping[str, str] = {"content-type": "application/json"}


def _decoded_body(status: int, raw_headers: Any, data: bytes) -> bytes:
    """A compressed body decoded as httpx decodes it (the same decoders, the same errors)."""
    import httpx

    return httpx.Response(status, headers=raw_headers, content=data).read()


async def _by_httpx_rules(
    client: httpx.AsyncClient,
    answer: Answer,
    method: str,
    url: str,
    params: Mapping[str, Any] | None,
    headers: Mapping[str, str] | None,
    body: bytes | None,
    raw_headers: Any,
    data: bytes,
) -> Answer:
    """After an answer that sets a cookie or redirects: the cookie kept in the client, and
    the redirect followed, as httpx would have done from that answer on."""
    import httpx

    request = client.build_request(method, url, params=params, headers=headers, content=body)
    first = httpx.Response(answer.status_code, headers=raw_headers, content=data, request=request)
    client.cookies.extract_cookies(first)
    if not first.has_redirect_location:
        return answer
    follow = client._build_redirect_request(request, first)  # what httpx sends after this answer
    for _ in range(client.max_redirects):
        final = await client.send(follow, follow_redirects=False)
        if final.next_request is None:
            return Answer.from_httpx(final)
        follow = final.next_request
    raise httpx.TooManyRedirects("Exceeded maximum allowed redirects.", request=follow)


async def _send_httpx(
    client: httpx.AsyncClient,
    method: str,
    url: str,
    body: bytes | None,
    content: str | bytes | None,
    form: dict[str, str] | None,
    params: Mapping[str, Any] | None,
    headers: Mapping[str, str] | None,
    timeout_s: float,
) -> Answer:
    import httpx

    kwargs: dict[str, Any] = {"params": params, "headers": headers, "timeout": httpx.Timeout(timeout_s)}
    if content is not None:
        kwargs["content"] = content
    elif form is not None:
        kwargs["data"] = form
    elif body is not None:
        kwargs["content"] = body
    return Answer.from_httpx(await client.request(method, url, **kwargs))


def _session_of(transport: Any) -> Any:
    """The aiohttp session under an `AiohttpTransport` (made now if it has not sent yet: the
    same session the transport would make, so both ways share the connections)."""
    session = transport.client
    if callable(session):  # the factory `make_client` gave it: the session is made on first use
        session = transport.client = session()
    return session


@functools.lru_cache(maxsize=1)
def _unbounded() -> Any:
    """aiohttp's timeout with no limits (the caller bounds the whole call: one timer, not
    one per phase and per read)."""
    import aiohttp

    return aiohttp.ClientTimeout(total=None, connect=None, sock_read=None, sock_connect=None)


class _LoopClients:
    """One client per event loop, closed with its loop or at exit."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, Any]] = weakref.WeakKeyDictionary()
        #: the loop asked last (weakly) and its client: most calls come from the same loop
        self._last: tuple[weakref.ref[asyncio.AbstractEventLoop], Any] | None = None
        atexit.register(self.close_all)

    def get(self, loop: asyncio.AbstractEventLoop) -> httpx.AsyncClient:
        """`loop`'s client, made on first use; called on `loop`'s thread."""
        last = self._last
        if last is not None and last[0]() is loop and not last[1].is_closed:
            return last[1]
        entry = self._clients.get(loop)
        if entry is not None and not entry[0].is_closed:
            self._last = (weakref.ref(loop), entry[0])
            return entry[0]
        if getattr(loop, "_asyncgens_shutdown_called", False):  # asyncio's own flag (uvloop has none)
            # nothing would close a client made now, and it would keep the ended loop alive
            raise RuntimeError("the event loop is shutting down: no new HTTP client is made on it")
        client = make_client()
        keeper = _keep_until_loop_ends(client)
        _first_step(keeper)  # the loop now tracks it: its shutdown closes the client
        with self._lock:
            self._clients[loop] = (client, keeper)
        self._last = (weakref.ref(loop), client)
        return client

    def forget(self, client: httpx.AsyncClient) -> None:
        """Drop a closed client from the table (its loop is ending)."""
        with self._lock:
            for loop, entry in list(self._clients.items()):
                if entry[0] is client:
                    del self._clients[loop]
            last = self._last
            if last is not None and last[1] is client:
                self._last = None

    def close_all(self) -> None:
        with self._lock:
            entries = list(self._clients.items())
            self._clients.clear()
            self._last = None
        for loop, (client, _keeper) in entries:
            if client.is_closed or loop.is_closed():
                continue
            with contextlib.suppress(Exception):
                if loop.is_running():
                    asyncio.run_coroutine_threadsafe(client.aclose(), loop).result(timeout=5)
                else:
                    loop.run_until_complete(client.aclose())


def _first_step(agen: AsyncIterator[None]) -> None:
    """Run an async generator up to its first `yield` now, as `await anext(agen)` would
    (the running loop's hooks see it start, so its shutdown closes the generator): for a
    generator whose first step never waits, without an await."""
    step: Any = agen.__anext__()
    try:
        step.send(None)
    except StopIteration:
        return
    raise RuntimeError("the generator waited before its first yield")


async def _keep_until_loop_ends(client: httpx.AsyncClient) -> AsyncIterator[None]:
    # An async generator left suspended is closed by the loop's shutdown_asyncgens(), which
    # asyncio.run() calls before it closes the loop: the client closes on its own loop, and
    # is forgotten (the client holds its loop: kept in the table, it would keep the loop
    # and its connections' objects alive after the loop ends)
    try:
        yield
    finally:
        try:
            await client.aclose()
        finally:
            _LOOP_CLIENTS.forget(client)


_LOOP_CLIENTS = _LoopClients()


async def shared_client() -> httpx.AsyncClient:
    """The HTTP client of the running event loop (made on first use)."""
    return _LOOP_CLIENTS.get(asyncio.get_running_loop())


def loop_shared_client(loop: asyncio.AbstractEventLoop) -> httpx.AsyncClient:
    """`loop`'s shared client (made on first use), from any thread: off the loop's own
    thread it is made on the loop, which must be running."""
    try:
        here = asyncio.get_running_loop()
    except RuntimeError:
        here = None
    if here is loop:
        return _LOOP_CLIENTS.get(loop)
    if loop.is_closed() or not loop.is_running():
        raise RuntimeError("the run's event loop is not running (the run has ended): it has no HTTP client to give")
    try:
        return asyncio.run_coroutine_threadsafe(shared_client(), loop).result(timeout=_FROM_THREAD_S)
    except concurrent.futures.TimeoutError:
        raise RuntimeError(f"the run's event loop did not make its HTTP client within {_FROM_THREAD_S:g} s "
                           "(is it stopped, or waiting for this thread?)") from None


#: how long a worker thread waits for the loop to make its client
_FROM_THREAD_S = 30.0
