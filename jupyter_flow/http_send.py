"""One HTTP call read in full, within one deadline for the whole call: how the `http` and
`inference` nodes call out. The call goes through the client like any other (its
redirects, cookies, auth, event hooks and transport apply); the answer is the client's
`httpx.Response`, read."""

from __future__ import annotations

import builtins
import functools
import json as _json
from collections.abc import Mapping
from typing import Any

import httpx

from jupyter_flow.http import DEFAULT_TIMEOUT_S
from jupyter_flow.http_errors import UnsendableRequest
from jupyter_flow.workers import Deadline

__all__ = ["Answer", "send"]

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
) -> Answer:
    """One request read in full, within `timeout_s` seconds in all (a server trickling its
    answer does not hold the call past it: `asyncio.TimeoutError`). A `json=` body is
    encoded before anything is sent (a value JSON cannot carry raises `ValueError` or
    `UnicodeEncodeError`); a request httpx cannot build as given raises `UnsendableRequest`;
    a call that fails raises httpx's errors (`jupyter_flow.http_errors`)."""
    body = None if json is _NO_BODY or json is None else _ENCODE_JSON(json).encode("utf-8")  # as httpx encodes `json=`
    if body is not None and not (headers and any(name.lower() == "content-type" for name in headers)):
        headers = {**_JSON_TYPE, **headers} if headers else _JSON_TYPE  # as httpx sets it for `json=`
    with Deadline(timeout_s):
        try:
            request = client.build_request(method, _url(url), content=body if content is None else content, data=form,
                                           params=params, headers=headers, extensions=_WHOLE_CALL)
            return await client.send(request)
        except _REFUSED as exc:
            while isinstance(exc, _GROUPS):  # what went wrong, inside the group
                exc = exc.exceptions[0]  # type: ignore[attr-defined]
            raise UnsendableRequest(" ".join(str(exc).split()) or type(exc).__name__) from exc


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
