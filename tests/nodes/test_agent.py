"""The `agent` node against a scripted OpenAI-compatible server on loopback (it answers
/v1/chat/completions from a script: one tool call, several at once, arguments that are not
JSON, a tool that does not exist, a model that never stops) and a real MCP server started
with the official SDK; the answer, the steps in the output and the trace, and the limits
(max_steps, the node's time budget, each tool's), as users meet them through flow files."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from openai_server import ScriptedModel, tool_messages
from openai_server import tool_call as call
from processes import mcp_demo_server
from servers import LoopbackServer, Reply, Request, free_port

from jupyter_flow import Flow, FlowRunError, FlowValidationError
from jupyter_flow.tools import default_tool_registry

Serve = Callable[[dict[str, Any]], LoopbackServer]
SECRET = "agent-s3cret-key-value"


@pytest.fixture(scope="module")
def mcp_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MCP server (streamable HTTP) on a free loopback port, for the module's tests."""
    with mcp_demo_server(tmp_path_factory.mktemp("mcp"), SECRET) as url:
        yield url


def agent_flow(tmp_path: Path, config: dict[str, Any], *, timeout_s: float | None = None, name: str = "agent.flow.yaml") -> Flow:
    """A flow of one agent node, written to a file and loaded as users do."""
    node: dict[str, Any] = {"id": "agent", "type": "agent", "config": {"model": "scripted", "prompt": "{{ question }}", **config}}
    if timeout_s is not None:
        node["timeout_s"] = timeout_s
    data = {"spec_version": 1, "name": "ask", "inputs": {"question": {"type": "text"}}, "nodes": [node]}
    path = tmp_path / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return Flow.load(path)


def failure(flow: Flow, inputs: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The failed run's error message and its trace (as JSON data)."""
    with pytest.raises(FlowRunError) as info:
        flow.run(inputs)
    assert info.value.result is not None
    return str(info.value), json.loads(info.value.result.to_json())


# -- one tool, then the answer -------------------------------------------------------------
def test_the_model_calls_an_mcp_tool_and_answers_with_its_result(tmp_path: Path, serve: Serve, mcp_url: str) -> None:
    model = ScriptedModel(
        serve,
        {"content": "Let me add.", "tool_calls": [call("add", {"a": 2, "b": 40}, "c1")]},
        lambda body: {"content": f"The sum is {tool_messages(body)['c1']}."},
    )
    flow = agent_flow(tmp_path, {"base_url": model.base_url, "mcp_servers": [{"url": mcp_url, "name": "demo"}]})
    result = flow.run({"question": "What is 2 + 40?"})
    out = result.outputs["agent"]
    assert out["text"] == "The sum is 42." and out["stopped"] is None
    first, second = out["steps"]
    assert first["content"] == "Let me add." and first["finish_reason"] == "tool_calls" and first["usage"]["total_tokens"] == 15
    (done,) = first["tool_calls"]
    assert done["id"] == "c1" and done["name"] == "add" and done["tool"] == "mcp/demo/add"
    assert done["arguments"] == {"a": 2, "b": 40} and done["result"] == "42" and done["duration_s"] >= 0
    assert second["tool_calls"] == [] and second["content"] == "The sum is 42."
    # what the model was offered: every tool of the server, with the server's own schemas
    offered = {t["function"]["name"]: t["function"] for t in model.requests[0]["tools"]}
    assert {"add", "shout", "slow", "fail", "secret_ok", "dot"} <= set(offered)
    assert offered["add"]["parameters"]["properties"].keys() == {"a", "b"} and offered["add"]["description"] == "Add two integers."
    assert model.requests[0]["messages"] == [{"role": "user", "content": "What is 2 + 40?"}] and model.requests[0]["stream"] is False
    # the conversation sent back: the model's call, then the tool's result under its id
    assistant = model.requests[1]["messages"][1]
    assert assistant["role"] == "assistant" and assistant["tool_calls"][0]["id"] == "c1"
    assert tool_messages(model.requests[1]) == {"c1": "42"}
    # the trace holds the steps once: in the output
    (record,) = json.loads(result.to_json())["nodes"]
    assert record["outputs"]["steps"][0]["tool_calls"][0]["result"] == "42" and "steps" not in record.get("extra", {})


# -- several calls in one answer ---------------------------------------------------------------
def test_calls_asked_for_together_run_at_the_same_time(tmp_path: Path, serve: Serve, mcp_url: str) -> None:
    # each call waits at a barrier for the other: run one after the other, the first would give up
    barrier = threading.Barrier(2, timeout=30)

    def meet(who: str) -> str:
        """Wait for the other caller, then greet."""
        barrier.wait()
        return f"met {who}"

    default_tool_registry().register_function(meet, name="test/meet")
    model = ScriptedModel(
        serve,
        {"tool_calls": [call("test_meet", {"who": "ann"}, "a"), call("test_meet", {"who": "bob"}, "b"),
                        call("shout", {"text": "hi"}, "c")]},
        lambda body: {"content": " / ".join(f"{k}={v}" for k, v in sorted(tool_messages(body).items()))},
    )
    flow = agent_flow(tmp_path, {"base_url": model.base_url, "tools": ["test/meet"], "mcp_servers": [{"url": mcp_url}]})
    out = flow.run({"question": "meet both"}).outputs["agent"]
    assert out["text"] == "a=met ann / b=met bob / c=HI"
    assert [(d["tool"], d["result"]) for d in out["steps"][0]["tool_calls"]] == [
        ("test/meet", "met ann"), ("test/meet", "met bob"), ("mcp/server1/shout", "HI")]


def test_an_answer_asking_for_too_many_calls_runs_the_first_32(tmp_path: Path, serve: Serve) -> None:
    calls = [call("base64_encode", {"text": f"n{i}"}, f"c{i}") for i in range(34)]
    model = ScriptedModel(serve, {"tool_calls": calls}, lambda body: {"content": f"{len(tool_messages(body))} answers"})
    out = agent_flow(tmp_path, {"base_url": model.base_url, "tools": ["base64/encode"]}).run({"question": "many"}).outputs["agent"]
    done = out["steps"][0]["tool_calls"]
    assert out["text"] == "34 answers"  # every call is answered, as the protocol wants
    assert [d.get("result") for d in done[:2]] == ["bjA=", "bjE="] and all("result" in d for d in done[:32])
    assert [d["error"] for d in done[32:]] == ["not run: at most 32 tool calls of one answer run; ask for the others in the next"] * 2


# -- the model's mistakes go back to it ------------------------------------------------------
def test_malformed_arguments_an_unknown_tool_and_a_failing_tool_are_answered_as_errors(tmp_path: Path, serve: Serve, mcp_url: str) -> None:
    model = ScriptedModel(
        serve,
        {"tool_calls": [call("add", '{"a": 2, "b": ', "bad"), call("multiply", {"a": 2}, "ghost"),
                        call("add", "[1, 2]", "list"), call("add", {"a": "two", "b": 1}, "wrong"), call("fail", {"reason": "no"}, "boom")]},
        {"tool_calls": [call("add", {"a": 1, "b": 1}, "fixed")]},
        lambda body: {"content": f"fixed: {tool_messages(body)['fixed']}"},
    )
    flow = agent_flow(tmp_path, {"base_url": model.base_url, "mcp_servers": [{"url": mcp_url, "name": "demo"}]})
    out = flow.run({"question": "add"}).outputs["agent"]
    assert out["text"] == "fixed: 2"
    bad, ghost, listed, wrong, boom = out["steps"][0]["tool_calls"]
    assert bad["arguments"] == '{"a": 2, "b": ' and "not valid JSON" in bad["error"] and "tool" not in bad
    assert ghost["error"].startswith("there is no tool named 'multiply'; the tools are: ") and "add" in ghost["error"]
    assert "JSON list" in listed["error"]
    assert wrong["tool"] == "mcp/demo/add" and "validation error" in wrong["error"]
    assert boom["tool"] == "mcp/demo/fail" and "refused: no" in boom["error"]  # the server's own error, as it said it
    # each error reached the model as the result of its call
    told = tool_messages(model.requests[1])
    assert set(told) == {"bad", "ghost", "list", "wrong", "boom"} and all(text.startswith("error: ") for text in told.values())


# -- limits ------------------------------------------------------------------------------------
def test_a_model_that_never_stops_calling_tools_is_stopped_at_max_steps(tmp_path: Path, serve: Serve, mcp_url: str) -> None:
    model = ScriptedModel(serve, {"content": "once more", "tool_calls": [call("add", {"a": 1, "b": 1}, "again")]})
    config = {"base_url": model.base_url, "mcp_servers": [{"url": mcp_url}], "max_steps": 3}
    message, trace = failure(agent_flow(tmp_path, config), {"question": "loop"})
    assert "node 'agent'" in message and "still called tools (add)" in message and "max_steps=3" in message and "on_limit: answer" in message
    assert len(model.requests) == 3
    (record,) = trace["nodes"]
    steps = record["extra"]["steps"]  # what happened is in the trace, though the node failed
    assert [len(s["tool_calls"]) for s in steps] == [1, 1, 1]
    assert steps[0]["tool_calls"][0]["result"] == "2" and "not run" in steps[2]["tool_calls"][0]["error"]
    assert record["attempts"] == 1  # not retried: another attempt would run the tools again

    model.requests.clear()
    out = agent_flow(tmp_path, {**config, "on_limit": "answer"}).run({"question": "loop"}).outputs["agent"]
    assert out["stopped"] == "max_steps" and out["text"] == "once more" and len(out["steps"]) == 3 and len(model.requests) == 3


def test_the_nodes_timeout_bounds_the_whole_loop_and_each_tool_its_own(tmp_path: Path, serve: Serve, mcp_url: str) -> None:
    slow = {"tool_calls": [call("slow", {"seconds": 60}, "s")]}
    model = ScriptedModel(serve, slow)
    flow = agent_flow(tmp_path, {"base_url": model.base_url, "mcp_servers": [{"url": mcp_url}]}, timeout_s=2)
    message, trace = failure(flow, {"question": "wait"})
    assert "node 'agent'" in message and "did not finish within timeout_s=2" in message
    (record,) = trace["nodes"]
    assert record["error"]["type"] == "NodeTimeoutError" and len(record["extra"]["steps"]) == 1

    # a tool past tool_timeout_s: the model is told, and goes on
    model = ScriptedModel(serve, slow, lambda body: {"content": tool_messages(body)["s"]})
    flow = agent_flow(tmp_path, {"base_url": model.base_url, "mcp_servers": [{"url": mcp_url}], "tool_timeout_s": 1})
    out = flow.run({"question": "wait"}).outputs["agent"]
    assert out["text"] == "error: the tool did not finish within 1 s"


def test_a_failing_model_server_fails_the_node_once(tmp_path: Path, serve: Serve) -> None:
    seen: list[Request] = []

    def broken(req: Request) -> Reply:
        seen.append(req)
        return Reply(503, {"error": {"message": "overloaded"}})

    server = serve({"/v1/chat/completions": broken})
    flow = agent_flow(tmp_path, {"base_url": f"{server.url}/v1", "tools": ["time/current_time"]})
    message, _ = failure(flow, {"question": "now?"})
    assert "node 'agent'" in message and "answered HTTP 503: overloaded" in message and len(seen) == 1


# -- ReAct, for models without tool calling --------------------------------------------------------
def test_react_mode_reads_actions_from_text_and_sends_observations(tmp_path: Path, serve: Serve, mcp_url: str) -> None:
    model = ScriptedModel(
        serve,
        {"content": 'Thought: I add.\nAction: add\nAction Input: {"a": 20, "b": 22}\nAction: shout\nAction Input: {"text": "ok"}'},
        {"content": "Action: add\nAction Input: {oops}"},
        lambda body: {"content": "Thought: done\nFinal Answer: " + body["messages"][-3]["content"].replace("\n", " | ")},
    )
    flow = agent_flow(tmp_path, {"base_url": model.base_url, "mode": "react", "mcp_servers": [{"url": mcp_url}],
                                 "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "{{ question }}"}],
                                 "prompt": None})
    out = flow.run({"question": "2 sums"}).outputs["agent"]
    assert out["text"] == "Observation (add): 42 | Observation (shout): OK"
    first, second, _ = out["steps"]
    assert [(d["name"], d["arguments"], d["result"]) for d in first["tool_calls"]] == [("add", {"a": 20, "b": 22}, "42"), ("shout", {"text": "ok"}, "OK")]
    assert "not valid JSON" in second["tool_calls"][0]["error"]
    request = model.requests[0]
    assert "tools" not in request and "\nObservation:" in request["stop"]
    system = request["messages"][0]
    assert system["role"] == "system" and system["content"].startswith("Be brief.") and "- add: Add two integers." in system["content"]
    told = model.requests[2]["messages"][-1]
    assert told["role"] == "user" and told["content"].startswith("Observation: error: the Action Input is not valid JSON (Expecting property name")


# -- flows as tools -------------------------------------------------------------------------------
SHOUT_FLOW = """\
spec_version: 1
name: shouter
description: Says the text loudly.
inputs:
  text: {type: text, description: what to say}
  times: {type: integer, default: 1}
outputs:
  loud: "{{ shout.output.text }}"
nodes:
  - id: shout
    type: template
    config: {template: "{{ (text | upper ~ '!') * times }}"}
"""


def test_a_flow_file_is_offered_as_a_tool_with_its_inputs_as_arguments(tmp_path: Path, serve: Serve) -> None:
    (tmp_path / "shout.flow.yaml").write_text(SHOUT_FLOW, encoding="utf-8")
    model = ScriptedModel(
        serve,
        {"tool_calls": [call("loud", {"text": "hey", "times": 2}, "l"), call("loud", {"words": "x"}, "w"), call("me", {"question": "?"}, "m")]},
        {"tool_calls": [call("me", {"question": "again?"}, "m2")]},  # what the agent's own flow asks when it is called
        lambda body: {"content": json.dumps(tool_messages(body))},
    )
    flow = agent_flow(tmp_path, {"base_url": model.base_url, "max_result_chars": 50_000, "flows": [
        {"name": "loud", "path": "shout.flow.yaml"},
        {"name": "me", "path": "agent.flow.yaml", "description": "Ask yourself."},
    ]})
    out = flow.run({"question": "shout"}).outputs["agent"]
    loud, wrong, me = out["steps"][0]["tool_calls"]
    assert loud["tool"] == "flow/loud" and json.loads(loud["result"]) == {"loud": "HEY!HEY!"}
    assert "inputs.words" in wrong["error"] and "unknown input" in wrong["error"]
    # the agent's own flow, called as a tool, may not call itself again
    assert "error" not in me, me
    assert "already running further up this chain of calls" in json.loads(json.loads(me["result"])["agent"]["text"])["m2"]
    offered = {t["function"]["name"]: t["function"] for t in model.requests[0]["tools"]}
    assert offered["loud"]["description"] == "Says the text loudly."
    assert offered["loud"]["parameters"] == {"type": "object", "additionalProperties": False, "required": ["text"], "properties": {
        "text": {"type": "string", "description": "what to say"}, "times": {"type": "integer", "default": 1}}}
    assert offered["me"]["description"] == "Ask yourself."


# -- what validation finds, and secrets ---------------------------------------------------------------
def test_validation_names_the_field_of_each_mistake(tmp_path: Path) -> None:
    flow = agent_flow(tmp_path, {"base_url": "http://127.0.0.1:9/v1", "tools": ["time/current_time", "web/no_such"], "stream": True,
                                 "flows": [{"name": "x", "path": "missing.flow.yaml"}], "mode": "psychic"})
    with pytest.raises(FlowValidationError) as info:
        flow.validate()
    where = {p.field: p.message for p in info.value.problems}
    assert "config.stream" in where and "config.mode" in where
    empty = agent_flow(tmp_path, {"base_url": "http://127.0.0.1:9/v1", "tools": ["web/no_such"], "flows": [{"name": "x", "path": "missing.flow.yaml"}]})
    with pytest.raises(FlowValidationError) as info:
        empty.validate()
    where = {p.field: p.message for p in info.value.problems}
    assert where["config.tools[0]"].startswith("unknown tool 'web/no_such'") and "no flow file 'missing.flow.yaml'" in where["config.flows[0].path"]
    bare = agent_flow(tmp_path, {"base_url": "http://127.0.0.1:9/v1"})
    with pytest.raises(FlowValidationError, match="an agent needs tools"):
        bare.validate()


def test_secrets_reach_the_servers_and_stay_out_of_the_trace(tmp_path: Path, serve: Serve, mcp_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODEL_KEY", SECRET)
    monkeypatch.setenv("DEMO_TOKEN", SECRET)
    model = ScriptedModel(serve, {"tool_calls": [call("secret_ok", {}, "s")]}, lambda body: {"content": tool_messages(body)["s"]})
    flow = agent_flow(tmp_path, {"base_url": model.base_url, "api_key_env": "MODEL_KEY",
                                 "mcp_servers": [{"url": mcp_url, "headers": {"Authorization": "Bearer ${DEMO_TOKEN}"}}]})
    result = flow.run({"question": "secret?"})
    assert result.outputs["agent"]["text"] == "yes"  # the MCP server got its header
    assert model.headers[0]["authorization"] == f"Bearer {SECRET}"
    assert SECRET not in result.to_json() and "${DEMO_TOKEN}" in result.to_json()
    # a server that cannot be reached: the error shows the reference, not the value
    closed = {"url": f"http://127.0.0.1:{free_port()}/mcp?key=${{DEMO_TOKEN}}"}
    message, trace = failure(agent_flow(tmp_path, {"base_url": model.base_url, "api_key_env": "MODEL_KEY", "mcp_servers": [closed]}),
                             {"question": "?"})
    assert "cannot reach MCP server" in message and "key=${DEMO_TOKEN}" in message
    assert SECRET not in message and SECRET not in json.dumps(trace)
