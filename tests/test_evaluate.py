"""`jupyter-flow eval`: two versions of a flow over a dataset, against a real loopback
service that counts what it is asked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import yaml
from servers import LoopbackServer, Reply, Request

from jupyter_flow.evaluate import evaluate


def echo(req: Request) -> Reply:
    text = (req.body or {}).get("text", "")
    return Reply(200, {"label": "long" if len(text) > 12 else "short", "echo": text}, delay_s=float((req.body or {}).get("delay", 0)))


def flow_file(path: Path, url: str, template: str) -> Path:
    path.write_text(yaml.safe_dump({
        "name": "tagger",
        "inputs": {"text": {"type": "string"}, "delay": {"type": "number", "default": 0}},
        "nodes": [
            {"id": "clean", "type": "template", "config": {"template": template}},
            {"id": "tag", "type": "http", "config": {"endpoint": f"{url}/tag",
                                                       "input_mapping": {"text": "{{ clean.output.text }}", "delay": "{{ delay }}"}}},
        ],
        "edges": [{"from": "clean", "to": "tag"}],
        "outputs": {"label": "{{ tag.output.label }}", "text": "{{ clean.output.text }}"},
    }))
    return path


def dataset(path: Path, n: int = 50, delay: float = 0.0) -> Path:
    lines = []
    for i in range(n):
        text = f"item {i} " + ("xx" if i % 7 == 0 else "ok")
        lines.append(json.dumps({"id": f"m{i}", "text": text, "delay": delay, "label": "short"}))
    path.write_text("\n".join(lines) + "\n")
    return path


def test_fifty_items_two_versions_report_exactly_the_rows_that_changed(tmp_path: Path) -> None:
    with LoopbackServer({"/tag": echo}) as server:
        a = flow_file(tmp_path / "a.flow.yaml", server.url, "{{ text }}")
        b = flow_file(tmp_path / "b.flow.yaml", server.url, "{{ text | replace('xx', 'a longer text') }}")
        data = dataset(tmp_path / "items.jsonl")
        result = evaluate(a, b, data=data, out=tmp_path / "out", expect=["label"], progress=False)
        assert len(server.requests) == 100
    changed = {row["id"] for row in result.rows if row["changed"]}
    assert changed == {f"m{i}" for i in range(50) if i % 7 == 0}
    assert result.summary["items"] == 50 and result.summary["changed"] == len(changed)
    assert result.summary["flows"]["a"]["ok"] == 50 and result.summary["flows"]["b"]["failed"] == 0
    assert result.summary["flows"]["a"]["scores"]["expect:label"] == 1.0
    assert result.summary["flows"]["b"]["scores"]["expect:label"] < 1.0  # the changed rows now read "long"
    assert set(result.summary["flows"]["a"]["latency"]) == {"clean", "tag"}
    rows = [json.loads(line) for line in (tmp_path / "out" / "rows.jsonl").read_text().splitlines()]
    assert [r["id"] for r in rows] == [f"m{i}" for i in range(50)]
    assert rows[0]["flows"]["b"]["answer"] == {"label": "long", "text": "item 0 a longer text"}
    report = (tmp_path / "out" / "report.html").read_text()
    assert "50 items, 8 changed" in report and "item 0 a longer text" in report


def test_a_score_function_and_the_cli(tmp_path: Path) -> None:
    (tmp_path / "scoring.py").write_text("def score(item, answer):\n    return {'chars': len(answer['text'])}\n")
    with LoopbackServer({"/tag": echo}) as server:
        a = flow_file(tmp_path / "a.flow.yaml", server.url, "{{ text }}")
        data = dataset(tmp_path / "items.jsonl", n=5)
        env = {**os.environ, "PYTHONPATH": str(tmp_path)}
        proc = subprocess.run([sys.executable, "-m", "jupyter_flow.cli", "eval", str(a), "--data", str(data), "--out",
                               str(tmp_path / "out"), "--score", "scoring:score", "--quiet"], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["flows"]["a"]["scores"]["chars"] == 9.0 and summary["changed"] == 0
    bad = subprocess.run([sys.executable, "-m", "jupyter_flow.cli", "eval", str(a), "--data", str(tmp_path / "nope.jsonl"),
                          "--out", str(tmp_path / "o2")], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "nope.jsonl" in bad.stderr and "Traceback" not in bad.stderr


def test_a_killed_evaluation_resumes_without_rerunning_finished_items(tmp_path: Path) -> None:
    with LoopbackServer({"/tag": echo}) as server:
        a = flow_file(tmp_path / "a.flow.yaml", server.url, "{{ text }}")
        data = dataset(tmp_path / "items.jsonl", n=50, delay=0.1)
        cmd = [sys.executable, "-m", "jupyter_flow.cli", "eval", str(a), "--data", str(data), "--out", str(tmp_path / "out"),
               "--concurrency", "2", "--quiet"]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
        results = tmp_path / "out" / "a" / "results.jsonl"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and (not results.exists() or results.read_text().count("\n") < 10):
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        done_before = {json.loads(line)["id"] for line in results.read_text().splitlines() if line.strip()}
        assert 10 <= len(done_before) < 50
        again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
        assert again.returncode == 0, again.stderr
        asked = Counter(r.body["text"].split()[1] for r in server.requests)
    assert all(asked[item.removeprefix("m")] == 1 for item in done_before)  # finished items were not run again
    rows = (tmp_path / "out" / "rows.jsonl").read_text().splitlines()
    assert len(rows) == 50 and all(json.loads(r)["flows"]["a"]["status"] == "ok" for r in rows)
