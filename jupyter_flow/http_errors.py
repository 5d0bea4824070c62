"""What went wrong with an HTTP call, for either transport (aiohttp's, httpx's own): the
errors a call raises when the call itself fails, and one message for each kind of failure
that names the endpoint (`describe_error`). `jupyter_flow.http` sends; this module names
what it and the transports raise."""

from __future__ import annotations

import asyncio
import functools

__all__ = ["UnsendableRequest", "describe_error", "transport_errors", "unsendable_errors"]


class UnsendableRequest(ValueError):
    """A request the transport refused to send as given (a URL it cannot parse, a port out
    of range, a header value with a line break or characters HTTP headers cannot carry)."""


@functools.lru_cache(maxsize=1)
def unsendable_errors() -> tuple[type[BaseException], ...]:
    """What the transports raise for a request they cannot send as given: a URL, port or
    header value they refuse (httpx's own transport raises an exception group for some)."""
    import builtins

    import httpx

    kinds: list[type[BaseException]] = [ValueError, OverflowError, httpx.InvalidURL]
    group = getattr(builtins, "ExceptionGroup", None)  # Python 3.11+
    if group is not None:
        kinds.append(group)
    return tuple(kinds)


def transport_errors() -> tuple[type[BaseException], ...]:
    """The errors a call through `send` raises when the call itself fails (not the answer):
    the transports' own, and the deadline."""
    import httpx

    try:
        import aiohttp
    except ImportError:  # pragma: no cover - the httpx transport alone
        return (httpx.HTTPError, UnsendableRequest, asyncio.TimeoutError)
    return (httpx.HTTPError, aiohttp.ClientError, UnsendableRequest, asyncio.TimeoutError)


def describe_error(exc: BaseException, endpoint: str, timeout_s: float) -> str:
    """What went wrong with a call to `endpoint`, naming the kind of failure, for either
    transport (aiohttp's own error, where there is one, says more than httpx's mapping)."""
    cause = exc.__cause__ if exc.__cause__ is not None else exc
    kind = type(cause).__name__
    # aiohttp's parse errors read "400, message: ..." over several lines: its own code, not
    # the server's status; the message alone, on one line
    message = getattr(cause, "strerror", None) or getattr(cause, "message", None)
    reason = " ".join(str(message if isinstance(message, str) and message else cause).split()).rstrip(" ^") or " ".join(str(exc).split())
    if isinstance(exc, asyncio.TimeoutError) or ("Timeout" in kind and "Connect" not in kind):
        return f"{endpoint} did not answer within {timeout_s:g} s ({kind})"
    for types, text in _error_texts():
        if isinstance(cause, types) or isinstance(exc, types):
            return text.format(endpoint=endpoint, kind=kind, reason=reason or "no reason given")
    return f"request to {endpoint} failed ({kind}: {reason})"


def _error_texts() -> list[tuple[tuple[type[BaseException], ...], str]]:
    """(error types, message) in the order they are tried; aiohttp's first, the more
    specific before the more general."""
    import httpx

    texts: list[tuple[tuple[type[BaseException], ...], str]] = []
    try:
        import aiohttp
    except ImportError:  # pragma: no cover - the httpx transport alone
        pass
    else:
        texts += [
            ((aiohttp.ClientConnectorError,), "cannot connect to {endpoint}: {reason} ({kind})"),
            ((aiohttp.ServerDisconnectedError,), "{endpoint} closed the connection before it answered ({kind})"),
            ((aiohttp.ClientPayloadError,), "the connection to {endpoint} broke while the answer was being read ({kind}: {reason})"),
            ((aiohttp.ClientOSError,), "the connection to {endpoint} failed: {reason} ({kind})"),
            ((aiohttp.ClientResponseError, aiohttp.http_exceptions.HttpProcessingError),
             "{endpoint} broke the HTTP protocol ({kind}: {reason})"),
        ]
    texts += [
        ((UnsendableRequest,), "cannot send the request to {endpoint}: {reason} ({kind})"),
        ((httpx.ConnectError,), "cannot connect to {endpoint}: {reason} ({kind})"),
        ((httpx.RemoteProtocolError,), "{endpoint} broke the HTTP protocol or closed the connection ({kind}: {reason})"),
        ((httpx.ReadError,), "the connection to {endpoint} broke while the answer was being read ({kind}: {reason})"),
    ]
    return texts
