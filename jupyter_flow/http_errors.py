"""What went wrong with an HTTP call. A call through a client `make_client` made fails with
httpx's errors whatever the transport (aiohttp's errors become httpx's inside
`jupyter_flow.http_transport`), or with the whole call's deadline (`send`):

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

import httpx

__all__ = ["AnswerTooLarge", "UnsendableRequest", "describe_error", "transport_errors"]


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
