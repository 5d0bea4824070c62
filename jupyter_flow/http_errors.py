"""What went wrong with an HTTP call. A call through a client `make_client` made fails with
httpx's errors whatever the transport (aiohttp's errors become httpx's in the aiohttp
transport, through `MAP_ERRORS` below), or with the whole call's deadline (`send`):

    httpx.HTTPError
    └── httpx.RequestError
        ├── UnsendableRequest          a request httpx cannot build as given (a URL it cannot
        │                              parse, a port out of range, a header it cannot encode)
        ├── httpx.TransportError
        │   ├── httpx.TimeoutException     ConnectTimeout, ReadTimeout, WriteTimeout, PoolTimeout
        │   ├── httpx.NetworkError         ConnectError, ReadError, WriteError, CloseError
        │   ├── httpx.ProtocolError        LocalProtocolError (a request HTTP cannot carry),
        │   │                              RemoteProtocolError (an answer that is not HTTP, cut short)
        │   ├── httpx.ProxyError
        │   └── httpx.UnsupportedProtocol  a URL that is not http:// or https://
        ├── httpx.DecodingError        a body that does not decode as its Content-Encoding says
        ├── AnswerTooLarge             an answer over the bytes the caller reads (`http_send`)
        └── httpx.TooManyRedirects
    asyncio.TimeoutError               `send`'s deadline for the whole call passed

`transport_errors()` is that tuple for an `except` clause; `describe_error` gives one line
for each kind of failure, naming the endpoint.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

import aiohttp
import httpx

__all__ = ["ERROR_MAP", "MAP_ERRORS", "AnswerTooLarge", "MapErrors", "UnsendableRequest", "describe_error", "transport_errors"]


class UnsendableRequest(httpx.RequestError):
    """A request httpx refused to build as given (a URL it cannot parse, a port out of
    range, a header value HTTP headers cannot carry): nothing was sent."""


class AnswerTooLarge(httpx.RequestError):
    """An answer larger than the caller reads: its Content-Length says so (nothing of the
    body was read), or more than `limit` bytes arrived (reading stopped there). The same
    answer again would be as large: not worth another attempt."""

    def __init__(self, message: str, *, limit: int, request: httpx.Request | None = None) -> None:
        super().__init__(message, request=request)
        self.limit = limit


def transport_errors() -> tuple[type[BaseException], ...]:
    """What a call through `send` raises when the call itself fails (not the answer):
    httpx's errors, and the whole call's deadline."""
    return _ERRORS


_ERRORS: tuple[type[BaseException], ...] = (httpx.HTTPError, asyncio.TimeoutError)


def describe_error(exc: BaseException, endpoint: str, timeout_s: float) -> str:
    """What went wrong with a call to `endpoint`, on one line: the kind of failure, in
    words and as httpx's error type, and the reason the transport gave."""
    kind = type(exc).__name__
    if isinstance(exc, asyncio.TimeoutError) or (isinstance(exc, httpx.TimeoutException) and not isinstance(exc, httpx.ConnectTimeout)):
        return f"{endpoint} did not answer within {timeout_s:g} s ({kind})"
    reason = _reason(exc)
    for types, text in _TEXTS:
        if isinstance(exc, types):
            return text.format(endpoint=endpoint, kind=kind, reason=reason, timeout=f"{timeout_s:g}")
    return f"request to {endpoint} failed ({kind}: {reason})"


def _reason(exc: BaseException) -> str:
    """The error's own message on one line, else the first its causes give (httpx's own
    transport raises some with no message, over the socket's error), else its type."""
    error: BaseException | None = exc
    for _ in range(4):
        if error is None:
            break
        text = " ".join(str(error).split())
        if text:
            return text
        error = error.__cause__ or error.__context__
    return type(exc).__name__


#: (error types, message), tried in order: the more specific first
_TEXTS: tuple[tuple[tuple[type[BaseException], ...], str], ...] = (
    ((UnsendableRequest, httpx.LocalProtocolError, httpx.UnsupportedProtocol),
     "cannot send the request to {endpoint}: {reason} ({kind})"),
    ((AnswerTooLarge,), "{endpoint} answered more than this node reads: {reason}"),
    ((httpx.ConnectTimeout,), "cannot connect to {endpoint} within {timeout} s ({kind})"),
    ((httpx.ProxyError,), "cannot reach {endpoint} through the proxy: {reason} ({kind})"),
    ((httpx.ConnectError,), "cannot connect to {endpoint}: {reason} ({kind})"),
    ((httpx.RemoteProtocolError,), "{endpoint} broke the HTTP protocol or closed the connection ({kind}: {reason})"),
    ((httpx.WriteError,), "the connection to {endpoint} broke while the request was being sent ({kind}: {reason})"),
    ((httpx.NetworkError,), "the connection to {endpoint} broke while the answer was being read ({kind}: {reason})"),
    ((httpx.DecodingError,), "{endpoint} sent a body that does not decode as its Content-Encoding says ({kind}: {reason})"),
    ((httpx.TooManyRedirects,), "{endpoint} redirected too many times ({kind}: {reason})"),
)


#: aiohttp's errors and the httpx error each one becomes, the more specific first (the
#: first class that matches wins)
ERROR_MAP: tuple[tuple[type[BaseException], type[httpx.TransportError]], ...] = (
    (aiohttp.ConnectionTimeoutError, httpx.ConnectTimeout),  # no connection within `connect` (or `pool`)
    (aiohttp.SocketTimeoutError, httpx.ReadTimeout),  # no data within `read`
    (aiohttp.ServerTimeoutError, httpx.ReadTimeout),
    (aiohttp.ClientProxyConnectionError, httpx.ProxyError),
    (aiohttp.ClientHttpProxyError, httpx.ProxyError),
    (aiohttp.ClientConnectorError, httpx.ConnectError),  # refused, no such host, TLS refused
    (aiohttp.ServerDisconnectedError, httpx.RemoteProtocolError),  # closed before it answered
    (aiohttp.ClientResponseError, httpx.RemoteProtocolError),  # an answer that is not HTTP
    # a body cut short or malformed (`_cut_short` tells a reset apart)
    (aiohttp.ClientPayloadError, httpx.RemoteProtocolError),
    (aiohttp.NonHttpUrlClientError, httpx.UnsupportedProtocol),
    (aiohttp.InvalidURL, httpx.UnsupportedProtocol),
    (aiohttp.ClientConnectionResetError, httpx.WriteError),  # reset while the request was written
    (aiohttp.ClientOSError, httpx.ReadError),
    (aiohttp.ClientConnectionError, httpx.NetworkError),
    (ConnectionError, httpx.ReadError),
    (asyncio.TimeoutError, httpx.ReadTimeout),
    # a request HTTP cannot carry as given: a header value with a line break, a name or
    # value that is not text (httpx's own transport raises LocalProtocolError for these)
    (ValueError, httpx.LocalProtocolError),
)


class MapErrors:
    """`with MAP_ERRORS:` around aiohttp calls: what they raise leaves the block as httpx's
    error for the same failure (`ERROR_MAP`), raised from aiohttp's. Keeps no state, so one
    instance serves every call."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if kind is None or exc is None or not issubclass(kind, Exception) or isinstance(exc, httpx.HTTPError):
            return
        for source, target in ERROR_MAP:
            if isinstance(exc, source):
                if target is httpx.RemoteProtocolError and isinstance(exc, aiohttp.ClientPayloadError):
                    target = _cut_short(exc)
                raise target(_aiohttp_reason(exc)) from exc


MAP_ERRORS = MapErrors()


def _aiohttp_reason(exc: BaseException) -> str:
    """aiohttp's message on one line (its parse errors span several, with a caret line;
    an answer it cannot parse carries the parser's message apart from the status it made up)."""
    text = exc.message if isinstance(exc, aiohttp.ClientResponseError) and isinstance(exc.message, str) and exc.message else str(exc)
    return " ".join(text.split()).rstrip(" ^") or type(exc).__name__


def _cut_short(exc: aiohttp.ClientPayloadError) -> type[httpx.TransportError]:
    """A body that ended before its length: cut by a reset or another socket error (aiohttp
    adds that error's repr to its message, its only mention of it) is a read error, as
    httpx's own transport says; ended by the server closing the connection early, or
    malformed, a protocol error."""
    return httpx.ReadError if "Error(" in str(exc).rpartition(">. ")[2] else httpx.RemoteProtocolError
