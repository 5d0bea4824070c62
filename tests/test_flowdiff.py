"""`jupyter-flow diff`: two versions of a flow compared node by node, field by field."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from jupyter_flow.flowdiff import diff_flows, load_flow_version
from jupyter_flow.spec import spec_from_dict

BASE = {
    "name": "support",
    "inputs": {"text": {"type": "string"}},
    "nodes": [
        {"id": "clean", "type": "template", "config": {"template": "{{ text | trim }}"}},
        {"id": "intent", "type": "http", "config": {"endpoint": "http://127.0.0.1:9001/predict", "input_mapping": {"text": "{{ clean.output.text }}"}}},
        {"id": "reply", "type": "template", "config": {"template": "{{ intent.output.label }}"}},
    ],
    "edges": [{"from": "clean", "to": "intent"}, {"from": "intent", "to": "reply"}],
}


def changed() -> dict:
    flow = json.loads(json.dumps(BASE))
    flow["nodes"][0]["config"]["template"] = "{{ text | trim | lower }}"      # one template
    flow["nodes"][1]["config"]["endpoint"] = "http://127.0.0.1:9002/predict"  # one endpoint
    flow["edges"][1] = {"from": "intent", "to": "reply", "when": "{{ intent.output.score > 0.5 }}"}  # one edge
    flow["layout"] = {"clean": {"x": 10, "y": 20}}  # moving a node is not a change
    return flow


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jupyter_flow.cli", "diff", *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def test_one_template_one_endpoint_one_edge_are_named_field_by_field() -> None:
    result = diff_flows(spec_from_dict(BASE), spec_from_dict(changed()))
    assert not result.same
    assert {c.node: [f.path for f in c.fields] for c in result.nodes_changed} == {
        "clean": ["config.template"], "intent": ["config.endpoint"]}
    endpoint = result.nodes_changed[1].fields[0]
    assert (endpoint.before, endpoint.after) == ("http://127.0.0.1:9001/predict", "http://127.0.0.1:9002/predict")
    assert result.edges_removed == [{"from": "intent", "to": "reply"}]
    assert result.edges_added == [{"from": "intent", "to": "reply", "when": "{{ intent.output.score > 0.5 }}"}]
    assert result.nodes_added == result.nodes_removed == [] and result.changed_nodes() == {"clean", "intent"}


def test_nodes_added_and_removed_and_inputs_changed() -> None:
    after = json.loads(json.dumps(BASE))
    after["nodes"][2] = {"id": "answer", "type": "template", "config": {"template": "{{ intent.output.label }}!"}}
    after["edges"][1] = {"from": "intent", "to": "answer"}
    after["inputs"]["text"]["default"] = "hi"
    result = diff_flows(spec_from_dict(BASE), spec_from_dict(after))
    assert result.nodes_added == ["answer"] and result.nodes_removed == ["reply"]
    assert [c.path for c in result.inputs] == ["text.default"]


def test_cli_exit_codes_follow_diff(tmp_path: Path) -> None:
    a, b = tmp_path / "a.flow.yaml", tmp_path / "b.flow.json"
    a.write_text(yaml.safe_dump(BASE))
    b.write_text(json.dumps(changed()))
    same = cli(str(a), str(a))
    assert same.returncode == 0 and "the same flow" in same.stdout
    differ = cli(str(a), str(b), "--json")
    assert differ.returncode == 1, differ.stderr
    body = json.loads(differ.stdout)
    assert body["nodes"]["changed"]["intent"] == [{"field": "config.endpoint", "before": "http://127.0.0.1:9001/predict",
                                                   "after": "http://127.0.0.1:9002/predict"}]
    text = cli(str(a), str(b)).stdout
    assert "~ node clean" in text and "config.template" in text and "+ edge intent -> reply (when:" in text
    missing = cli(str(a), str(tmp_path / "nope.flow.yaml"))
    assert missing.returncode == 2 and "nope.flow.yaml" in missing.stderr and "Traceback" not in missing.stderr


def test_a_flow_at_a_git_revision(tmp_path: Path) -> None:
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.org"]
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    flow = tmp_path / "flows" / "support.flow.yaml"
    flow.parent.mkdir()
    flow.write_text(yaml.safe_dump(BASE))
    subprocess.run([*git, "add", "."], cwd=tmp_path, check=True)
    subprocess.run([*git, "commit", "-qm", "first"], cwd=tmp_path, check=True)
    flow.write_text(yaml.safe_dump(changed()))
    assert load_flow_version(f"{flow}@HEAD").nodes[1].config["endpoint"].endswith(":9001/predict")
    proc = cli("flows/support.flow.yaml@HEAD", "flows/support.flow.yaml", cwd=tmp_path)
    assert proc.returncode == 1 and "config.endpoint" in proc.stdout
    bad = cli("flows/support.flow.yaml@no-such-rev", "flows/support.flow.yaml", cwd=tmp_path)
    assert bad.returncode == 2 and "no-such-rev" in bad.stderr


def test_opening_a_version_runs_nothing(tmp_path: Path) -> None:
    (tmp_path / "evil.py").write_text(f"open({str(tmp_path / 'ran')!r}, 'w').write('x')\n")
    flow = {"nodes": [{"id": "p", "type": "python", "config": {"function": "evil:go"}}]}
    (tmp_path / "a.flow.json").write_text(json.dumps(flow))
    assert cli(str(tmp_path / "a.flow.json"), str(tmp_path / "a.flow.json")).returncode == 0
    assert not (tmp_path / "ran").exists()


@pytest.mark.parametrize("name", ["odd@name.flow.yaml"])
def test_a_file_whose_name_has_an_at_sign_is_a_file(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(BASE))
    assert load_flow_version(str(path)).name == "support"
