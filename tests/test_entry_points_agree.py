"""One flow, one answer: `jupyter-flow run`, `jupyter-flow batch`, a served flow and the
workbench treat the same flow the same way, because they share one HTTP client factory,
one graph check and one input validator."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from servers import AsgiServer, LoopbackServer, Reply, Request

from jupyter_flow import Flow, FlowValidationError

Serve = Callable[[dict[str, Any]], LoopbackServer]


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("jupyter-flow")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120)


def write_flow(path: Path, data: dict[str, Any]) -> Path:
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def _moved(req: Request) -> Reply:
    return Reply(307, {"moved": True}, headers={"location": "/v2/shout"})


def _shout(req: Request) -> Reply:
    return Reply(200, {"text": str(req.body["text"]).upper()})


def redirect_flow(tmp_path: Path, url: str) -> Path:
    return write_flow(
        tmp_path / "redirect.flow.yaml",
        {
            "spec_version": 1,
            "name": "redirect",
            "inputs": {"text": {"type": "text"}},
            "nodes": [{"id": "shout", "type": "http", "config": {"endpoint": f"{url}/v1/shout", "input_mapping": {"text": "{{ text }}"}}}],
            "edges": [{"from": "start", "to": "shout"}],
        },
    )


def test_an_endpoint_that_answers_307_works_through_run_batch_and_serve(serve: Serve, tmp_path: Path) -> None:
    server = serve({"/v1/shout": _moved, "/v2/shout": _shout})
    path = redirect_flow(tmp_path, server.url)

    ran = cli("run", str(path), "--input", "text=hello")
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == {"shout": {"text": "HELLO"}}

    items = tmp_path / "items.jsonl"
    items.write_text('{"id": "a", "text": "hello"}\n', encoding="utf-8")
    batch = cli("batch", str(path), "--inputs", str(items), "--out", str(tmp_path / "out"), "--quiet")
    assert batch.returncode == 0, batch.stderr
    (record,) = [json.loads(line) for line in (tmp_path / "out" / "results.jsonl").read_text().splitlines()]
    assert record["status"] == "ok" and record["outputs"] == {"shout": {"text": "HELLO"}}

    from jupyter_flow.serve.app import flow_app

    with AsgiServer(flow_app(path, warm=False)) as served:
        answer = httpx.post(f"{served.url}/run", json={"text": "hello"}, timeout=30)
    assert answer.status_code == 200, answer.text
    assert answer.json()["outputs"] == {"shout": {"text": "HELLO"}}
    # every entry point followed the redirect: three calls to the old path, three to the new
    assert [r.path for r in server.requests].count("/v2/shout") == 3


def duplicate_edge_flow(tmp_path: Path) -> Path:
    return write_flow(
        tmp_path / "dup.flow.yaml",
        {
            "spec_version": 1,
            "name": "dup",
            "inputs": {"text": {"type": "text", "default": "x"}},
            "nodes": [
                {"id": "a", "type": "template", "config": {"template": "{{ text }}"}},
                {"id": "b", "type": "template", "config": {"template": "{{ a.output.text }}!"}},
            ],
            "edges": [{"from": "start", "to": "a"}, {"from": "a", "to": "b"}, {"from": "a", "to": "b"}],
        },
    )


def test_a_duplicate_edge_is_the_same_problem_for_validate_run_and_the_workbench(tmp_path: Path) -> None:
    path = duplicate_edge_flow(tmp_path)
    for command in (("validate", str(path)), ("run", str(path))):
        done = cli(*command)
        assert done.returncode == 2, done.stdout
        assert "edges[2]" in done.stderr and "edge a -> b is given twice" in done.stderr
        assert "Traceback" not in done.stderr

    (problem,) = Flow.load(path).problems()
    assert (problem.edge, problem.node) == (2, None)

    pytest.importorskip("ipywidgets")
    from jupyter_flow import Workbench

    wb = Workbench(path)
    assert [(p.edge, p.message) for p in wb.flow.problems()] == [(problem.edge, problem.message)]
    assert "given twice" in wb.problems_view.value
    # the flow stays editable, so the problem can be fixed there
    wb.editor.add_node("template", "c", config={"template": "{{ b.output.text }}"})
    wb.editor.add_edge("b", "c")
    wb.editor.remove_edge(2)
    assert Flow.from_dict(wb.editor.data()).problems() == []
    # and a new duplicate is refused, naming the edge
    with pytest.raises(FlowValidationError, match="given twice"):
        wb.editor.add_edge("a", "b")


def text_flow(tmp_path: Path) -> Path:
    return write_flow(
        tmp_path / "text.flow.yaml",
        {
            "spec_version": 1,
            "name": "text",
            "inputs": {"text": {"type": "text"}},
            "nodes": [{"id": "echo", "type": "template", "config": {"template": "{{ text }}"}}],
            "edges": [{"from": "start", "to": "echo"}],
        },
    )


def test_a_number_for_a_text_input_gets_the_same_answer_everywhere(tmp_path: Path) -> None:
    path = text_flow(tmp_path)
    expected = "expected a string or a list of strings (text), got int 5"

    with pytest.raises(FlowValidationError) as caught:
        Flow.load(path).run({"text": 5})
    (problem,) = caught.value.problems
    assert (problem.field, problem.message) == ("inputs.text", expected)

    inputs = tmp_path / "inputs.json"
    inputs.write_text('{"text": 5}', encoding="utf-8")
    ran = cli("run", str(path), "--inputs", str(inputs))
    assert ran.returncode == 2 and expected in ran.stderr

    items = tmp_path / "items.jsonl"
    items.write_text('{"id": "five", "text": 5}\n{"id": "word", "text": "five"}\n', encoding="utf-8")
    cli("batch", str(path), "--inputs", str(items), "--out", str(tmp_path / "out"), "--quiet")
    records = {r["id"]: r for r in map(json.loads, (tmp_path / "out" / "results.jsonl").read_text().splitlines())}
    assert records["word"]["status"] == "ok"
    assert records["five"]["status"] == "error" and expected in records["five"]["error"]["message"]

    from jupyter_flow.serve.app import flow_app

    with AsgiServer(flow_app(path, warm=False)) as served:
        answer = httpx.post(f"{served.url}/run", json={"text": 5}, timeout=30)
    assert answer.status_code == 422
    assert answer.json()["problems"] == [{"node": None, "edge": None, "field": "inputs.text", "message": expected}]
