"""The agent's steps in the workbench's Inspect tab, from real agent runs against a scripted
OpenAI-compatible server on loopback: a row per model turn, tool call, result or error and
the final answer, each opening to its content; long contents cut with their real size and
shown whole on demand (within bounds); the limit that stopped the agent; the view hidden
for other nodes."""

from __future__ import annotations

import asyncio
import html
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from openai_server import ScriptedModel, Serve, tool_messages
from openai_server import tool_call as call
from servers import Reply

from jupyter_flow import Flow, FlowRunError
from jupyter_flow.tools import default_tool_registry
from jupyter_flow.workbench.agent_steps import FULL_CHARS, MAX_ROWS, PREVIEW_CHARS, AgentStepsView, agent_rows, steps_html

pytest.importorskip("ipywidgets")

LONG = 250_000  # past FULL_CHARS: "Show all" shows its first part and says so


def long_text(n: int) -> str:
    """`n` characters of text (numbered words, so a cut can be seen)."""
    words = " ".join(f"w{i}" for i in range(n // 3 + 1))
    return words[:n]


def agent_flow(tmp_path: Path, config: dict[str, Any], *, timeout_s: float | None = None, after: bool = False) -> Path:
    """A flow file with one agent node (and a template node after it, with `after`)."""
    node: dict[str, Any] = {"id": "agent", "type": "agent", "config": {"model": "scripted", "prompt": "{{ question }}", **config}}
    if timeout_s is not None:
        node["timeout_s"] = timeout_s
    nodes = [node]
    if after:
        nodes.append({"id": "report", "type": "template", "config": {"template": "said: {{ agent.output.text }}"}})
    data = {"spec_version": 1, "name": "ask", "inputs": {"question": {"type": "text", "default": "?"}}, "nodes": nodes,
            "edges": [{"from": "start", "to": "agent"}, *([{"from": "agent", "to": "report"}] if after else [])]}
    path = tmp_path / "agent.flow.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


@pytest.fixture(scope="module", autouse=True)
def tools() -> None:
    def page(size: int) -> str:
        """A text of `size` characters."""
        return long_text(size)

    default_tool_registry().register_function(page, name="steps/page")


def test_each_step_is_a_row_that_opens_to_its_content(tmp_path: Path, serve: Serve) -> None:
    model = ScriptedModel(
        serve,
        {"content": "I encode it and read the page <b>now</b>.", "tool_calls": [
            call("base64_encode", {"text": "hi"}, "enc"), call("steps_page", {"size": LONG}, "page"),
            call("no_such_tool", {"x": 1}, "ghost"), call("base64_encode", '{"text": ', "bad")]},
        lambda body: {"content": f"Encoded: {tool_messages(body)['enc']}."},
    )
    flow = Flow.load(agent_flow(tmp_path, {"base_url": model.base_url, "tools": ["base64/encode", "steps/page"],
                                           "max_result_chars": 300_000}))
    result = flow.run({"question": "encode hi"})
    record = result.records["agent"]
    rows = agent_rows(record)

    assert [(r.key, r.kind) for r in rows] == [
        ("1", "model"),
        ("1.1", "call"), ("1.1 result", "result"),
        ("1.2", "call"), ("1.2 result", "result"),
        ("1.3", "call"), ("1.3 error", "error"),
        ("1.4", "call"), ("1.4 error", "error"),
        ("2", "answer"),
    ]
    by = {r.key: r for r in rows}
    steps = result.outputs["agent"]["steps"]
    # the model's turn: its text, its time and what the server said of it
    assert by["1"].content == "I encode it and read the page <b>now</b>." and by["1"].duration_s == steps[0]["duration_s"]
    assert dict(by["1"].facts) == {"finish": "tool_calls", "tokens": "prompt 10, completion 5, total 15", "asked for": "4 tool calls"}
    # a call: its name and arguments in the title, the arguments whole when opened, the tool that ran
    assert by["1.1"].title == '1.1 base64_encode(text="hi")' and '"text": "hi"' in by["1.1"].content
    assert dict(by["1.1"].facts) == {"tool": "base64/encode", "id": "enc"}
    assert by["1.1 result"].content == "aGk=" and by["1.1 result"].duration_s == steps[0]["tool_calls"][0]["duration_s"]
    assert by["1.2 result"].size == LONG and by["1.2 result"].cut and not by["1.1 result"].cut
    # the model's mistakes are errors, as the model was told them
    assert by["1.3 error"].content.startswith("there is no tool named 'no_such_tool'") and dict(by["1.3"].facts)["tool"] == "none ran"
    assert by["1.4"].content == '{"text": ' and "not valid JSON" in by["1.4 error"].content
    assert by["2"].content == "Encoded: aGk=." == result.outputs["agent"]["text"]

    page = steps_html(record, rows)
    assert page.count("<details class='jf-agent-row") == len(rows)
    assert "2 model calls \u00b7 4 tool calls (2 failed)" in page and "30 tokens" in page
    # contents are text, never markup
    assert "<b>now</b>" not in page and "&lt;b&gt;now&lt;/b&gt;" in page
    # the long result: only its first part, and its real size
    assert long_text(PREVIEW_CHARS) in page and long_text(PREVIEW_CHARS + 10) not in page
    assert f"{PREVIEW_CHARS:,} of {LONG:,} characters shown" in page
    assert len(page) < 60_000


def test_show_all_shows_a_long_content_whole_within_a_bound(tmp_path: Path, serve: Serve) -> None:
    model = ScriptedModel(serve, {"tool_calls": [call("steps_page", {"size": 5000}, "a"), call("steps_page", {"size": LONG}, "b")]},
                          {"content": "done"})
    flow = Flow.load(agent_flow(tmp_path, {"base_url": model.base_url, "tools": ["steps/page"], "max_result_chars": 300_000}))
    record = flow.run({"question": "read"}).records["agent"]
    view = AgentStepsView()
    view.show(record)
    assert view.widget.layout.display == "flex" and view.full_bar.layout.display == "flex"
    # the rows cut short are offered, with their size
    assert [key for _, key in view.choice.options] == ["1.1 result", "1.2 result"]
    assert "(5,000 characters)" in view.choice.options[0][0]
    shown = view.show_all("1.1 result")
    assert long_text(5000) in shown and "all 5,000 characters" in shown and view.hide_button.layout.display != "none"
    view.choice.value = "1.2 result"
    view.show_button.click()
    shown = view.full.value
    assert long_text(FULL_CHARS) in shown and long_text(FULL_CHARS + 10) not in shown
    assert f"the first {FULL_CHARS:,} of {LONG:,} characters" in shown
    view.hide_button.click()
    assert view.full.value == ""
    with pytest.raises(KeyError, match="no step row '9'"):
        view.show_all("9")


def test_limits_that_stopped_the_agent_are_said(tmp_path: Path, serve: Serve) -> None:
    model = ScriptedModel(serve, {"content": "once more", "tool_calls": [call("base64_encode", {"text": "x"}, "again")]})
    config = {"base_url": model.base_url, "tools": ["base64/encode"], "max_steps": 2}
    with pytest.raises(FlowRunError) as info:
        Flow.load(agent_flow(tmp_path, config)).run({"question": "loop"})
    assert info.value.result is not None
    rows = agent_rows(info.value.result.records["agent"])
    assert [r.kind for r in rows] == ["model", "call", "result", "model", "call", "error", "limit"]
    assert rows[-1].title.startswith("stopped at max_steps=2: the model still called tools") and "node failed" in rows[-1].title
    assert rows[-2].content == "not run: the agent reached max_steps=2"

    out = Flow.load(agent_flow(tmp_path, {**config, "on_limit": "answer"})).run({"question": "loop"})
    rows = agent_rows(out.records["agent"])
    assert [r.kind for r in rows][-2:] == ["answer", "limit"]
    assert rows[-2].content == "once more" and "a limit stopped it" in rows[-2].title
    assert "on_limit: answer" in rows[-1].title

    slow = ScriptedModel(serve, {"tool_calls": [call("steps_page", {"size": 10}, "p")]})

    def stall(seconds: float) -> str:
        """Sleep, then answer."""
        import time

        time.sleep(seconds)
        return "late"

    default_tool_registry().register_function(stall, name="steps/stall")
    slow.script = [{"tool_calls": [call("steps_stall", {"seconds": 5}, "s")]}]
    with pytest.raises(FlowRunError) as info:
        Flow.load(agent_flow(tmp_path, {"base_url": slow.base_url, "tools": ["steps/stall"]}, timeout_s=1)).run({"question": "wait"})
    assert info.value.result is not None
    record = info.value.result.records["agent"]
    rows = agent_rows(record)
    assert rows[0].kind == "model" and rows[-1].kind == "limit"
    assert rows[-1].title == "stopped by timeout_s=1 s after 1 model call: the node failed"
    assert "stopped by timeout_s=1 s" in steps_html(record)


def test_a_model_server_that_fails_mid_loop_ends_the_list_with_its_error(tmp_path: Path, serve: Serve) -> None:
    answers = [Reply(200, {"choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": "first", "tool_calls": [call("base64_encode", {"text": "a"}, "e")]}}]}),
               Reply(503, {"error": {"message": "overloaded"}})]
    server = serve({"/v1/chat/completions": lambda req: answers.pop(0)})
    with pytest.raises(FlowRunError) as info:
        Flow.load(agent_flow(tmp_path, {"base_url": f"{server.url}/v1", "tools": ["base64/encode"]})).run({"question": "?"})
    assert info.value.result is not None
    rows = agent_rows(info.value.result.records["agent"])
    assert [(r.key, r.kind) for r in rows] == [("1", "model"), ("1.1", "call"), ("1.1 result", "result"), ("failed", "error")]
    assert rows[-1].title.startswith("the node failed: ") and "answered HTTP 503: overloaded" in rows[-1].content


def test_rows_past_the_bound_are_counted_not_drawn(tmp_path: Path, serve: Serve) -> None:
    many = {"tool_calls": [call("base64_encode", {"text": f"n{i}"}, f"c{i}") for i in range(34)]}
    model = ScriptedModel(serve, many)
    flow = Flow.load(agent_flow(tmp_path, {"base_url": model.base_url, "tools": ["base64/encode"], "max_steps": 3, "on_limit": "answer"}))
    record = flow.run({"question": "many"}).records["agent"]
    rows = agent_rows(record)
    assert len(rows) == 3 * (1 + 2 * 34) + 2 > MAX_ROWS
    page = steps_html(record, rows)
    assert page.count("<details class='jf-agent-row") == MAX_ROWS
    assert f"\u2026 {len(rows) - MAX_ROWS} more rows not drawn" in page


def test_the_inspect_tab_shows_an_agents_steps_and_hides_them_for_other_nodes(tmp_path: Path, serve: Serve) -> None:
    pytest.importorskip("ipycytoscape")
    from jupyter_flow.workbench import Workbench

    model = ScriptedModel(serve, {"content": "Let me encode.", "tool_calls": [call("base64_encode", {"text": "ok"}, "e")]},
                          lambda body: {"content": f"It is {tool_messages(body)['e']}"})
    wb = Workbench(agent_flow(tmp_path, {"base_url": model.base_url, "tools": ["base64/encode"]}, after=True))
    view = wb.inspect_panel.agent_steps

    async def main() -> Any:
        return await wb.run({"question": "encode ok"})

    result = asyncio.run(main())
    assert result is not None and result.ok
    wb.click_node("agent")
    assert view.widget.layout.display == "flex"
    text = html.unescape(re.sub(r"<[^>]+>", " ", view.list.value))
    assert "step 1: the model" in text and '1.1 base64_encode(text="ok")' in text and "step 2: the final answer" in text
    assert "It is b2s=" in text
    assert view.full_bar.layout.display == "none"  # nothing to show whole
    # the record's own page is still there below the steps
    assert "agent" in wb.inspect_panel.inspector.value and "Outputs" in wb.inspect_panel.inspector.value
    wb.click_node("report")
    assert view.widget.layout.display == "none" and view.list.value == ""
    wb.click_node("agent")
    assert view.widget.layout.display == "flex" and len(view.rows) == 4
