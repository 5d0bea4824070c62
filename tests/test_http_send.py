"""`jupyter_flow.http_send.send` through both transports against real loopback servers:
the aiohttp transport under the shared client (`jupyter_flow.http_transport`) and httpx's
own must send the same bytes, read the same answer and fail with the same httpx errors;
the loop's shared client and its end."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from servers import LoopbackServer, Reply, Request

from jupyter_flow import Flow, FlowRunError
from jupyter_flow.http import TRANSPORT_ENV, make_client, transport_name
from jupyter_flow.http_errors import describe_error
from jupyter_flow.http_send import Answer, send

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


def all_headers(req: Request) -> Reply:
    return Reply(200, {"headers": sorted((k.lower(), v) for k, v in req.headers.items())})


@pytest.mark.parametrize(("method", "kwargs"), [
    pytest.param("GET", {}, id="get"),
    pytest.param("POST", {"json": {"a": 1}}, id="json"),
    pytest.param("POST", {"content": b"raw bytes"}, id="bytes without a content type"),
    pytest.param("POST", {"content": b"x", "headers": {"User-Agent": "", "Accept": ""}}, id="emptied defaults"),
])
def test_the_server_gets_the_same_headers_through_either_transport(serve: Serve, monkeypatch: pytest.MonkeyPatch,
                                                                     method: str, kwargs: dict[str, Any]) -> None:
    """aiohttp adds none of its own headers (Accept, Accept-Encoding, User-Agent, a
    Content-Type for a body), whether or not httpx's request has them."""
    server = serve({"/h": all_headers})
    seen = {t: call(t, monkeypatch, method, f"{server.url}/h", **kwargs).json()["headers"] for t in TRANSPORTS}
    assert seen["aiohttp"] == seen["httpx"]


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


def test_a_proxy_the_environment_names_is_used_as_httpx_uses_it(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    # HTTP_PROXY/NO_PROXY route a request as httpx routes it, whatever the transport
    proxy = serve({"http://models.invalid/echo": echo})  # a proxy sees the whole URL as the path
    direct = serve({"/echo": echo})
    monkeypatch.setenv("HTTP_PROXY", proxy.url)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    for t in TRANSPORTS:
        through = call(t, monkeypatch, "POST", "http://models.invalid/echo", json={"a": 1}).json()
        past = call(t, monkeypatch, "POST", f"{direct.url}/echo", json={"a": 1}).json()
        assert (through["path"], through["body"]) == ("http://models.invalid/echo", '{"a":1}')
        assert past["path"] == "/echo"
    assert len(proxy.requests) == len(direct.requests) == 2


# -- the client's settings, whatever the transport -------------------------------------------


def _node_flow(url: str, **config: Any) -> Flow:
    return Flow.from_dict({"nodes": [{"id": "call", "type": "http", "timeout_s": 5, "config": {"endpoint": url, **config}}]})


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_a_cookie_an_endpoint_sets_is_sent_back_by_later_nodes(serve: Serve, monkeypatch: pytest.MonkeyPatch, transport: str) -> None:
    # an IP host, as a service address in a cluster is: aiohttp's own cookie store would refuse it
    monkeypatch.setenv(TRANSPORT_ENV, transport)
    server = serve({
        "/login": lambda req: Reply(200, {"ok": True}, headers={"set-cookie": "sid=abc; Path=/"}),
        "/me": lambda req: Reply(200, {"cookie": _header(req, "cookie")}),
    })
    flow = Flow.from_dict({"nodes": [
        {"id": "login", "type": "http", "config": {"endpoint": f"{server.url}/login"}},
        {"id": "me", "type": "http", "config": {"endpoint": f"{server.url}/me"}},
    ], "edges": [{"from": "login", "to": "me"}]})
    assert flow.run()["me"].outputs == {"cookie": "sid=abc"}


def _with_client_settings(transport: str, monkeypatch: pytest.MonkeyPatch, url: str) -> tuple[str, int, list[str]]:
    """Through a client given auth, params, a cookie and a hook after `make_client`: the
    path the echo saw, then the status of a 307 once redirects are off, and the hook's log."""
    import httpx

    monkeypatch.setenv(TRANSPORT_ENV, transport)
    hooks: list[str] = []

    async def hook(request: httpx.Request) -> None:
        hooks.append(request.url.path)

    async def go() -> tuple[Answer, Answer]:
        client = make_client()
        client.auth = httpx.BasicAuth("user", "pw")
        client.params = httpx.QueryParams({"api-version": "2"})
        client.cookies.set("session", "s1")
        client.event_hooks = {"request": [hook], "response": []}
        try:
            echoed = await send(client, "POST", f"{url}/echo", json={})
            client.follow_redirects = False
            return echoed, await send(client, "POST", f"{url}/old", json={})
        finally:
            await client.aclose()

    echoed, not_followed = asyncio.run(go())
    return echoed.json()["path"], not_followed.status_code, hooks


def test_settings_added_to_the_client_are_honoured_both_ways(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    server = serve({"/echo": echo, "/old": lambda req: Reply(307, {}, headers={"location": "/echo"})})
    seen = {t: _with_client_settings(t, monkeypatch, server.url) for t in TRANSPORTS}
    assert seen["aiohttp"] == seen["httpx"] == ("/echo?api-version=2", 307, ["/echo", "/old"])
    for req in server.requests:
        assert _header(req, "authorization") == "Basic dXNlcjpwdw==" and "session=s1" in (_header(req, "cookie") or "")


def _raw_answer(headers: bytes, body: bytes = b"{}") -> Callable[[Any], None]:
    def handler(conn: Any) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n" % len(body) + headers + b"\r\n" + body)

    return handler


@pytest.mark.parametrize("encoded", ["utf-8", "latin-1"])
def test_header_values_decode_as_httpx_decodes_them(monkeypatch: pytest.MonkeyPatch, encoded: str) -> None:
    from servers import RawServer

    header = 'content-disposition: attachment; filename="Grüße.txt"\r\ncontent-type: application/json\r\n'.encode(encoded)
    server = RawServer(_raw_answer(header))
    try:
        answers = {t: call(t, monkeypatch, "GET", server.url) for t in TRANSPORTS}
        flow_out = _node_flow(server.url, response="full").run()["call"].outputs
    finally:
        server.close()
    assert answers["aiohttp"].headers == answers["httpx"].headers
    assert "Grüße" in answers["aiohttp"].headers["content-disposition"] or encoded == "latin-1"
    json.dumps(flow_out["headers"], ensure_ascii=False).encode("utf-8")  # a result line can carry it


@pytest.mark.parametrize("ctype", ["text/plain; Charset=ISO-8859-1", "text/plain;CHARSET=latin-1", 'text/plain; charset="latin-1"',
                                   "text/plain; charset=no-such-charset"])
def test_the_charset_is_read_in_any_spelling(serve: Serve, monkeypatch: pytest.MonkeyPatch, ctype: str) -> None:
    body = "Grüße".encode("latin-1")
    server = serve({"/t": lambda req: Reply(200, body, content_type=ctype)})
    texts = {t: call(t, monkeypatch, "GET", f"{server.url}/t").text for t in TRANSPORTS}
    assert texts["aiohttp"] == texts["httpx"]
    assert texts["aiohttp"] == ("Grüße" if "no-such" not in ctype else body.decode("utf-8", "replace"))


@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_redirects_change_the_method_as_httpx_does(serve: Serve, monkeypatch: pytest.MonkeyPatch, method: str, status: int) -> None:
    server = serve({"/moved": lambda req: Reply(status, {}, headers={"location": "/echo"}), "/echo": echo})
    seen = {t: call(t, monkeypatch, method, f"{server.url}/moved", json={"a": 1}).json() for t in TRANSPORTS}
    assert seen["aiohttp"] == seen["httpx"], seen


def test_a_redirect_to_another_host_takes_the_new_host_and_drops_authorization(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    other = serve({"/echo": echo})
    port = other.url.rsplit(":", 1)[1]
    server = serve({"/away": lambda req: Reply(307, {}, headers={"location": f"http://localhost:{port}/echo"})})
    for t in TRANSPORTS:
        call(t, monkeypatch, "POST", f"{server.url}/away", json={}, headers={"Authorization": "Bearer secret", "Host": "api.example"})
    hosts = [(_header(r, "host"), _header(r, "authorization")) for r in other.requests]
    assert hosts == [(f"localhost:{port}", None)] * 2


def test_compressed_answers_decode_as_httpx_decodes_them(monkeypatch: pytest.MonkeyPatch) -> None:
    import gzip

    from servers import RawServer

    body = gzip.compress(gzip.compress(b'{"a": 1}'))
    server = RawServer(_raw_answer(b"content-type: application/json\r\ncontent-encoding: gzip, gzip\r\n", body))
    try:
        answers = {t: call(t, monkeypatch, "GET", server.url) for t in TRANSPORTS}
    finally:
        server.close()
    assert answers["aiohttp"].json() == answers["httpx"].json() == {"a": 1}


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("case", ["a port out of range", "a header with a line break", "a header httpx cannot encode"])
def test_a_request_that_cannot_be_sent_names_the_endpoint(serve: Serve, monkeypatch: pytest.MonkeyPatch, transport: str, case: str) -> None:
    monkeypatch.setenv(TRANSPORT_ENV, transport)
    server = serve({"/echo": echo})
    monkeypatch.setenv("API_KEY", "k\n")  # read from a file with its trailing newline
    config: dict[str, Any] = {
        "a port out of range": {"endpoint": "http://127.0.0.1:99999/x", "method": "GET", "params": {"q": 1}},
        "a header with a line break": {"endpoint": f"{server.url}/echo", "headers": {"X-Key": "${API_KEY}"}},
        "a header httpx cannot encode": {"endpoint": f"{server.url}/echo", "headers": {"X-Name": "Grüße ☃"}},
    }[case]
    endpoint = config.pop("endpoint")
    with pytest.raises(FlowRunError) as info:
        _node_flow(endpoint, **config).run()
    error = info.value.result["call"].error  # type: ignore[index]
    assert error.type == "RemoteError", error
    assert endpoint in error.message and "\n" not in error.message, error.message
    print(f"{transport}, {case}: {error.message}")
    assert server.requests == []


def test_a_content_type_the_caller_gives_is_the_only_one_sent(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    server = serve({"/echo": echo})
    for t in TRANSPORTS:
        call(t, monkeypatch, "POST", f"{server.url}/echo", json={"a": 1}, headers={"Content-Type": "application/json; charset=utf-8"})
    for req in server.requests:
        sent = [v for k, v in req.headers.items() if k.lower() == "content-type"]
        assert sent == ["application/json; charset=utf-8"], sent


def _one_setting(name: str, client: Any, url: str, seen: list[str]) -> str:
    """Change one setting of a client `make_client` made; the URL to send to."""
    import httpx

    async def hook(request: httpx.Request) -> None:
        seen.append(request.url.path)

    if name == "params":
        client.params = httpx.QueryParams({"api-version": "2"})
    elif name == "cookie":
        client.cookies.set("session", "s1")
    elif name == "hook":
        client.event_hooks["request"].append(hook)
    elif name == "base_url":
        client.base_url = url
        return "/echo"
    elif name == "header":
        client.headers["x-team"] = "search"
    elif name == "headers updated":
        client.headers.update({"X-Team": "search"})
    elif name == "header removed":
        del client.headers["user-agent"]
    elif name == "headers replaced":
        client.headers = {"x-team": "search"}
    return f"{url}/echo"


@pytest.mark.parametrize("setting", ["params", "cookie", "hook", "base_url", "header", "headers updated", "header removed",
                                     "headers replaced"])
def test_each_setting_added_to_the_client_alone_is_honoured(serve: Serve, monkeypatch: pytest.MonkeyPatch, setting: str) -> None:
    # a setting changed after the first call applies from the next call on (nothing the
    # first call worked out is kept past a change)
    server = serve({"/echo": echo})
    monkeypatch.setenv(TRANSPORT_ENV, "aiohttp")
    hooked: list[str] = []

    async def go() -> tuple[Answer, Answer]:
        client = make_client()
        try:
            before = await send(client, "POST", f"{server.url}/echo", json={})
            target = _one_setting(setting, client, server.url, hooked)
            return before, await send(client, "POST", target, json={})
        finally:
            await client.aclose()

    before, after = asyncio.run(go())
    assert before.json()["path"] == "/echo" and after.status_code == 200
    first, second = server.requests
    assert _header(first, "cookie") is None and _header(first, "x-team") is None
    expected = {
        "params": lambda: after.json()["path"] == "/echo?api-version=2",
        "cookie": lambda: _header(second, "cookie") == "session=s1",
        "hook": lambda: hooked == ["/echo"],
        "base_url": lambda: after.json()["path"] == "/echo",
        "header": lambda: _header(second, "x-team") == "search",
        "headers updated": lambda: _header(second, "x-team") == "search",
        "header removed": lambda: _header(first, "user-agent") is not None and _header(second, "user-agent") is None,
        "headers replaced": lambda: _header(second, "x-team") == "search" and _header(second, "user-agent") is not None,
    }
    assert expected[setting](), (setting, after.json(), second.headers)


def test_tls_is_verified_and_ssl_cert_file_is_honoured_when_set_later(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    # the TLS settings are made once per process (loading the bundle is slow) but follow
    # SSL_CERT_FILE as httpx does, even when a notebook sets it after the first call
    import http.server
    import ssl
    import threading

    import trustme

    ca = trustme.CA()
    server_cert = ca.issue_cert("127.0.0.1")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length") or 0))
            body = b'{"ok": true}'
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_cert.configure_cert(context)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"https://127.0.0.1:{httpd.server_address[1]}/predict"
    monkeypatch.setenv(TRANSPORT_ENV, "aiohttp")
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    spec = {"nodes": [{"id": "tls", "type": "http", "config": {"endpoint": url}}]}
    flow = Flow.from_dict(spec)
    try:
        with pytest.raises(FlowRunError) as info:  # signed by no authority it trusts
            flow.run()
        assert "certificate" in str(info.value).lower() and url in str(info.value)
        bundle = tmp_path / "ca.pem"
        ca.cert_pem.write_to_path(str(bundle))
        monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
        assert asyncio.run(Flow.from_dict(spec).arun())["tls"].outputs == {"ok": True}  # a new loop, a new client
    finally:
        httpd.shutdown()


def test_an_ended_event_loop_is_not_kept_alive_by_its_client_or_deadlines(serve: Serve) -> None:
    # a script that calls flow.run() again and again gets a new loop each time: the shared
    # client and the deadlines of each loop must go with it, or every call leaks a loop
    import gc
    import weakref

    server = serve({"/echo": echo})
    flow = Flow.from_dict({"nodes": [{"id": "call", "type": "http", "timeout_s": 5, "config": {"endpoint": f"{server.url}/echo"}}]})
    loops: list[weakref.ref[asyncio.AbstractEventLoop]] = []

    async def one() -> None:
        loops.append(weakref.ref(asyncio.get_running_loop()))
        await flow.arun({})

    for _ in range(3):
        asyncio.run(one())
    gc.collect()
    assert [ref() for ref in loops] == [None, None, None]
    assert len(server.requests) == 3


def test_a_flow_that_calls_nothing_over_http_makes_no_client() -> None:
    # a flow of local models (here a template) takes no client and imports no transport;
    # a later flow with an HTTP node on the same loop still gets the loop's shared client
    import subprocess
    import sys

    script = (
        "import asyncio, sys\n"
        "from jupyter_flow import Flow\n"
        "local = Flow.from_dict({'inputs': {'x': {'type': 'integer', 'default': 1}},"
        " 'nodes': [{'id': 't', 'type': 'template', 'config': {'template': '{{ x + 1 }}'}}]})\n"
        "for _ in range(3):\n"
        "    assert local.run({'x': 2})['t'].outputs == {'text': '3'}, local.run({'x': 2})['t'].outputs\n"
        "assert 'aiohttp' not in sys.modules and 'httpx_aiohttp' not in sys.modules, 'a transport was imported'\n"
        "from jupyter_flow.http import shared_client\n"
        "async def both():\n"
        "    await local.arun({})\n"
        "    return await shared_client()\n"
        "client = asyncio.run(both())\n"
        "assert client.is_closed, 'the shared client outlived its loop'\n"
        "print('ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_a_node_takes_the_shared_client_on_first_use_from_the_loop_or_a_worker_thread(serve: Serve) -> None:
    from jupyter_flow import Node, NodeRegistry
    from jupyter_flow.http import shared_client

    server = serve({"/echo": echo})
    seen: dict[str, Any] = {}

    class Both(Node):
        kind = "both-ways"

        async def run(self, inputs: dict[str, Any], ctx: Any) -> Any:
            seen["thread"] = await ctx._runtime.run_blocking(lambda: ctx.http)  # first use: from a worker thread
            seen["loop"] = ctx.http
            seen["shared"] = await shared_client()
            return {"status": (await ctx.http.post(f"{server.url}/echo", json={})).status_code}

    registry = NodeRegistry()
    registry.register(Both)
    flow = Flow.from_dict({"nodes": [{"id": "b", "type": "both-ways"}]}, registry=registry)
    assert flow.run()["b"].outputs == {"status": 200}
    assert seen["thread"] is seen["loop"] is seen["shared"]
    assert len(server.requests) == 1


def test_the_shared_client_is_refused_where_nothing_could_close_it() -> None:
    # a worker thread left running after its run ended (a node past its timeout) must get
    # an error at once, not wait for a loop that will never run again; and a loop that is
    # shutting down makes no client, which nothing would close and which would keep it alive
    import threading

    from jupyter_flow.http import loop_shared_client, shared_client

    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(asyncio.sleep(0))
        errors: list[BaseException] = []

        def from_thread() -> None:
            try:
                loop_shared_client(loop)
            except RuntimeError as exc:
                errors.append(exc)

        worker = threading.Thread(target=from_thread)
        worker.start()
        worker.join(10)
        assert not worker.is_alive()
        assert len(errors) == 1 and "not running" in str(errors[0])
        loop.run_until_complete(loop.shutdown_asyncgens())
        with pytest.raises(RuntimeError, match="shutting down"):
            loop.run_until_complete(shared_client())
    finally:
        loop.close()


# -- one tree of errors: httpx's, whatever the transport -------------------------------------


def _reset_mid_body(conn: Any) -> None:
    import socket
    import struct
    import time

    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"label\": ")
    time.sleep(0.05)  # the head arrives on its own: the reset comes while the body is read
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST


def _stall(head: bytes) -> Callable[[Any], None]:
    def handler(conn: Any) -> None:
        import time

        conn.sendall(head)
        time.sleep(3)

    return handler


def _answer(raw: bytes) -> Callable[[Any], None]:
    def handler(conn: Any) -> None:
        conn.sendall(raw)

    return handler


#: a server that fails the call, and the httpx error a caller gets, through either transport
FAILURES: dict[str, tuple[Callable[[Any], None] | None, str]] = {
    "a refused connection": (None, "ConnectError"),
    "a reset mid-body": (_reset_mid_body, "ReadError"),
    "a stall before the answer, past the read timeout": (_stall(b""), "ReadTimeout"),
    "a stall mid-body, past the read timeout": (_stall(b"HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n{"), "ReadTimeout"),
    "a status line that is not HTTP": (_answer(b"HTTP/1.1 abc OK\r\ncontent-length: 2\r\n\r\n{}"), "RemoteProtocolError"),
    "an answer that is not HTTP at all": (_answer(b"hello there\r\n\r\n"), "RemoteProtocolError"),
    "a close before any answer": (_answer(b""), "RemoteProtocolError"),
    "a close before the body's end": (_answer(b"HTTP/1.1 200 OK\r\ncontent-length: 50\r\n\r\n{\"a\": 1}"), "RemoteProtocolError"),
    "a broken chunked body": (_answer(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{\"a\"\r\n0\r\n\r\n"),
                              "RemoteProtocolError"),
    "gzip announced, plain text sent": (_answer(b"HTTP/1.1 200 OK\r\ncontent-encoding: gzip\r\ncontent-length: 8\r\n\r\n{\"a\": 1}"),
                                        "DecodingError"),
}


def _failed_calls(failure: str, calls: dict[str, Callable[[str], Awaitable[Any]]]) -> tuple[str, dict[str, BaseException]]:
    """The server `FAILURES` names for `failure` (none listening for a refused connection),
    its URL, and what each of `calls` raised when it called that URL, one after another."""
    from servers import RawServer, free_port

    handler, _ = FAILURES[failure]
    server = RawServer(handler) if handler is not None else None
    url = server.url if server is not None else f"http://127.0.0.1:{free_port()}/predict"  # nothing listens there

    async def failed(call: Callable[[str], Awaitable[Any]]) -> BaseException:
        try:
            await call(url)
        except Exception as exc:
            return exc
        raise AssertionError("the call did not fail")

    try:
        return url, {name: asyncio.run(failed(call)) for name, call in calls.items()}
    finally:
        if server is not None:
            server.close()


@pytest.mark.parametrize("failure", list(FAILURES))
def test_a_failed_call_raises_httpx_s_error_for_it_through_either_transport(monkeypatch: pytest.MonkeyPatch, failure: str) -> None:
    _, expected = FAILURES[failure]

    def through(transport: str) -> Callable[[str], Awaitable[Any]]:
        async def post(url: str) -> None:
            monkeypatch.setenv(TRANSPORT_ENV, transport)
            client = make_client(timeout_s=0.5)
            try:
                await client.post(url, json={"a": 1})
            finally:
                await client.aclose()

        return post

    url, raised = _failed_calls(failure, {t: through(t) for t in TRANSPORTS})
    got = {t: type(exc).__name__ for t, exc in raised.items()}
    if failure in ("a close before the body's end", "a close before any answer") and got != {t: expected for t in TRANSPORTS}:
        # a close racing the last bytes can reach the client as a reset on a loaded machine:
        # both transports then say ReadError, still one of httpx's classes for a cut answer
        expected = "ReadError" if set(got.values()) == {"ReadError"} or got.get("aiohttp") == "ReadError" else expected
        got = {t: expected if name in ("ReadError", "RemoteProtocolError") else name for t, name in got.items()}
    assert got == {t: expected for t in TRANSPORTS}
    import aiohttp
    import httpx

    ours = raised["aiohttp"]
    assert isinstance(ours, httpx.HTTPError) and str(ours)  # a reason, not an empty message
    if expected != "DecodingError":  # httpx decodes the body itself, after the transport
        assert isinstance(ours.__cause__, aiohttp.ClientError), repr(ours.__cause__)  # raised from aiohttp's own
    message = describe_error(ours, url, 0.5)
    assert url in message and expected in message and "\n" not in message, message
    for exc in raised.values():  # each names the request it failed, as httpx's client's errors do
        assert isinstance(exc, httpx.RequestError) and exc.request.url == httpx.URL(url)


@pytest.mark.parametrize("failure", ["a refused connection", "a close before any answer", "a close before the body's end"])
def test_a_failed_call_sent_straight_to_the_transport_names_its_request(failure: str) -> None:
    """A node's call goes to the aiohttp transport without httpx's client around it: the
    error it raises still names the request that failed."""
    import httpx

    _, expected = FAILURES[failure]

    async def call(url: str) -> None:
        client = make_client(timeout_s=2)
        try:
            await send(client, "POST", url, json={"a": 1}, timeout_s=2)
        finally:
            await client.aclose()

    url, failed = _failed_calls(failure, {"send": call})
    raised = failed["send"]
    assert isinstance(raised, httpx.RequestError), repr(raised)
    assert type(raised).__name__ in (expected, "ReadError"), repr(raised)  # a close racing the last bytes may read as a reset
    assert raised.request.url == httpx.URL(url) and raised.request.method == "POST"


def test_a_streamed_answer_reaches_the_caller_as_it_arrives() -> None:
    # the second half is sent only once the caller has read the first: an answer held back
    # until its end would never come
    import threading

    from servers import RawServer

    first_read = threading.Event()

    def two_halves(conn: Any) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n6\r\nfirst \r\n")
        if first_read.wait(10):
            conn.sendall(b"6\r\nsecond\r\n0\r\n\r\n")

    server = RawServer(two_halves)

    async def go() -> list[bytes]:
        client = make_client(timeout_s=5)
        try:
            async with client.stream("POST", server.url, json={}) as response:
                chunks = []
                async for chunk in response.aiter_bytes():
                    chunks.append(chunk)
                    first_read.set()
                return chunks
        finally:
            await client.aclose()

    try:
        assert asyncio.run(go()) == [b"first ", b"second"]
    finally:
        server.close()


def test_one_client_serves_calls_from_one_event_loop_after_another(serve: Serve) -> None:
    # each loop gets its own connections (one belongs to the loop that opened it)
    server = serve({"/echo": echo})
    client = make_client()

    async def one() -> int:
        return (await client.post(f"{server.url}/echo", json={})).status_code

    assert [asyncio.run(one()) for _ in range(3)] == [200, 200, 200]
    asyncio.run(client.aclose())
    assert client.is_closed


def test_the_http_modules_read_no_other_object_s_private_attributes() -> None:
    # what httpx, aiohttp and asyncio keep behind an underscore may change in any release:
    # the HTTP modules use their public API only (`self._x`, their own state, is fine)
    import ast
    from pathlib import Path

    import jupyter_flow

    package = Path(jupyter_flow.__file__).parent
    found = []
    for path in sorted(package.glob("http*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            name = None
            if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.endswith("__"):
                owner = node.value
                if not (isinstance(owner, ast.Name) and owner.id in ("self", "cls")):
                    name = node.attr
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in ("getattr", "hasattr", "setattr"):
                args = node.args
                if len(args) > 1 and isinstance(args[1], ast.Constant) and str(args[1].value).startswith("_"):
                    name = str(args[1].value)
            if name is not None:
                found.append(f"{path.name}:{node.lineno}: {name}")
    assert found == []


def test_a_prepared_request_has_what_httpx_s_own_constructor_gives_it() -> None:
    """`PreparedRequest` sets httpx.Request's attributes itself (to share the URL and copy
    the headers only when they are read): an httpx whose constructor sets more than these
    makes this fail."""
    import httpx

    from jupyter_flow.http_transport import PreparedHeaders, PreparedRequest

    url = httpx.URL("http://127.0.0.1:9/a?b=1")
    headers = httpx.Headers({"Host": "127.0.0.1:9", "Content-Length": "2"})
    extensions = {"timeout": httpx.Timeout(None).as_dict()}
    theirs = httpx.Request("post", url, headers=headers, stream=httpx.ByteStream(b"{}"), extensions=extensions)
    ours = PreparedRequest("post", PreparedHeaders(url, headers, body=True), b"{}", extensions)
    assert set(vars(theirs)) <= set(vars(ours)) | {"headers", "stream", "extensions"}  # properties: made when read
    assert set(vars(ours)) - set(vars(theirs)) <= {"prepared", "body", "_own_headers", "_own_stream", "_given_extensions"}
    assert ours.given_extensions() is extensions  # read without a copy
    assert (ours.method, ours.url, ours.headers.raw, ours.extensions) == (theirs.method, theirs.url, theirs.headers.raw, theirs.extensions)
    ours.extensions["trace"] = "mine"  # its own copy, once read: what was given stays as it was
    assert "trace" not in extensions and ours.given_extensions() is ours.extensions
    assert list(ours.stream) == list(theirs.stream) == [b"{}"]  # type: ignore[call-overload]
    assert ours.url is url and ours.headers is not headers and ours.extensions is not extensions
    assert not ours.untouched()  # its headers were read: they may have been changed
    ours.headers["X-Mine"] = "1"  # a request's headers are its own
    assert "x-mine" not in headers
    assert ours.prepared.headers is headers and "x-mine" not in ours.prepared.headers


def test_a_prepared_request_changed_before_it_is_sent_goes_out_as_changed(serve: Serve) -> None:
    """The transport sends a prepared request's prepared headers and body only while no one
    has changed them; changed headers or a new body go out as they are."""
    import ssl

    import httpx

    from jupyter_flow.http_transport import AiohttpTransport, PreparedHeaders, PreparedRequest

    server = serve({"/h": lambda req: Reply(200, {"headers": sorted((k.lower(), v) for k, v in req.headers.items()),
                                                  "body": req.raw.decode()})})
    url = httpx.URL(f"{server.url}/h")
    prepared = PreparedHeaders(url, httpx.Headers({"Host": url.netloc.decode(), "Content-Length": "2",
                                                   "Content-Type": "application/json"}), body=True)

    async def go() -> list[dict[str, Any]]:
        transport = AiohttpTransport(limits=httpx.Limits(), ssl_context=ssl.create_default_context())
        seen = []
        try:
            for change in ("none", "headers", "body"):
                request = PreparedRequest("POST", prepared, b"{}", {})
                if change == "headers":
                    request.headers["X-Changed"] = "yes"
                elif change == "body":
                    request.stream = httpx.ByteStream(b'{"a":1}')
                    request.headers["Content-Length"] = "7"
                response = await transport.handle_async_request(request)
                seen.append(json.loads(await response.aread()))
        finally:
            await transport.aclose()
        return seen

    plain, changed, new_body = asyncio.run(go())
    assert plain["body"] == changed["body"] == "{}" and new_body["body"] == '{"a":1}'
    assert ["x-changed", "yes"] in changed["headers"] and ["x-changed", "yes"] not in plain["headers"]
    assert ["content-length", "7"] in new_body["headers"]


def test_an_answer_s_headers_are_its_own(serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    """The aiohttp transport's answers share what it worked out about headers it has seen
    before; each answer's headers are still its own to change, as an `httpx.Response`'s
    are, and it has the attributes httpx's own constructor gives a response."""
    import httpx

    server = serve({"/r": lambda req: Reply(200, {"ok": True}, headers={"X-Thing": "1"})})
    first, second = (call("aiohttp", monkeypatch, "POST", f"{server.url}/r", json={}) for _ in range(2))
    assert first.json() == second.json() == {"ok": True}
    first.headers["X-Thing"] = "changed"
    del first.headers["content-type"]
    assert second.headers["x-thing"] == "1" and second.headers["content-type"] == "application/json"
    third = call("aiohttp", monkeypatch, "POST", f"{server.url}/r", json={})
    assert third.headers["x-thing"] == "1" and "content-type" in third.headers
    theirs = httpx.Response(200, headers=third.headers, stream=httpx.ByteStream(third.content), request=third.request,
                            extensions=third.extensions)  # as a transport makes one
    assert set(vars(theirs)) <= set(vars(third)) | {"headers", "stream", "extensions"}  # properties: made when read
    assert list(third.stream) == [third.content] and json.loads(third.content) == {"ok": True}  # type: ignore[call-overload]
    assert dict(theirs.headers) == dict(third.headers) and theirs.headers.encoding == third.headers.encoding
    third.extensions["mine"] = b"1"  # an answer's extensions are its own too
    assert "mine" not in second.extensions and second.http_version == "HTTP/1.1" and second.reason_phrase == "OK"
