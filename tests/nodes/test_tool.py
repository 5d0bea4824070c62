"""The `tool` node: built-in tools, Python functions and a real MCP server on loopback
(started by the test with the official SDK), called through flows as users write them;
what validation finds without running anything, errors that name the tool, timeouts, and
secrets that stay out of traces and error messages."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pymupdf
import pytest
import yaml
from processes import MCP_DEMO, mcp_demo_server
from servers import LoopbackServer, Reply, free_port

from jupyter_flow import Flow, FlowRunError, FlowValidationError, NodeTimeoutError

Serve = Callable[[dict[str, Any]], LoopbackServer]
SECRET = "t0p-s3cret-value"


@pytest.fixture(scope="module")
def mcp_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real MCP server (streamable HTTP) on a free loopback port, for the module's tests."""
    with mcp_demo_server(tmp_path_factory.mktemp("mcp"), SECRET) as url:
        yield url


def tool_flow(tmp_path: Path, *nodes: dict[str, Any], inputs: dict[str, Any] | None = None) -> Flow:
    """A flow file of tool nodes, one after the other, written and loaded as users do."""
    data: dict[str, Any] = {"spec_version": 1, "name": "tools", "nodes": [{"type": "tool", **n} for n in nodes]}
    if inputs:
        data["inputs"] = inputs
    data["edges"] = [{"from": a["id"], "to": b["id"]} for a, b in zip(nodes, nodes[1:])]
    path = tmp_path / "tools.flow.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return Flow.load(path)


def failure(flow: Flow, inputs: dict[str, Any] | None = None) -> tuple[str, str]:
    """The failed run's error message and its JSON trace."""
    with pytest.raises(FlowRunError) as info:
        flow.run(inputs or {})
    result = info.value.result
    assert result is not None
    return str(info.value), result.to_json()


# -- MCP over streamable HTTP ------------------------------------------------------------
def test_an_mcp_tool_through_a_flow(tmp_path: Path, mcp_url: str) -> None:
    flow = tool_flow(
        tmp_path,
        {"id": "sum", "config": {"tool": "mcp/demo/add", "server": {"url": mcp_url}, "arguments": {"a": "{{ x }}", "b": 2}}},
        {"id": "loud", "config": {"tool": "mcp/demo/shout", "server": {"url": mcp_url}, "arguments": {"text": "total {{ sum.output.result }}"}}},
        {"id": "pixel", "config": {"tool": "mcp/demo/dot", "server": {"url": mcp_url}, "files_dir": "out"}},
        inputs={"x": {"type": "integer"}},
    )
    result = flow.run({"x": 40})
    assert result.outputs["sum"] == {"result": 42}
    assert result.outputs["loud"] == {"result": "TOTAL 42"}
    (file,) = result.outputs["pixel"]["files"]
    assert file["media_type"] == "image/png" and Path(file["path"]).parent == tmp_path / "out"
    image = pymupdf.Pixmap(Path(file["path"]).read_bytes())
    assert (image.width, image.height) == (1, 1) and file["size"] == Path(file["path"]).stat().st_size


def test_a_slow_mcp_tool_ends_at_the_nodes_timeout(tmp_path: Path, mcp_url: str) -> None:
    flow = tool_flow(tmp_path, {"id": "wait", "timeout_s": 1,
                                "config": {"tool": "mcp/demo/slow", "server": {"url": mcp_url}, "arguments": {"seconds": 60}}})
    message, trace = failure(flow)
    assert "node 'wait'" in message and "tool 'mcp/demo/slow' did not finish within timeout_s=1" in message
    (record,) = json.loads(trace)["nodes"]
    assert record["error"]["type"] == "NodeTimeoutError"
    # the server is still there for the next call: the abandoned call did not break it
    quick = tool_flow(tmp_path, {"id": "add", "config": {"tool": "mcp/demo/add", "server": {"url": mcp_url}, "arguments": {"a": 1, "b": 1}}})
    assert quick.run().outputs["add"] == {"result": 2}


def test_a_failing_mcp_tool_names_the_tool_and_is_not_retried(tmp_path: Path, mcp_url: str) -> None:
    flow = tool_flow(tmp_path, {"id": "nope", "retry": {"max_attempts": 3, "backoff_s": 0},
                                "config": {"tool": "mcp/demo/fail", "server": {"url": mcp_url}, "arguments": {"reason": "no tea"}}})
    with pytest.raises(FlowRunError) as info:
        flow.run()
    assert "node 'nope'" in str(info.value) and "tool 'mcp/demo/fail'" in str(info.value) and "refused: no tea" in str(info.value)
    assert info.value.result["nope"].attempts == 1  # type: ignore[union-attr]
    # arguments the server's schema refuses: the server's words come through
    wrong = tool_flow(tmp_path, {"id": "sum", "config": {"tool": "mcp/demo/add", "server": {"url": mcp_url}, "arguments": {"a": "x"}}})
    message, _ = failure(wrong)
    assert "tool 'mcp/demo/add'" in message and "validation error" in message


def test_secrets_reach_the_server_but_never_the_trace(tmp_path: Path, mcp_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_TOKEN", SECRET)
    server = {"url": mcp_url, "headers": {"Authorization": "Bearer ${DEMO_TOKEN}"}}
    flow = tool_flow(tmp_path, {"id": "check", "config": {"tool": "mcp/demo/secret_ok", "server": server}})
    result = flow.run()
    assert result.outputs["check"] == {"result": "yes"}
    trace = result.to_json()
    assert "${DEMO_TOKEN}" in trace and SECRET not in trace
    # a server that cannot be reached, its address holding the secret: the error shows the reference
    closed = f"http://127.0.0.1:{free_port()}/mcp?key=${{DEMO_TOKEN}}"
    unreachable = tool_flow(tmp_path, {"id": "check", "config": {"tool": "mcp/demo/secret_ok", "server": {"url": closed}}})
    message, trace = failure(unreachable)
    assert "cannot reach MCP server" in message and "key=${DEMO_TOKEN}" in message
    assert SECRET not in message and SECRET not in trace
    monkeypatch.delenv("DEMO_TOKEN")
    message, _ = failure(flow)
    assert "tool 'mcp/demo/secret_ok'" in message and "DEMO_TOKEN" in message and "not set" in message


def test_an_unreachable_server_is_retried(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}/mcp"
    flow = tool_flow(tmp_path, {"id": "sum", "retry": {"max_attempts": 2, "backoff_s": 0},
                                "config": {"tool": "mcp/demo/add", "server": {"url": closed}, "arguments": {"a": 1, "b": 2}}})
    with pytest.raises(FlowRunError) as info:
        flow.run()
    assert "tool 'mcp/demo/add': cannot reach MCP server" in str(info.value)
    assert info.value.result["sum"].attempts == 2  # type: ignore[union-attr]


def test_an_mcp_server_the_flow_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DEMO_TOKEN", SECRET)
    server = {"command": [sys.executable, str(MCP_DEMO), "stdio"], "env": {"DEMO_KEY": "${DEMO_TOKEN}", "DEMO_EXPECTED": SECRET}}
    flow = tool_flow(tmp_path, {"id": "check", "timeout_s": 120, "config": {"tool": "mcp/local/secret_ok", "server": server}})
    result = flow.run()
    assert result.outputs["check"] == {"result": "yes"}
    assert "${DEMO_TOKEN}" in result.to_json() and result.to_json().count(SECRET) == 1  # DEMO_EXPECTED, written as is
    broken = tool_flow(tmp_path, {"id": "check", "config": {"tool": "mcp/local/secret_ok", "server": {"command": ["/no/such/server"]}}})
    message, _ = failure(broken)
    assert "tool 'mcp/local/secret_ok': cannot start MCP server '/no/such/server'" in message
    # a server that dies telling its secret: what it wrote is in the error, the secret is not
    blurt = "import os, sys; sys.stderr.write('my key is ' + os.environ['DEMO_KEY']); sys.exit(3)"
    dying = tool_flow(tmp_path, {"id": "check", "config": {"tool": "mcp/local/secret_ok",
                                                           "server": {"command": [sys.executable, "-c", blurt], "env": {"DEMO_KEY": "${DEMO_TOKEN}"}}}})
    message, trace = failure(dying)
    assert "tool 'mcp/local/secret_ok'" in message and "the server wrote: my key is ***" in message
    assert SECRET not in message and SECRET not in trace


# -- built-in and Python tools -----------------------------------------------------------
def test_builtin_tools_in_a_flow(tmp_path: Path, serve: Serve) -> None:
    server = serve({"/doc": lambda req: Reply(200, "<html><body><main><h2>Terms</h2><p>Pay in 30 days.</p></main></body></html>",
                                              content_type="text/html; charset=utf-8")})
    doc = pymupdf.open()
    doc.new_page().insert_text((50, 50), "hello")
    doc.save(tmp_path / "letter.pdf")
    flow = tool_flow(
        tmp_path,
        {"id": "page", "config": {"tool": "web/page_text", "arguments": {"url": f"{server.url}/doc"}}},
        {"id": "word", "config": {"tool": "docx/from_markdown", "arguments": {"markdown": "{{ page.output.result }}", "file_name": "terms"},
                                  "files_dir": "made"}},
        {"id": "png", "config": {"tool": "pdf/pages_to_png", "arguments": {"path": "letter.pdf", "dpi": 36}}},
    )
    result = flow.run()
    assert result.outputs["page"] == {"result": "## Terms\n\nPay in 30 days."}
    (word,) = result.outputs["word"]["files"]
    assert word["path"] == str(tmp_path / "made" / "terms.docx") and Path(word["path"]).stat().st_size == word["size"]
    assert result.outputs["png"]["result"] == {"pages": [1], "page_count": 1, "dpi": [36]}
    (png,) = result.outputs["png"]["files"]
    assert Path(png["path"]).name == "page-1.png" and Path(png["path"]).read_bytes().startswith(b"\x89PNG")


def test_a_builtin_tools_error_names_node_and_tool(tmp_path: Path) -> None:
    flow = tool_flow(tmp_path, {"id": "now", "config": {"tool": "time/current_time", "arguments": {"timezone": "Nowhere/City"}}})
    message, _ = failure(flow)
    assert "node 'now'" in message and "tool 'time/current_time': unknown time zone 'Nowhere/City'" in message


MODULE = '''
from pathlib import Path

Path(__file__).with_name("imported.marker").write_text("imported")


def grade(score: float, passing: float = 50.0) -> dict:
    """Pass or fail a score.

    Args:
        score: the score, 0 to 100
        passing: the lowest passing score
    """
    return {"passed": score >= passing, "score": score}
'''


@pytest.fixture
def tools_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "lib"
    folder.mkdir()
    (folder / "grading_tools.py").write_text(textwrap.dedent(MODULE))
    monkeypatch.syspath_prepend(str(folder))
    monkeypatch.delitem(sys.modules, "grading_tools", raising=False)
    return folder


def test_a_python_function_tool_in_a_flow(tmp_path: Path, tools_module: Path) -> None:
    flow = tool_flow(tmp_path, {"id": "grade", "config": {"tool": "python/grading_tools:grade", "arguments": {"score": "{{ score }}"}}},
                     inputs={"score": {"type": "text"}})
    flow.validate()
    assert not (tools_module / "imported.marker").exists()  # validating ran none of its code
    assert flow.run({"score": "71.5"}).outputs["grade"] == {"result": {"passed": True, "score": 71.5}}
    message, _ = failure(flow, {"score": "lots"})
    assert "tool 'python/grading_tools:grade': argument 'score': Input should be a valid number" in message


# -- validation --------------------------------------------------------------------------
def problems(flow: Flow) -> list[tuple[str | None, str | None, str]]:
    with pytest.raises(FlowValidationError) as info:
        flow.validate()
    return [(p.node, p.field, p.message) for p in info.value.problems]


def test_validation_finds_tools_without_running_or_connecting(tmp_path: Path, tools_module: Path) -> None:
    flow = tool_flow(
        tmp_path,
        {"id": "a", "config": {"tool": "time/curent_time"}},
        {"id": "b", "config": {"tool": "python/grading_tools:grading"}},
        {"id": "c", "config": {"tool": "mcp/docs/search"}},
        {"id": "d", "config": {"tool": "json/path", "server": {"url": "http://127.0.0.1:1/mcp"}}},
        {"id": "e", "config": {"tool": "mcp/docs/search", "server": {"url": "http://127.0.0.1:1/mcp", "env": {"A": "b"}}}},
        {"id": "f", "config": {"tool": "base64/encode", "arguments": ["text"]}},
        # an MCP server that does not exist: validation does not connect, so this one is fine
        {"id": "g", "config": {"tool": "mcp/docs/search", "server": {"url": "http://127.0.0.1:1/mcp"}}},
    )
    found = problems(flow)
    assert [(node, field) for node, field, _ in found] == [
        ("a", "config.tool"), ("b", "config.tool"), ("c", "config.tool"), ("d", "config.server"), ("e", "config.server"), ("f", "config.arguments")]
    messages = dict((node, message) for node, _, message in found)
    assert "time/current_time" in messages["a"]
    assert "defines no 'grading'" in messages["b"]
    assert "no MCP server 'docs' is known" in messages["c"]
    assert not (tools_module / "imported.marker").exists()


def test_the_cli_validates_a_tool_name(tmp_path: Path) -> None:
    path = tmp_path / "bad.flow.json"
    path.write_text(json.dumps({"nodes": [{"id": "t", "type": "tool", "config": {"tool": "web/page_txt"}}]}))
    exe = Path(sys.executable).with_name("jupyter-flow")
    done = subprocess.run([str(exe), "validate", str(path)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "node 't'" in done.stderr and "config.tool" in done.stderr and "web/page_text" in done.stderr


def test_timeouts_are_node_timeouts(tmp_path: Path, tools_module: Path) -> None:
    (tools_module / "sleepy.py").write_text("import time\n\ndef nap(seconds: float) -> str:\n    time.sleep(seconds)\n    return 'awake'\n")
    flow = tool_flow(tmp_path, {"id": "nap", "timeout_s": 0.5, "config": {"tool": "python/sleepy:nap", "arguments": {"seconds": 5}}})
    with pytest.raises(FlowRunError) as info:
        flow.run()
    cause = info.value.result["nap"].error  # type: ignore[union-attr]
    assert cause is not None and cause.type == NodeTimeoutError.__name__
    assert "tool 'python/sleepy:nap' did not finish within timeout_s=0.5" in cause.message
