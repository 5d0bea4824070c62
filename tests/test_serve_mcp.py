"""A served flow as an MCP server: `jupyter-flow serve flow FLOW --mcp` started as a user
starts it, called by the official `mcp` client over streamable HTTP. The flow is one tool
(its name, its description, its inputs as the schema); a call runs it and answers its
outputs; arguments it refuses, a run that fails and an unknown tool are errors the client
sees; the token, the body limit and the files root hold for /mcp as for /run."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from processes import stop
from servers import free_port
from test_serve import metric

mcp = pytest.importorskip("mcp")
httpx2 = pytest.importorskip("httpx2")
from mcp.client.streamable_http import streamable_http_client  # noqa: E402

TOKEN = "mcp-s3cret-token"

GREET = """\
spec_version: 1
name: greet
description: Greets someone, as many times as asked.
inputs:
  name: {type: text, description: who to greet}
  times: {type: integer, default: 1}
outputs:
  greeting: "{{ hello.output.text }}"
nodes:
  - id: hello
    type: template
    config: {template: "{{ ('Hello ' ~ name ~ '! ') * times }}"}
"""

READ = """\
spec_version: 1
name: read pdf
inputs:
  document: {type: file}
nodes:
  - id: extract
    type: pdf
    config: {source: "{{ document }}"}
"""


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Any]:
    """Start `jupyter-flow serve flow FLOW --mcp ARGS...`; every server is stopped after the test."""
    procs: list[subprocess.Popen[str]] = []

    def start(flow: Path, *args: str, env: dict[str, str] | None = None) -> str:
        port = free_port()
        exe = Path(sys.executable).with_name("jupyter-flow")
        proc = subprocess.Popen([str(exe), "serve", "flow", str(flow), "--port", str(port), "--mcp", *args],
                                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env={**os.environ, **(env or {})}, cwd=tmp_path)
        procs.append(proc)
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[0]
            try:
                httpx.get(url + "/health", timeout=1)
                return url
            except httpx.TransportError:
                assert time.monotonic() < deadline, "the service did not start"
                time.sleep(0.1)

    yield start
    for proc in procs:
        stop(proc)


async def session(url: str, action: Any, token: str | None = None) -> Any:
    """`action(client)` with the official client connected to `url`/mcp (with a bearer token)."""
    headers = {"authorization": f"Bearer {token}"} if token else {}
    async with httpx2.AsyncClient(headers=headers, timeout=60) as http, mcp.Client(streamable_http_client(f"{url}/mcp", http_client=http)) as client:
        return await action(client)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def test_the_flow_is_one_tool_that_runs_it(tmp_path: Path, served: Any) -> None:
    url = served(write(tmp_path / "greet.flow.yaml", GREET), "--token-env", "API_TOKEN", env={"API_TOKEN": TOKEN})

    async def use(client: Any) -> tuple[Any, ...]:
        listed = await client.list_tools()
        answer = await client.call_tool("greet", {"name": "Ann", "times": 2})
        refused = await client.call_tool("greet", {"times": "many", "colour": "red"})
        with pytest.raises(mcp.MCPError, match="unknown tool 'shout'"):
            await client.call_tool("shout", {"name": "Ann"})
        return listed, answer, refused

    listed, answer, refused = asyncio.run(session(url, use, TOKEN))
    (tool,) = listed.tools
    assert tool.name == "greet" and tool.description == "Greets someone, as many times as asked."
    assert tool.input_schema == {"type": "object", "additionalProperties": False, "required": ["name"], "properties": {
        "name": {"type": "string", "description": "who to greet"}, "times": {"type": "integer", "default": 1}}}
    assert not answer.is_error
    body = answer.structured_content
    assert body["result"] == {"greeting": "Hello Ann! Hello Ann! "} and body["outputs"]["hello"] == {"text": "Hello Ann! Hello Ann! "}
    assert json.loads(answer.content[0].text) == body
    # the run is one of the service's: its trace is kept, and the metrics count it under /mcp
    auth = {"authorization": f"Bearer {TOKEN}"}
    trace = httpx.get(f"{url}/runs/{body['run_id']}", headers=auth).json()
    assert trace["nodes"][0]["outputs"] == {"text": "Hello Ann! Hello Ann! "}
    # arguments the flow's input rules refuse: an error result naming each problem
    assert refused.is_error
    said = refused.content[0].text
    assert "inputs.times" in said and "inputs.name" in said and "inputs.colour" in said and "missing required input" in said
    metrics = httpx.get(f"{url}/metrics", headers=auth).text
    assert metric(metrics, "jupyter_flow_requests_total", route="/mcp", status="200") == 1
    assert metric(metrics, "jupyter_flow_requests_total", route="/mcp", status="422") == 1
    # the token guards /mcp as it does /run
    with pytest.raises(Exception):  # noqa: B017, PT011 - the client raises what it raises for a 401
        asyncio.run(session(url, lambda client: client.list_tools()))
    assert httpx.post(f"{url}/mcp", json={}).status_code == 401


def test_file_inputs_are_read_only_inside_the_files_root(tmp_path: Path, served: Any) -> None:
    import pymupdf

    root = tmp_path / "contracts"
    for folder, text in ((root, "Pay within 30 days."), (tmp_path / "private", "TOP SECRET")):
        folder.mkdir()
        doc = pymupdf.open()
        doc.new_page().insert_text((72, 72), text)
        doc.save(folder / "doc.pdf")
    write(root / "broken.pdf", "not a pdf at all")
    url = served(write(tmp_path / "app" / "read.flow.yaml", READ), "--files-root", str(root))

    async def use(client: Any) -> dict[str, Any]:
        found = {"tools": await client.list_tools(), "inside": await client.call_tool("read_pdf", {"document": "doc.pdf"})}
        for probe in ("../private/doc.pdf", str(tmp_path / "private" / "doc.pdf"), "/etc/passwd"):
            found[probe] = await client.call_tool("read_pdf", {"document": probe})
        found["broken"] = await client.call_tool("read_pdf", {"document": "broken.pdf"})
        return found

    found = asyncio.run(session(url, use))
    (tool,) = found["tools"].tools
    assert tool.name == "read_pdf" and "files folder" in tool.input_schema["properties"]["document"]["description"]
    inside = found.pop("inside")
    assert not inside.is_error and "Pay within 30 days." in inside.structured_content["outputs"]["extract"]["text"]
    broken = found.pop("broken")
    assert broken.is_error and "node 'extract'" in broken.content[0].text and str(tmp_path) not in broken.content[0].text
    for probe, answer in found.items():
        if probe == "tools":
            continue
        said = answer.content[0].text
        assert answer.is_error and "outside the folder this server reads files from" in said, probe
        assert "TOP SECRET" not in said and str(tmp_path) not in said.replace(probe, ""), (probe, said)


def test_a_body_over_the_limit_is_refused(tmp_path: Path, served: Any) -> None:
    url = served(write(tmp_path / "greet.flow.yaml", GREET), "--max-body", "2KB")

    async def use(client: Any) -> Any:
        small = await client.call_tool("greet", {"name": "Bo"})
        with pytest.raises(Exception):  # noqa: B017, PT011 - the client raises what it raises for a 413
            await client.call_tool("greet", {"name": "x" * 10_000})
        return small

    small = asyncio.run(session(url, use))
    assert small.structured_content["result"] == {"greeting": "Hello Bo! "}
    call = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": "greet", "arguments": {"name": "x" * 10_000}}}
    refused = httpx.post(f"{url}/mcp", json=call, headers={"accept": "application/json, text/event-stream"})
    assert refused.status_code == 413 and "--max-body" in refused.text
    metrics = httpx.get(f"{url}/metrics").text
    assert metric(metrics, "jupyter_flow_requests_total", route="/mcp", status="200") == 1  # the refused ones never ran


def test_arguments_that_are_not_an_object_are_a_protocol_error(tmp_path: Path, served: Any) -> None:
    # the flow's input rules answer values they refuse with is_error (above); arguments that
    # are not a JSON object never reach them: the protocol refuses the request itself
    url = served(write(tmp_path / "greet.flow.yaml", GREET))
    headers = {"accept": "application/json, text/event-stream"}
    for arguments in (["Ann"], "Ann", 3):
        call = {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": "greet", "arguments": arguments}}
        reply = httpx.post(f"{url}/mcp", json=call, headers=headers).json()
        assert reply["id"] == 7 and "result" not in reply and reply["error"]["code"] == -32602, (arguments, reply)
    metrics = httpx.get(f"{url}/metrics").text
    assert metric(metrics, "jupyter_flow_node_seconds_count") == 0  # the flow never ran
    # a good call on the same server still runs it
    good = {"jsonrpc": "2.0", "id": 8, "method": "tools/call", "params": {"name": "greet", "arguments": {"name": "Ann"}}}
    reply = httpx.post(f"{url}/mcp", json=good, headers=headers).json()
    assert reply["result"]["structuredContent"]["result"] == {"greeting": "Hello Ann! "}
    assert metric(httpx.get(f"{url}/metrics").text, "jupyter_flow_node_seconds_count") == 1
