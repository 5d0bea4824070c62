"""The node cache and the run history as users meet them: `jupyter-flow run --cache DIR`
and `jupyter-flow batch --cache DIR` in processes of their own, against real loopback
services that count the requests they get, and `--history` read back by `jupyter-flow runs`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from servers import LoopbackServer, Reply, Request

from jupyter_flow import Flow

STEPS = ("intent", "lookup", "draft", "review")


def cli(*args: str, cwd: Path | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("jupyter-flow")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120, cwd=cwd,
                          env={**os.environ, **(env or {})})


class Services:
    """One loopback server with a route per step; each answers `{step: text}` built from
    what it was sent, and `hits` counts the requests per path."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.hits: Counter[str] = Counter()
        self.fail_next: set[str] = set()
        self._lock = threading.Lock()
        self.server = LoopbackServer({f"/{s}": self._route(s, delay_s) for s in STEPS})

    def _route(self, step: str, delay_s: float) -> Callable[[Request], Reply]:
        def answer(req: Request) -> Reply:
            with self._lock:
                self.hits[f"/{step}"] += 1
                failing = step in self.fail_next
                self.fail_next.discard(step)
            if failing:
                return Reply(500, {"error": "try again"})
            body = req.body or {}
            return Reply(200, {step: f"{step}({body.get('text', '')}{body.get('style', '')})"}, delay_s=delay_s)

        return answer

    @property
    def url(self) -> str:
        return self.server.url


@pytest.fixture
def services() -> Iterator[Services]:
    s = Services()
    with s.server:
        yield s


def flow_file(path: Path, url: str, **node_changes: dict[str, Any]) -> Path:
    """Four http nodes in a chain, each sending the one before's answer on; `node_changes`
    sets fields of a node's spec (its `config` merged)."""
    nodes = []
    previous = "{{ question }}"
    for step in STEPS:
        node: dict[str, Any] = {"id": step, "type": "http", "retry": {"max_attempts": 1},
                                "config": {"endpoint": f"{url}/{step}", "input_mapping": {"text": previous}}}
        for key, value in node_changes.get(step, {}).items():
            node[key] = {**node[key], **value} if key == "config" else value
        nodes.append(node)
        previous = "{{ " + step + ".output." + step + " }}"
    edges = [{"from": a, "to": b} for a, b in zip(STEPS, STEPS[1:])]
    spec = {"name": "support", "inputs": {"question": {"type": "string", "default": "where is my order"}},
            "nodes": nodes, "edges": edges, "outputs": {"reply": "{{ review.output.review }}"}}
    path.write_text(yaml.safe_dump(spec), encoding="utf-8")
    return path


def run(flow: Path, cache: Path, *more: str) -> dict[str, Any]:
    proc = cli("run", str(flow), "--cache", str(cache), *more)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


EXPECTED = {"reply": "review(draft(lookup(intent(where is my order))))"}


def test_a_second_run_in_a_new_process_makes_no_request_and_gives_the_same_outputs(services: Services, tmp_path: Path) -> None:
    flow = flow_file(tmp_path / "support.flow.yaml", services.url)
    cache = tmp_path / "cache"
    assert run(flow, cache) == EXPECTED
    assert services.hits == {f"/{s}": 1 for s in STEPS}
    assert run(flow, cache, "--trace", str(tmp_path / "trace.json")) == EXPECTED
    assert services.hits == {f"/{s}": 1 for s in STEPS}  # nothing was called again
    trace = json.loads((tmp_path / "trace.json").read_text())
    assert all(n["cached"] and len(n["extra"]["cache_key"]) == 64 and n["attempts"] == 0 for n in trace["nodes"])
    info = cli("cache", "--dir", str(cache), "info", "--json")
    assert json.loads(info.stdout)["nodes"] == {s: 1 for s in STEPS}


def test_changing_one_node_runs_it_and_its_downstream_again(services: Services, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    run(flow_file(tmp_path / "a.flow.yaml", services.url), cache)
    changed = flow_file(tmp_path / "b.flow.yaml", services.url, draft={"config": {"input_mapping": {
        "text": "{{ lookup.output.lookup }}", "style": "!"}}})
    assert run(changed, cache) == {"reply": "review(draft(lookup(intent(where is my order))!))"}
    assert services.hits == {"/intent": 1, "/lookup": 1, "/draft": 2, "/review": 2}
    # an unchanged node whose upstream now answers the same as before keeps its result: the
    # flow as it was runs nothing again
    run(flow_file(tmp_path / "c.flow.yaml", services.url), cache)
    assert services.hits == {"/intent": 1, "/lookup": 1, "/draft": 2, "/review": 2}


def test_a_node_with_cache_false_always_runs(services: Services, tmp_path: Path) -> None:
    flow = flow_file(tmp_path / "f.flow.yaml", services.url, review={"cache": False})
    cache = tmp_path / "cache"
    assert run(flow, cache) == run(flow, cache) == EXPECTED
    assert services.hits == {"/intent": 1, "/lookup": 1, "/draft": 1, "/review": 2}
    assert "review" not in json.loads(cli("cache", "--dir", str(cache), "info", "--json").stdout)["nodes"]


def test_a_failed_node_is_not_stored(services: Services, tmp_path: Path) -> None:
    flow = flow_file(tmp_path / "f.flow.yaml", services.url)
    cache = tmp_path / "cache"
    services.fail_next.add("draft")  # 500 once, then 200
    failed = cli("run", str(flow), "--cache", str(cache))
    assert failed.returncode == 1 and "draft" in failed.stderr
    assert run(flow, cache) == EXPECTED
    assert services.hits == {"/intent": 1, "/lookup": 1, "/draft": 2, "/review": 1}
    assert run(flow, cache) == EXPECTED
    assert services.hits == {"/intent": 1, "/lookup": 1, "/draft": 2, "/review": 1}


def test_a_python_node_runs_again_when_its_function_changes(tmp_path: Path) -> None:
    module = tmp_path / "shout.py"
    calls = tmp_path / "calls.txt"
    body = "def shout(text):\n    with open({calls!r}, 'a') as f:\n        f.write('x')\n    return {{'text': text{suffix}}}\n"
    module.write_text(body.format(calls=str(calls), suffix=".upper()"), encoding="utf-8")
    flow = tmp_path / "shout.flow.yaml"
    flow.write_text(yaml.safe_dump({"name": "shout", "inputs": {"text": {"type": "string", "default": "hi"}},
                                    "nodes": [{"id": "shout", "type": "python", "config": {
                                        "function": "shout:shout", "input_mapping": {"text": "{{ text }}"}}}]}))
    env = {"PYTHONPATH": str(tmp_path)}
    cache = tmp_path / "cache"
    outputs = [cli("run", str(flow), "--cache", str(cache), env=env) for _ in range(2)]
    assert [json.loads(p.stdout) for p in outputs] == [{"shout": {"text": "HI"}}] * 2 and calls.read_text() == "x"
    module.write_text(body.format(calls=str(calls), suffix=" + '!'"), encoding="utf-8")
    again = cli("run", str(flow), "--cache", str(cache), env=env)
    assert json.loads(again.stdout) == {"shout": {"text": "hi!"}} and calls.read_text() == "xx"


def test_two_processes_running_one_batch_with_one_cache_folder_both_finish_right(tmp_path: Path) -> None:
    services = Services(delay_s=0.01)
    items = tmp_path / "items.jsonl"
    questions = [f"question {i}" for i in range(40)]
    items.write_text("".join(json.dumps({"id": f"q{i}", "question": q}) + "\n" for i, q in enumerate(questions)))
    cache = tmp_path / "cache"
    exe = Path(sys.executable).with_name("jupyter-flow")
    with services.server:
        flow = flow_file(tmp_path / "f.flow.yaml", services.url)
        procs = [subprocess.Popen([str(exe), "batch", str(flow), "--inputs", str(items), "--out", str(tmp_path / f"out{n}"),
                                   "--cache", str(cache), "-c", "8", "-q"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for n in range(2)]
        for proc in procs:
            _, err = proc.communicate(timeout=180)
            assert proc.returncode == 0, err
        for n in range(2):
            lines = [json.loads(line) for line in (tmp_path / f"out{n}" / "results.jsonl").read_text().splitlines()]
            assert sorted(r["id"] for r in lines) == sorted(f"q{i}" for i in range(40))
            for r in lines:
                q = questions[int(r["id"][1:])]
                assert r["status"] == "ok" and r["result"] == {"reply": f"review(draft(lookup(intent({q}))))"}
        info = json.loads(cli("cache", "--dir", str(cache), "info", "--json").stdout)
        assert info["nodes"] == {s: 40 for s in STEPS}
        # what both stored reads back whole: a third batch calls nothing and answers the same
        hits = dict(services.hits)
        third = cli("batch", str(flow), "--inputs", str(items), "--out", str(tmp_path / "out3"), "--cache", str(cache), "-q")
        assert third.returncode == 0, third.stderr
        assert services.hits == hits
        lines = [json.loads(line) for line in (tmp_path / "out3" / "results.jsonl").read_text().splitlines()]
        assert {r["id"]: r["result"]["reply"] for r in lines} == {
            f"q{i}": f"review(draft(lookup(intent({q}))))" for i, q in enumerate(questions)}


def test_history_lists_the_runs_and_the_diff_names_the_changed_node(services: Services, tmp_path: Path) -> None:
    history = tmp_path / "runs.sqlite"
    first = flow_file(tmp_path / "support.flow.yaml", services.url)
    run(first, tmp_path / "cache", "--history", str(history))
    second = flow_file(tmp_path / "support.flow.yaml", services.url, review={"config": {"input_mapping": {
        "text": "{{ draft.output.draft }}", "style": "?"}}})
    run(second, tmp_path / "cache", "--history", str(history))
    listed = cli("runs", "--history", str(history), "list", "--json")
    runs = json.loads(listed.stdout)
    assert [r["flow"] for r in runs] == ["support", "support"] and [r["cached"] for r in runs] == [3, 0]
    diff = cli("runs", "--history", str(history), "diff", runs[1]["run_id"], runs[0]["run_id"], "--json")
    assert diff.returncode == 0, diff.stderr
    changed = [n["node"] for n in json.loads(diff.stdout)["nodes"] if n["changed"]]
    assert changed == ["review"]
    text = cli("runs", "--history", str(history), "diff", runs[1]["run_id"], runs[0]["run_id"]).stdout
    assert "review" in text


def test_a_cache_in_python_reads_what_the_command_stored(services: Services, tmp_path: Path) -> None:
    flow = flow_file(tmp_path / "support.flow.yaml", services.url)
    run(flow, tmp_path / "cache")
    result = Flow.load(flow).run(cache=tmp_path / "cache")
    assert result.flow_outputs == EXPECTED and all(r.cached for r in result.trace)
    assert services.hits == {f"/{s}": 1 for s in STEPS}
    plain = Flow.load(flow).run()  # no cache unless asked
    assert not any(r.cached for r in plain.trace) and services.hits["/intent"] == 2


def counting_flow(calls: list[str], **node: Any) -> Flow:
    """One python node counting its calls in `calls`, registered on the flow."""

    def echo(text: str) -> dict[str, str]:
        calls.append(text)
        if text == "boom":
            raise ValueError("boom")
        return {"text": text}

    spec = {"name": "echo", "inputs": {"text": {"type": "string"}},
            "nodes": [{"id": "echo", "type": "python", "config": {"function": "echo", "input_mapping": {"text": "{{ text }}"}},
                       **node}]}
    return Flow.from_dict(spec, functions={"echo": echo})


def test_each_variant_keys_on_itself(tmp_path: Path) -> None:
    calls: list[str] = []
    variants = [{"id": "a", "weight": 1, "config": {}}, {"id": "b", "weight": 1, "config": {}}]
    flow = counting_flow(calls, variants=variants, variant_key="{{ text }}")
    seen: dict[str, str] = {}
    for word in ("one", "two", "three", "four", "five", "six"):  # sticky routing: both variants get some
        result = flow.run({"text": word}, cache=tmp_path)
        seen[word] = result.records["echo"].variant or ""
    assert set(seen.values()) == {"a", "b"}
    other = Flow.from_dict({**flow.to_dict(), "nodes": [{**flow.to_dict()["nodes"][0], "variant_key": "{{ text }}!"}]},
                           functions=flow.functions)
    for word, variant in seen.items():
        again = other.run({"text": word}, cache=tmp_path)  # the other key may route to the other variant
        record = again.records["echo"]
        assert record.cached == (record.variant == variant), (word, variant, record.variant)


def test_a_defaulted_node_is_not_stored_and_runs_again(tmp_path: Path) -> None:
    calls: list[str] = []
    flow = counting_flow(calls, on_error="default", default={"text": "?"})
    for _ in range(2):
        result = flow.run({"text": "boom"}, cache=tmp_path)
        assert result.records["echo"].defaulted and not result.records["echo"].cached
    assert calls == ["boom", "boom"]
    flow.run({"text": "fine"}, cache=tmp_path)
    assert flow.run({"text": "fine"}, cache=tmp_path).records["echo"].cached and calls == ["boom", "boom", "fine"]


def test_without_cache_nothing_is_read_or_written(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JUPYTER_FLOW_CACHE", str(tmp_path / "default"))
    calls: list[str] = []
    flow = counting_flow(calls)
    flow.run({"text": "x"})
    flow.run({"text": "x"})
    assert calls == ["x", "x"] and not (tmp_path / "default").exists()
    flow.run({"text": "x"}, cache=True)  # True: the default folder
    assert flow.run({"text": "x"}, cache=True).records["echo"].cached and (tmp_path / "default" / "nodes.sqlite").exists()


def test_evaluate_with_a_cache_runs_each_item_once_for_an_unchanged_node(tmp_path: Path) -> None:
    from jupyter_flow.evaluate import evaluate

    calls: list[str] = []
    data = tmp_path / "items.jsonl"
    data.write_text("".join(json.dumps({"id": str(i), "text": w}) + "\n" for i, w in enumerate(["a", "b", "c"])))
    flow = counting_flow(calls)
    result = evaluate(flow, flow, data=data, out=tmp_path / "eval", cache=tmp_path / "cache", progress=False)
    assert sorted(calls) == ["a", "b", "c"]  # the second version took every answer from the cache
    assert result.summary["flows"]["b"]["ok"] == 3


def test_an_exported_notebook_takes_a_cache_parameter(tmp_path: Path) -> None:
    from jupyter_flow.exported import check_parameters, run_exported

    assert check_parameters()["cache"] is None
    spec = {"name": "t", "inputs": {"who": {"type": "string", "default": "Ada"}},
            "nodes": [{"id": "hi", "type": "template", "config": {"template": "Hi {{ who }}"}}]}
    for out in ("one", "two"):
        run_exported(spec, output_dir=str(tmp_path / out), cache=str(tmp_path / "cache"))
    traces = sorted((tmp_path / "two" / "traces").glob("*.json"))
    assert json.loads(traces[0].read_text())["nodes"][0]["cached"] is True


def test_a_cache_folder_that_cannot_be_made_does_not_fail_the_run(tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a folder")
    calls: list[str] = []
    result = counting_flow(calls).run({"text": "x"}, cache=tmp_path / "a-file" / "cache")
    assert result.ok and result.outputs["echo"] == {"text": "x"} and calls == ["x"]
    assert "cannot open the node cache" in result.records["echo"].extra["cache_error"]


def test_rerun_runs_the_named_node_even_when_the_cache_has_it(tmp_path: Path) -> None:
    calls: list[str] = []
    flow = counting_flow(calls)
    first = flow.run({"text": "x"}, cache=tmp_path)
    again = flow.run({"text": "x"}, cache=tmp_path, reuse=first, rerun="echo")
    assert calls == ["x", "x"] and not again.records["echo"].cached
    assert flow.run({"text": "x"}, cache=tmp_path).records["echo"].cached and calls == ["x", "x"]
