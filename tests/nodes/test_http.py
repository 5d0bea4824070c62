"""The `http` node against real loopback endpoints: ones that answer, refuse, stall, fail
and talk nonsense, from Python and from the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from servers import LoopbackServer, RawServer, Reply, Request, free_port

from jupyter_flow import Flow, FlowRunError, RemoteError

Serve = Callable[[dict[str, Any]], LoopbackServer]


def one_node_flow(tmp_path: Path, **node: Any) -> Path:
    path = tmp_path / "call.flow.json"
    path.write_text(json.dumps({"nodes": [{"id": "model", "type": "http", **node}]}))
    return path


def cli_run(path: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("jupyter-flow")
    return subprocess.run([str(exe), "run", str(path), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def assert_failed_cleanly(proc: subprocess.CompletedProcess[str], *causes: str) -> None:
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stdout == ""
    assert "node 'model'" in proc.stderr
    for cause in causes:
        assert cause in proc.stderr, (cause, proc.stderr)


# -- failures, through the CLI --------------------------------------------------------------


def test_refused_connection(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/predict"  # nothing listens there
    proc = cli_run(one_node_flow(tmp_path, config={"endpoint": url}))
    assert_failed_cleanly(proc, "cannot connect", url)


def test_refused_connection_is_retried(tmp_path: Path) -> None:
    url = f"http://127.0.0.1:{free_port()}/predict"
    flow = Flow.load(one_node_flow(tmp_path, config={"endpoint": url}, retry={"max_attempts": 3, "backoff_s": 0.01}))
    result = flow.run(raise_on_error=False)
    assert result["model"].attempts == 3 and result["model"].error.type == "RemoteError"  # type: ignore[union-attr]


def test_stalling_endpoint_past_its_timeout(serve: Serve, tmp_path: Path) -> None:
    server = serve({"/predict": lambda req: Reply(200, {"late": True}, delay_s=6)})
    trace = tmp_path / "trace.json"
    proc = cli_run(one_node_flow(tmp_path, config={"endpoint": f"{server.url}/predict"}, timeout_s=0.5), "--trace", str(trace))
    assert_failed_cleanly(proc, "0.5")
    assert json.loads(trace.read_text())["nodes"][0]["duration_s"] < 3  # gave up long before the 6 s stall ended
    assert "timeout" in proc.stderr or "did not answer" in proc.stderr


def test_http_timeout_is_a_remote_error(serve: Serve) -> None:
    # the node's own HTTP timeout, not only the engine's deadline, names the endpoint
    server = serve({"/predict": lambda req: Reply(200, {"late": True}, delay_s=2)})
    flow = Flow.from_dict({"nodes": [{"id": "model", "type": "http", "timeout_s": 0.3, "config": {"endpoint": f"{server.url}/predict"}}]})
    with pytest.raises(FlowRunError) as info:
        flow.run()
    record = info.value.result["model"]  # type: ignore[index]
    assert record.error.type in ("RemoteError", "NodeTimeoutError")
    assert "0.3" in record.error.message


def test_server_error(serve: Serve, tmp_path: Path) -> None:
    server = serve({"/predict": lambda req: Reply(500, {"detail": "CUDA out of memory"})})
    proc = cli_run(one_node_flow(tmp_path, config={"endpoint": f"{server.url}/predict"}))
    assert_failed_cleanly(proc, "HTTP 500", "CUDA out of memory")


def test_answer_that_is_not_json(serve: Serve, tmp_path: Path) -> None:
    server = serve({"/predict": lambda req: Reply(200, "<html>502 Bad Gateway</html>", content_type="text/html")})
    proc = cli_run(one_node_flow(tmp_path, config={"endpoint": f"{server.url}/predict"}, retry={"max_attempts": 3}))
    assert_failed_cleanly(proc, "not JSON", "text/html", "Bad Gateway")
    assert len(server.requests) == 1  # garbage is not retried


def test_json_content_type_with_a_broken_body(serve: Serve) -> None:
    server = serve({"/predict": lambda req: Reply(200, '{"label": ', content_type="application/json")})
    flow = Flow.from_dict({"nodes": [{"id": "model", "type": "http", "config": {"endpoint": f"{server.url}/predict"}}]})
    with pytest.raises(FlowRunError, match="not JSON") as info:
        flow.run()
    assert "node 'model'" in str(info.value)


# -- output_key ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "output_key", "expected"),
    [
        ({"cleaned_text": "hi", "extra": 1}, "cleaned_text", {"cleaned_text": "hi", "extra": 1}),  # has the key: as is
        ({"text": "hi"}, "cleaned_text", {"cleaned_text": {"text": "hi"}}),  # an object without it: wrapped
        (b'"hi"', "cleaned_text", {"cleaned_text": "hi"}),  # a JSON string
        ([1, 2], "scores", {"scores": [1, 2]}),
        ({"label": "x"}, None, {"label": "x"}),
        ([1, 2], None, {"result": [1, 2]}),
    ],
)
def test_output_key(serve: Serve, answer: Any, output_key: str | None, expected: Any) -> None:
    server = serve({"/p": lambda req: Reply(200, answer, content_type="application/json")})
    config: dict[str, Any] = {"endpoint": f"{server.url}/p"}
    if output_key:
        config["output_key"] = output_key
    flow = Flow.from_dict({"nodes": [{"id": "model", "config": config}]})
    assert flow.run().outputs["model"] == expected


def test_output_key_feeds_downstream_templates(serve: Serve) -> None:
    server = serve({"/p": lambda req: Reply(200, b'"plain answer"', content_type="application/json"), "/q": lambda req: Reply(200, {"got": req.body})})
    flow = Flow.from_dict({
        "nodes": [
            {"id": "a", "config": {"endpoint": f"{server.url}/p", "output_key": "text"}},
            {"id": "b", "config": {"endpoint": f"{server.url}/q", "input_mapping": {"t": "{{ a.output.text }}"}}},
        ],
        "edges": [{"from": "start", "to": "a"}, {"from": "a", "to": "b"}],
    })
    assert flow.run().outputs["b"] == {"got": {"t": "plain answer"}}


# -- headers, methods, parameters ---------------------------------------------------------------


def test_headers_expand_environment_variables(serve: Serve, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    server = serve({"/p": lambda req: Reply(200, {"ok": True})})
    monkeypatch.setenv("JF_TEST_TOKEN", "s3cret")
    monkeypatch.setenv("JF_TEST_PATH", "p")
    node = {"config": {"endpoint": server.url + "/${JF_TEST_PATH}", "headers": {"Authorization": "Bearer ${JF_TEST_TOKEN}", "X-Plain": "yes"}}}
    path = one_node_flow(tmp_path, **node)
    result = Flow.load(path).run()
    assert result.outputs["model"] == {"ok": True}
    headers = {k.lower(): v for k, v in server.requests[0].headers.items()}
    assert headers["authorization"] == "Bearer s3cret" and headers["x-plain"] == "yes"
    # the secret is never written into the flow file
    assert "s3cret" not in path.read_text()
    # and through the CLI, with the variable in its environment
    proc = cli_run(path, env={"JF_TEST_TOKEN": "other", "JF_TEST_PATH": "p"})
    assert proc.returncode == 0, proc.stderr
    assert {k.lower(): v for k, v in server.requests[1].headers.items()}["authorization"] == "Bearer other"


def test_missing_environment_variable_is_a_clear_error(serve: Serve, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    server = serve({"/p": lambda req: Reply(200, {"ok": True})})
    monkeypatch.delenv("JF_TEST_UNSET", raising=False)
    path = one_node_flow(tmp_path, config={"endpoint": f"{server.url}/p", "headers": {"Authorization": "Bearer ${JF_TEST_UNSET}"}},
                         retry={"max_attempts": 3})
    proc = cli_run(path)
    assert_failed_cleanly(proc, "JF_TEST_UNSET", "config.headers.Authorization", "not set")
    assert server.requests == []
    result = Flow.load(path).run(raise_on_error=False)
    assert result["model"].attempts == 1  # retrying cannot set the variable


def test_get_with_params(serve: Serve) -> None:
    server = serve({"/search": lambda req: Reply(200, {"path": req.path, "method": req.method})})
    flow = Flow.from_dict({
        "inputs": {"q": {"type": "string"}},
        "nodes": [
            {"id": "with_params", "type": "http", "config": {"endpoint": f"{server.url}/search", "method": "GET",
                                                             "params": {"q": "{{ q }}", "k": 5}}},
            {"id": "mapping_as_query", "type": "http", "config": {"endpoint": f"{server.url}/search", "method": "get",
                                                                  "input_mapping": {"q": "{{ q }}"}}},
        ],
    })
    result = flow.run({"q": "a b&c"})
    assert result.outputs["with_params"] == {"path": "/search?q=a+b%26c&k=5", "method": "GET"}
    assert result.outputs["mapping_as_query"] == {"path": "/search?q=a+b%26c", "method": "GET"}
    assert all(r.body is None for r in server.requests)


def test_post_sends_the_mapping_as_json_and_other_methods(serve: Serve) -> None:
    def answer(req: Request) -> Reply:
        return Reply(200, {"method": req.method, "body": req.body, "ctype": req.headers.get("content-type") or req.headers.get("Content-Type")})

    server = serve({"/r": answer})
    flow = Flow.from_dict({"nodes": [
        {"id": "post", "type": "http", "config": {"endpoint": f"{server.url}/r", "input_mapping": {"xs": [1, 2], "s": "é"}}},
        {"id": "put", "type": "http", "config": {"endpoint": f"{server.url}/r", "method": "PUT", "body": ["raw", "list"]}},
    ]})
    out = flow.run().outputs
    assert out["post"] == {"method": "POST", "body": {"xs": [1, 2], "s": "é"}, "ctype": "application/json"}
    assert out["put"]["method"] == "PUT" and out["put"]["body"] == ["raw", "list"]


def test_remote_error_carries_the_status_code(serve: Serve) -> None:
    server = serve({"/p": lambda req: Reply(429, {"detail": "slow down"})})
    flow = Flow.from_dict({"nodes": [{"id": "model", "type": "http", "retry": {"max_attempts": 2, "backoff_s": 0.01},
                                      "config": {"endpoint": f"{server.url}/p"}}]})
    result = flow.run(raise_on_error=False)
    assert result["model"].attempts == 2  # 429 is worth another try
    assert result["model"].extra["http_status"] == 429
    assert issubclass(RemoteError, Exception) and result["model"].error.type == "RemoteError"  # type: ignore[union-attr]


V2_ANSWER = {"model_name": "clf", "outputs": [{"name": "label", "datatype": "BYTES", "shape": [1], "data": ["positive"]},
                                              {"name": "score", "datatype": "FP32", "shape": [1], "data": [0.9]}]}


def _mapping_flow(url: str, mapping: dict[str, Any], template: str = "{{ model.output.label }} ({{ model.output.score }})",
                  **config: Any) -> Flow:
    return Flow.from_dict({"name": "pick", "nodes": [
        {"id": "model", "type": "http", "config": {"endpoint": url, "input_mapping": {"text": "hi"}, "output_mapping": mapping, **config}},
        {"id": "say", "type": "template", "config": {"template": template}}],
        "edges": [{"from": "start", "to": "model"}, {"from": "model", "to": "say"}]})


def test_output_mapping_selects_fields_of_the_answer(serve: Serve) -> None:
    srv = serve({"/v2/models/clf/infer": lambda req: Reply(200, V2_ANSWER)})
    flow = _mapping_flow(srv.url + "/v2/models/clf/infer", {"label": "{{ response.outputs[0].data[0] }}",
                                                              "score": "{{ response.outputs[1].data[0] | round(2) }}",
                                                              "model": "{{ response.model_name }}"})
    result = flow.run()
    assert result.outputs["model"] == {"label": "positive", "score": 0.9, "model": "clf"}
    assert result.outputs["say"] == {"text": "positive (0.9)"}


def test_output_mapping_with_output_key_wraps_the_selection(serve: Serve) -> None:
    srv = serve({"/infer": lambda req: Reply(200, V2_ANSWER)})
    flow = _mapping_flow(srv.url + "/infer", {"label": "{{ response.outputs[0].data[0] }}"}, "{{ model.output.picked.label }}",
                         output_key="picked")
    result = flow.run()
    assert result.outputs["model"] == {"picked": {"label": "positive"}}
    assert result.outputs["say"] == {"text": "positive"}


def test_output_mapping_that_does_not_fit_the_answer_names_the_field(serve: Serve) -> None:
    srv = serve({"/infer": lambda req: Reply(200, {"predictions": [1]})})
    flow = _mapping_flow(srv.url + "/infer", {"label": "{{ response.outputs[0].data[0] }}"})
    with pytest.raises(FlowRunError) as info:
        flow.run()
    message = str(info.value)
    assert "node 'model'" in message and "config.output_mapping.label" in message
    assert "predictions" in message  # the answer is shown, so the user sees what to select


def test_output_mapping_reads_only_the_answer(serve: Serve) -> None:
    flow = Flow.from_dict({"name": "bad", "inputs": {"text": {"type": "text"}}, "nodes": [
        {"id": "model", "type": "http", "config": {"endpoint": "http://127.0.0.1:9/x", "output_mapping": {
            "label": "{{ text }}", "broken": "{{ response.outputs[0 }}", "ok": "{{ response.outputs }}"}}}],
        "edges": [{"from": "start", "to": "model"}]})
    problems = {p.field: p.message for p in flow.problems()}
    assert set(problems) == {"config.output_mapping.label", "config.output_mapping.broken"}
    assert "'text'" in problems["config.output_mapping.label"] and "response" in problems["config.output_mapping.label"]


def test_output_mapping_over_a_full_response(serve: Serve) -> None:
    srv = serve({"/x": lambda req: Reply(503, {"busy": True}, headers={"retry-after": "1"})})
    flow = _mapping_flow(srv.url + "/x", {"label": "{{ response.status_code }}", "score": "{{ response.headers['retry-after'] }}"},
                         "{{ model.output.label }}", response="full")
    assert flow.run().outputs["model"] == {"label": 503, "score": "1"}


# -- servers that hold, trickle, reset, or ask to wait ---------------------------------------


def trickle(conn: Any) -> None:
    import time

    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n")
    for _ in range(200):
        conn.sendall(b" ")  # 2 bytes a second: every read is quick, the whole answer is not
        time.sleep(0.5)


def reset_mid_body(conn: Any) -> None:
    import socket
    import struct

    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{\"label\": ")
    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # close sends RST


def test_a_trickling_server_does_not_hold_the_node_past_its_timeout(tmp_path: Path) -> None:
    import time

    server = RawServer(trickle)
    try:
        t0 = time.perf_counter()
        proc = cli_run(one_node_flow(tmp_path, config={"endpoint": server.url}, timeout_s=1))
        elapsed = time.perf_counter() - t0
    finally:
        server.close()
    print(f"a body trickled at 2 bytes/s, timeout_s 1: the CLI returned after {elapsed:.2f} s")
    assert_failed_cleanly(proc)
    # the node's own deadline or the engine's, whichever fires first
    assert "did not answer within 1 s" in proc.stderr or "timeout_s=1" in proc.stderr, proc.stderr
    assert elapsed < 30  # the trickle alone would take 100 s


def test_a_reset_mid_body_names_its_kind_and_the_endpoint(tmp_path: Path) -> None:
    server = RawServer(reset_mid_body)
    try:
        proc = cli_run(one_node_flow(tmp_path, config={"endpoint": server.url}))
    finally:
        server.close()
    assert_failed_cleanly(proc, server.url)
    # httpx's error for a reset, with the reason (not an empty one)
    assert "broke while the answer was being read (ReadError: " in proc.stderr and "reset" in proc.stderr.lower(), proc.stderr


def test_retry_after_on_429_is_honoured_within_the_deadline(serve: Serve, tmp_path: Path) -> None:
    import time

    calls: list[float] = []

    def busy_then_ok(req: Request) -> Reply:
        calls.append(time.monotonic())
        if len(calls) == 1:
            return Reply(429, {"detail": "slow down"}, headers={"Retry-After": "1"})
        return Reply(200, {"label": "ok"})

    server = serve({"/p": busy_then_ok})
    flow = Flow.from_dict({"nodes": [{"id": "model", "type": "http", "timeout_s": 5, "retry": {"max_attempts": 4, "backoff_s": 0.01},
                                      "config": {"endpoint": f"{server.url}/p"}}]})
    result = flow.run()
    assert result.outputs["model"] == {"label": "ok"}
    assert len(calls) == 2 and calls[1] - calls[0] >= 0.9  # waited as asked, not 4 attempts in 0.03 s
    assert result["model"].attempts == 1 and result["model"].extra["retry_after_waits"] == 1


def test_retry_after_past_the_deadline_fails_at_once_without_quick_retries(serve: Serve, tmp_path: Path) -> None:
    import time

    calls: list[float] = []

    def busy(req: Request) -> Reply:
        calls.append(time.monotonic())
        return Reply(503, {"detail": "overloaded"}, headers={"Retry-After": "120"})

    server = serve({"/p": busy})
    path = one_node_flow(tmp_path, config={"endpoint": f"{server.url}/p"}, timeout_s=2, retry={"max_attempts": 4, "backoff_s": 0.01})
    t0 = time.perf_counter()
    proc = cli_run(path)
    assert time.perf_counter() - t0 < 30
    assert_failed_cleanly(proc, "HTTP 503", "asked to wait 120 s", "past the node's deadline")
    assert len(calls) == 1


def test_retry_after_as_an_http_date(serve: Serve) -> None:
    import email.utils
    import time

    calls: list[float] = []

    def busy_then_ok(req: Request) -> Reply:
        calls.append(time.monotonic())
        if len(calls) == 1:
            return Reply(429, {}, headers={"Retry-After": email.utils.formatdate(time.time() + 1, usegmt=True)})
        return Reply(200, {"label": "ok"})

    server = serve({"/p": busy_then_ok})
    flow = Flow.from_dict({"nodes": [{"id": "model", "type": "http", "timeout_s": 5, "config": {"endpoint": f"{server.url}/p"}}]})
    assert flow.run().outputs["model"] == {"label": "ok"} and len(calls) == 2


# -- servers that lie about their answer, through both transports ------------------------


def _lie(raw: bytes) -> Callable[[Any], None]:
    def handler(conn: Any) -> None:
        conn.sendall(raw)

    return handler


LIES = {
    "a status line that is not HTTP": b"HTTP/1.1 abc OK\r\ncontent-length: 2\r\n\r\n{}",
    "a body shorter than its content-length": b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 50\r\n\r\n{\"a\": 1}",
    "gzip announced, plain text sent": b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\ncontent-length: 8\r\n\r\n{\"a\": 1}",
    "a broken chunked body": b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\nzz\r\n{\"a\"\r\n0\r\n\r\n",
    "a close before any answer": b"",
}


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
@pytest.mark.parametrize("lie", list(LIES))
def test_a_lying_server_fails_the_node_with_a_named_error(monkeypatch: pytest.MonkeyPatch, lie: str, transport: str) -> None:
    from jupyter_flow.http import TRANSPORT_ENV

    monkeypatch.setenv(TRANSPORT_ENV, transport)
    server = RawServer(_lie(LIES[lie]))
    try:
        flow = Flow.from_dict({"nodes": [{"id": "model", "type": "http", "timeout_s": 5, "config": {"endpoint": server.url}}]})
        with pytest.raises(FlowRunError) as info:
            flow.run()
    finally:
        server.close()
    error = info.value.result["model"].error  # type: ignore[index]
    assert error.type == "RemoteError", error
    assert server.url in error.message, error.message
    assert "Traceback" not in error.message and "\n" not in error.message
    print(f"{transport}, {lie}: {error.message}")


# -- answers larger than the node reads ----------------------------------------------------


def endless(conn: Any) -> None:
    # no content-length: the body goes on until the client hangs up
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: close\r\n\r\n[")
    block = b"0," * 32768
    while True:
        conn.sendall(block)


def declares_100_gb(conn: Any) -> None:
    import time

    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100000000000\r\n\r\n[")
    for _ in range(600):
        conn.sendall(b"0," * 512)  # slowly: what is refused must be refused before it is read
        time.sleep(0.1)


def gzip_bomb(conn: Any) -> None:
    import gzip

    body = gzip.compress(b'"' + b"a" * (20 * 1024 * 1024) + b'"')  # 20 MB in about 20 KB
    conn.sendall(b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-encoding: gzip\r\n"
                 + f"content-length: {len(body)}\r\n\r\n".encode() + body)


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_an_endless_answer_stops_at_max_response_bytes(monkeypatch: pytest.MonkeyPatch, transport: str) -> None:
    from jupyter_flow.http import TRANSPORT_ENV

    monkeypatch.setenv(TRANSPORT_ENV, transport)
    server = RawServer(endless)
    try:
        flow = Flow.from_dict({"nodes": [{"id": "model", "type": "http", "timeout_s": 60, "retry": {"max_attempts": 3},
                                          "config": {"endpoint": server.url, "max_response_bytes": 1_000_000}}]})
        result = flow.run(raise_on_error=False)
    finally:
        server.close()
    record = result["model"]
    assert record.error is not None and record.error.type == "RemoteError", record.error
    message = record.error.message
    assert "node 'model'" in message and server.url in message and "1000000" in message and "max_response_bytes" in message, message
    assert record.attempts == 1  # the same answer again would be as large


def test_a_content_length_over_the_default_bound_is_refused_before_reading(tmp_path: Path) -> None:
    from jupyter_flow.http_send import MAX_RESPONSE_BYTES

    server = RawServer(declares_100_gb)
    try:
        proc = cli_run(one_node_flow(tmp_path, config={"endpoint": server.url}, timeout_s=20))
    finally:
        server.close()
    assert_failed_cleanly(proc, server.url, "100000000000", str(MAX_RESPONSE_BYTES), "max_response_bytes")


def test_the_bound_counts_the_bytes_a_compressed_answer_decodes_to() -> None:
    server = RawServer(gzip_bomb)
    try:
        flow = Flow.from_dict({"nodes": [{"id": "model", "type": "http", "config": {"endpoint": server.url, "max_response_bytes": 1_000_000}}]})
        result = flow.run(raise_on_error=False)
    finally:
        server.close()
    assert not result.ok and "max_response_bytes" in str(result.error), result.error


def test_an_answer_within_the_bound_is_read_whole(serve: Serve) -> None:
    server = serve({"/p": lambda req: Reply(200, {"text": "x" * 900})})
    flow = Flow.from_dict({"nodes": [{"id": "model", "type": "http", "config": {"endpoint": f"{server.url}/p", "max_response_bytes": 1000}}]})
    assert flow.run().outputs["model"] == {"text": "x" * 900}


def test_max_response_bytes_must_be_a_positive_size() -> None:
    flow = Flow.from_dict({"nodes": [{"id": "model", "type": "http", "config": {"endpoint": "http://127.0.0.1:9/p", "max_response_bytes": 0}}]})
    problems = {p.field: p.message for p in flow.problems()}
    assert "config.max_response_bytes" in problems, problems


# -- Retry-After values that are no wait ---------------------------------------------------


@pytest.mark.parametrize(("value", "shown"), [("nan", "nan"), ("inf", "inf"), ("-5", "-5"), ("1e999", "inf")])
def test_a_retry_after_that_is_no_wait_fails_the_node_within_its_deadline(serve: Serve, value: str, shown: str) -> None:
    calls: list[Request] = []

    def busy_then_ok(req: Request) -> Reply:
        calls.append(req)
        if len(calls) == 1:
            return Reply(429, {"detail": "slow down"}, headers={"Retry-After": value})
        return Reply(200, {"label": "ok"})

    server = serve({"/p": busy_then_ok})
    flow = Flow.from_dict({"nodes": [{"id": "model", "type": "http", "timeout_s": 1, "retry": {"max_attempts": 3, "backoff_s": 0.01},
                                      "config": {"endpoint": f"{server.url}/p"}}]})
    result = flow.run(raise_on_error=False)
    assert not result.ok, result.outputs  # not an answer taken after a wait the deadline does not allow
    assert f"asked to wait {shown} s" in str(result.error) and "HTTP 429" in str(result.error), result.error
    assert len(calls) == 1
