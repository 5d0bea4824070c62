"""`jupyter_flow.http.send` through both transports against real loopback servers: the
aiohttp session under the shared client (the way the `http` node sends JSON) and httpx's
own request path must send the same bytes and read the same answer."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Callable
from typing import Any

import pytest
from servers import LoopbackServer, Reply, Request

from jupyter_flow import Flow, FlowRunError
from jupyter_flow.http import TRANSPORT_ENV, Answer, describe_error, make_client, send, transport_name

Serve = Callable[[dict[str, Any]], LoopbackServer]
TRANSPORTS = ["aiohttp", "httpx"]


def call(transport: str, monkeypatch: pytest.MonkeyPatch, method: str, url: str, **kwargs: Any) -> Answer:
    monkeypatch.setenv(TRANSPORT_ENV, transport)
    assert transport_name() == transport

    async def go() -> Answer:
        client = make_client()
        try:
            return await send(client, method, url, **kwargs)
        finally:
            await client.aclose()

    return asyncio.run(go())


def echo(req: Request) -> Reply:
    return Reply(200, {"method": req.method, "path": req.path, "body": req.raw.decode("utf-8", "replace"),
                       "content_type": _header(req, "content-type"), "user_agent": _header(req, "user-agent")})


def _header(req: Request, name: str) -> str | None:
    return next((v for k, v in req.headers.items() if k.lower() == name), None)


def test_a_json_body_goes_out_as_the_same_bytes_both_ways(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    server = serve({"/echo": echo})
    payload = {"text": "naïve ☃ 𝄞 \u200b", "n": 1.5, "none": None, "list": [1, "two"], "nested": {"k": True}}
    seen = {t: call(t, monkeypatch, "POST", f"{server.url}/echo", json=payload).json() for t in TRANSPORTS}
    assert seen["aiohttp"] == seen["httpx"]
    assert json.loads(seen["aiohttp"]["body"]) == payload
    assert "naïve ☃ 𝄞" in seen["aiohttp"]["body"]  # UTF-8, not \\u escapes
    assert seen["aiohttp"]["content_type"] == "application/json"
    assert seen["aiohttp"]["user_agent"].startswith("jupyter-flow/")


def test_caller_headers_override_and_are_sent(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    server = serve({"/echo": echo})
    for t in TRANSPORTS:
        call(t, monkeypatch, "POST", f"{server.url}/echo", json={}, headers={"User-Agent": "mine/1", "X-Key": "k"})
    for req in server.requests:
        assert _header(req, "user-agent") == "mine/1"
        assert _header(req, "x-key") == "k"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_redirects_keep_or_drop_the_body_as_http_says(serve: Serve, monkeypatch: pytest.MonkeyPatch, transport: str) -> None:
    server = serve({
        "/old": lambda req: Reply(307, {}, headers={"location": "/echo"}),
        "/see-other": lambda req: Reply(303, {}, headers={"location": "/echo"}),
        "/echo": echo,
    })
    kept = call(transport, monkeypatch, "POST", f"{server.url}/old", json={"a": 1}).json()
    assert (kept["method"], json.loads(kept["body"])) == ("POST", {"a": 1})
    changed = call(transport, monkeypatch, "POST", f"{server.url}/see-other", json={"a": 1}).json()
    assert (changed["method"], changed["body"]) == ("GET", "")


def test_redirect_loops_end_with_an_error_both_ways(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    server = serve({"/loop": lambda req: Reply(307, {}, headers={"location": "/loop"})})
    for t in TRANSPORTS:
        with pytest.raises(Exception) as info:
            call(t, monkeypatch, "POST", f"{server.url}/loop", json={})
        assert "redirect" in (type(info.value).__name__ + str(info.value)).lower()
    assert len(server.requests) == 2 * 21  # the first request and 20 redirects, each way


def test_query_parameters_are_encoded_alike(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    server = serve({"/echo": echo})
    params = {"q": "a b&c=é", "flag": True, "off": False, "n": 3, "none": None, "many": [1, 2]}
    paths = {t: call(t, monkeypatch, "GET", f"{server.url}/echo", params=params).json()["path"] for t in TRANSPORTS}
    assert paths["aiohttp"] == paths["httpx"]
    assert "flag=true" in paths["aiohttp"] and "many=1&many=2" in paths["aiohttp"]


def test_the_answer_reads_alike(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    body = "Grüße, café".encode("latin-1")
    server = serve({"/latin": lambda req: Reply(201, body, content_type="text/plain; charset=latin-1", headers={"X-Thing": "1"})})
    answers = {t: call(t, monkeypatch, "POST", f"{server.url}/latin", json=None) for t in TRANSPORTS}
    for answer in answers.values():
        assert answer.status_code == 201
        assert answer.text == "Grüße, café"
        assert answer.headers["x-thing"] == "1"
        assert all(k == k.lower() for k in answer.headers)
        with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)):
            answer.json()
    assert answers["aiohttp"].content == answers["httpx"].content == body


def test_a_body_json_cannot_carry_is_refused_before_sending(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    server = serve({"/echo": echo})
    for t in TRANSPORTS:
        with pytest.raises(ValueError, match="JSON compliant"):
            call(t, monkeypatch, "POST", f"{server.url}/echo", json={"x": math.nan})
        with pytest.raises(UnicodeEncodeError):
            call(t, monkeypatch, "POST", f"{server.url}/echo", json={"x": "lone \ud800 surrogate"})
    assert server.requests == []


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_whole_call_ends_by_its_deadline(serve: Serve, monkeypatch: pytest.MonkeyPatch, transport: str) -> None:
    import time

    server = serve({"/slow": lambda req: Reply(200, {"late": True}, delay_s=3)})
    t0 = time.perf_counter()
    with pytest.raises(asyncio.TimeoutError) as info:
        call(transport, monkeypatch, "POST", f"{server.url}/slow", json={}, timeout_s=0.3)
    assert time.perf_counter() - t0 < 2.5
    assert describe_error(info.value, "the endpoint", 0.3) .startswith("the endpoint did not answer within 0.3 s")


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_the_http_node_answers_the_same_through_either_transport(serve: Serve, monkeypatch: pytest.MonkeyPatch, transport: str) -> None:
    monkeypatch.setenv(TRANSPORT_ENV, transport)
    server = serve({
        "/predict": lambda req: Reply(200, {"label": req.body["text"].upper()}),
        "/down": lambda req: Reply(503, {"detail": "overloaded"}),
    })
    flow = Flow.from_dict({"nodes": [
        {"id": "a", "type": "http", "timeout_s": 5, "config": {"endpoint": f"{server.url}/predict", "input_mapping": {"text": "héllo"}}},
        {"id": "b", "type": "http", "config": {"endpoint": f"{server.url}/predict", "input_mapping": {"text": "{{ a.output.label }}"},
                                               "response": "full"}},
    ], "edges": [{"from": "a", "to": "b"}]})
    result = flow.run()
    assert result["a"].outputs == {"label": "HÉLLO"}
    full = result["b"].outputs
    assert full["status_code"] == 200 and json.loads(full["body"]) == {"label": "HÉLLO"}
    assert full["headers"]["content-type"] == "application/json"
    down = Flow.from_dict({"nodes": [{"id": "m", "type": "http", "config": {"endpoint": f"{server.url}/down"}}]})
    with pytest.raises(FlowRunError) as info:
        down.run()
    assert "answered HTTP 503" in str(info.value) and "overloaded" in str(info.value)


def test_with_a_proxy_configured_every_request_goes_through_httpx(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    # httpx routes by HTTP_PROXY/NO_PROXY; the short cut to aiohttp would not, so it is off
    from jupyter_flow.http import _AIOHTTP_TRANSPORTS

    server = serve({"/echo": echo})
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")

    async def go() -> tuple[Answer, bool]:
        client = make_client()
        try:
            return await send(client, "POST", f"{server.url}/echo", json={"a": 1}), client in _AIOHTTP_TRANSPORTS
        finally:
            await client.aclose()

    answer, short_cut = asyncio.run(go())
    assert answer.json()["body"] == '{"a":1}'
    assert not short_cut
