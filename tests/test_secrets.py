"""A secret given as `${VAR}` in a node's endpoint, base URL or headers reaches the server
it is for and nothing else: not the answer of a served flow, not `/runs/ID`, not the
trace of a run. Messages show each expanded reference as `***`."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from servers import AsgiServer, LoopbackServer, Reply, Request, free_port

from jupyter_flow import Flow
from jupyter_flow.http import TRANSPORT_ENV
from jupyter_flow.serve.app import flow_app

Serve = Callable[[dict[str, Any]], LoopbackServer]

SECRET = "s3cr3t-Value-42"
TOKEN = "t0ken-Value-77"


def echoing(status: int, said: Callable[[Request], Any]) -> Callable[[Request], Reply]:
    """A route that answers `status` with a body saying what the request carried (as
    careless servers do: "invalid key ...")."""
    return lambda req: Reply(status, said(req))


def told(req: Request) -> str:
    return f"{req.path} {json.dumps(req.headers)}"


def http_node(serve: Serve) -> tuple[dict[str, Any], LoopbackServer | None]:
    server = serve({"/predict": echoing(500, lambda req: {"detail": f"invalid key in {told(req)}"})})
    return {"type": "http", "config": {"endpoint": server.url + "/predict?key=${JF_SECRET}",
                                       "headers": {"Authorization": "Bearer ${JF_TOKEN}"}, "input_mapping": {"x": 1}}}, server


def http_node_nothing_listens(serve: Serve) -> tuple[dict[str, Any], LoopbackServer | None]:
    return {"type": "http", "config": {"endpoint": f"http://127.0.0.1:{free_port()}/predict?key=${{JF_SECRET}}"}}, None


def http_node_not_json(serve: Serve) -> tuple[dict[str, Any], LoopbackServer | None]:
    server = serve({"/predict": echoing(200, lambda req: f"<html>hello {told(req)}</html>")})
    return {"type": "http", "config": {"endpoint": server.url + "/predict?key=${JF_SECRET}",
                                       "headers": {"X-Api-Key": "${JF_TOKEN}"}}}, server


def llm_node(serve: Serve) -> tuple[dict[str, Any], LoopbackServer | None]:
    server = serve({f"/{SECRET}/v1/chat/completions": echoing(400, lambda req: {"error": {"message": f"bad request {told(req)}"}})})
    return {"type": "llm", "retry": {"max_attempts": 1},
            "config": {"base_url": server.url + "/${JF_SECRET}/v1", "model": "m",
                       "messages": [{"role": "user", "content": "hi"}], "headers": {"Authorization": "Bearer ${JF_TOKEN}"}}}, server


def llm_node_nothing_listens(serve: Serve) -> tuple[dict[str, Any], LoopbackServer | None]:
    return {"type": "llm", "retry": {"max_attempts": 1}, "timeout_s": 5,
            "config": {"base_url": f"http://127.0.0.1:{free_port()}/${{JF_SECRET}}/v1", "model": "m", "stream": False,
                       "messages": [{"role": "user", "content": "hi"}]}}, None


def inference_node(serve: Serve) -> tuple[dict[str, Any], LoopbackServer | None]:
    server = serve({f"/{SECRET}/v2/models/clf/infer": echoing(500, lambda req: {"error": f"cannot serve {told(req)}"})})
    return {"type": "inference", "config": {"endpoint": server.url + "/${JF_SECRET}", "model": "clf", "inputs": {"x": [1.0]},
                                            "headers": {"Authorization": "Bearer ${JF_TOKEN}"}}}, server


SCENARIOS = {
    "an http node answered 500": http_node,
    "an http node nothing listens for": http_node_nothing_listens,
    "an http node answered with what is not JSON": http_node_not_json,
    "an llm node answered 400": llm_node,
    "an llm node nothing listens for": llm_node_nothing_listens,
    "an inference node answered 500": inference_node,
}


@pytest.fixture
def secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JF_SECRET", SECRET)
    monkeypatch.setenv("JF_TOKEN", TOKEN)


def one_node(node: dict[str, Any]) -> Flow:
    config = {k: v for k, v in node["config"].items() if v is not None}
    return Flow.from_dict({"name": "calls", "nodes": [{"id": "model", **node, "config": config}]})


def assert_hidden(text: str, where: str) -> None:
    assert SECRET not in text and TOKEN not in text, f"a secret in {where}: {text[:2000]}"


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_served_flow_gives_no_secret_to_its_clients(serve: Serve, secrets: None, scenario: str) -> None:
    node, server = SCENARIOS[scenario](serve)
    with AsgiServer(flow_app(one_node(node))) as srv, httpx.Client(base_url=srv.url, timeout=60) as client:
        answer = client.post("/run", json={})
        assert answer.status_code == 500, answer.text
        kept = client.get(f"/runs/{answer.json()['run_id']}")
        assert kept.status_code == 200
    assert_hidden(answer.text, "the answer")
    assert_hidden(kept.text, "/runs/ID")
    error = answer.json()["error"]
    assert "node 'model'" in error and "***" in error, error  # where it went, each secret shown as ***
    if server is not None:  # the secrets did reach the server they are for
        seen = server.requests[0]
        assert SECRET in seen.path + json.dumps(seen.headers) and (node["type"] == "http" or TOKEN in json.dumps(seen.headers))


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_run_s_trace_holds_no_secret(serve: Serve, secrets: None, scenario: str, tmp_path: Any) -> None:
    node, _ = SCENARIOS[scenario](serve)
    result = one_node(node).run(raise_on_error=False)
    assert not result.ok
    record = result["model"]
    assert record.error is not None
    assert_hidden(result.to_json(), "RunResult.to_json()")
    assert_hidden(str(result.error), "the run's error")
    assert_hidden(record.error.message + record.error.traceback, "the node's error")
    assert "***" in record.error.message


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
def test_a_header_value_that_cannot_be_sent_is_not_shown(serve: Serve, monkeypatch: pytest.MonkeyPatch, transport: str) -> None:
    # a key read from a file with its line break: the request cannot carry it, and the
    # error says so without the key (httpx's own transport names the value it refused)
    monkeypatch.setenv(TRANSPORT_ENV, transport)
    server = serve({"/p": lambda req: Reply(200, {"ok": True})})
    monkeypatch.setenv("JF_TOKEN", TOKEN + "\n")
    flow = one_node({"type": "http", "config": {"endpoint": server.url + "/p", "headers": {"Authorization": "Bearer ${JF_TOKEN}"}}})
    result = flow.run(raise_on_error=False)
    assert not result.ok and server.requests == []
    assert_hidden(result.to_json(), "RunResult.to_json()")
    assert "cannot send the request" in str(result.error), result.error


def test_a_client_cannot_have_the_flow_expand_a_variable_it_names(serve: Serve, secrets: None) -> None:
    # expansion came after templates: `${JF_SECRET}` typed into an input that reaches a URL
    # was expanded, sent out and answered back
    seen: list[str] = []

    def echo(req: Request) -> Reply:
        seen.append(req.path)
        return Reply(200, {"path": req.path})

    with LoopbackServer({"/p": echo}) as upstream:
        flow = Flow.from_dict({"name": "q", "inputs": {"q": {"type": "string"}}, "nodes": [
            {"id": "call", "type": "http", "config": {"endpoint": upstream.url + "/p?q={{ q }}&key=${JF_TOKEN}", "method": "GET"}}]})
        with AsgiServer(flow_app(flow)) as srv, httpx.Client(base_url=srv.url, timeout=60) as client:
            answer = client.post("/run", json={"q": "${JF_SECRET}"})
            assert answer.status_code == 200, answer.text
    assert SECRET not in answer.text and SECRET not in "".join(seen)
    assert "%7BJF_SECRET%7D" in seen[0] or "{JF_SECRET}" in seen[0]  # sent as the text the client gave
    assert TOKEN in seen[0]  # the flow's own reference is expanded, as written


def test_a_node_called_again_after_its_variable_changed_sends_and_hides_the_new_value(
        serve: Serve, monkeypatch: pytest.MonkeyPatch) -> None:
    # a node keeps what its last call expanded: a changed variable is a new expansion
    server = serve({"/predict": echoing(500, lambda req: {"detail": f"invalid key in {told(req)}"})})
    flow = one_node({"type": "http", "retry": {"max_attempts": 1}, "config": {"endpoint": server.url + "/predict?key=${JF_SECRET}"}})
    for value in (SECRET, SECRET + "-rotated", SECRET):
        monkeypatch.setenv("JF_SECRET", value)
        result = flow.run(raise_on_error=False)
        assert not result.ok
        assert server.requests[-1].path.endswith("key=" + value)  # the value the environment has now
        message = result["model"].error.message  # type: ignore[union-attr]
        assert SECRET not in message and "***" in message, message
    assert len(server.requests) == 3
