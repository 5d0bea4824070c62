"""Flow files a careless or hostile author writes, through `jupyter-flow validate|run` as a
user types them: each is a clear error (exit 2, node and field named, no traceback) or
works as documented, in well under a second of parsing."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jupyter_flow import Flow, FlowValidationError
from jupyter_flow.spec import MAX_DEPTH


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("jupyter-flow")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=cwd, timeout=120)


def refused(path: Path, *words: str) -> str:
    proc = cli("validate", path.name, cwd=path.parent)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    for word in words:
        assert word in proc.stderr, (word, proc.stderr)
    return proc.stderr


def test_a_key_given_twice_is_an_error_in_yaml_and_json(tmp_path: Path) -> None:
    yml = tmp_path / "twice.flow.yaml"
    yml.write_text("name: x\nnodes: []\nnodes:\n  - {id: a, type: template, config: {template: hi}}\n")
    refused(yml, "line 3", "'nodes' is given twice")
    js = tmp_path / "twice.flow.json"
    js.write_text('{"nodes": [], "nodes": [{"id": "a", "type": "template", "config": {"template": "hi"}}]}')
    refused(js, "'nodes' is given twice")
    # YAML merge keys are not duplicates: explicit keys override what was merged
    merged = tmp_path / "merge.flow.yaml"
    merged.write_text("base: &base {template: hi}\nnodes:\n  - {id: a, type: template, config: {<<: *base, template: yo}}\n")
    assert "'base'" in refused(merged)  # the anchor's holder is an unknown field, nothing else
    assert "given twice" not in refused(merged)


def test_a_json_flow_with_a_bom_loads_like_a_yaml_one(tmp_path: Path) -> None:
    body = '{"nodes": [{"id": "a", "type": "template", "config": {"template": "hi"}}]}'
    for name in ("bom.flow.json", "bom.flow.yaml"):
        (tmp_path / name).write_bytes(b"\xef\xbb\xbf" + body.encode())
        proc = cli("validate", name, cwd=tmp_path)
        assert proc.returncode == 0 and "ok (1 nodes" in proc.stdout, proc.stderr


def test_an_id_with_a_newline_and_duplicates_and_self_edges_are_all_reported(tmp_path: Path) -> None:
    path = tmp_path / "ids.flow.json"
    path.write_text(json.dumps({
        "nodes": [{"id": "a\n", "type": "template", "config": {"template": "hi"}},
                  {"id": "b", "type": "template", "config": {"template": "hi"}},
                  {"id": "b", "type": "template", "config": {"template": "hi"}}],
        "edges": [{"from": "b", "to": "b"}],
    }))
    err = refused(path, "3 problems", "node 'a\\n', field 'id'", "duplicate node id", "edges[0]", "from a node to itself")
    assert "'a\n'" not in err  # the id is shown escaped, on one line


def test_reading_a_template_function_like_a_value_is_a_validation_error(tmp_path: Path) -> None:
    path = tmp_path / "range.flow.yaml"
    path.write_text("nodes:\n  - {id: a, type: template, config: {template: '{{ range.x }}'}}\n")
    refused(path, "node 'a'", "config.template", "'range' is a template function")
    ok = tmp_path / "ok.flow.yaml"
    ok.write_text("nodes:\n  - {id: a, type: template, config: {template: '{% for i in range(3) %}{{ i }}{% endfor %}'}}\n")
    proc = cli("run", ok.name, cwd=tmp_path)
    assert proc.returncode == 0 and json.loads(proc.stdout)["a"]["text"] == "012", proc.stderr


def test_a_required_input_given_as_null_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "greet.flow.yaml"
    path.write_text("inputs: {name: {type: text}}\nnodes:\n  - {id: a, type: template, config: {template: 'hi {{ name }}'}}\n")
    (tmp_path / "inputs.json").write_text('{"name": null}')
    proc = cli("run", path.name, "--inputs", "inputs.json", cwd=tmp_path)
    assert proc.returncode == 2 and "inputs.name" in proc.stderr and "null" in proc.stderr, proc.stderr


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_100000_deep_nesting_is_an_error_not_a_recursion_traceback(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"deep.flow{suffix}"
    path.write_text('{"nodes": ' + "[" * 100_000 + "]" * 100_000 + "}")
    refused(path, f"nested more than {MAX_DEPTH} levels deep")
    # a node's `default` nested past the bound but short of Python's stack: the same error
    mid = tmp_path / f"mid.flow{suffix}"
    mid.write_text('{"nodes": [{"id": "a", "type": "template", "config": {"template": "x"}, "default": '
                   + "[" * 500 + "]" * 500 + "}]}")
    refused(mid, "nested more than")


BOMB = """\
name: bomb
nodes:
  - id: a
    type: template
    config: {template: hi}
    default:
      a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
      b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
      c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
      d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
      e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
      f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
      g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
      h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
      i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
"""


def test_a_yaml_alias_bomb_is_refused_quickly(tmp_path: Path) -> None:
    path = tmp_path / "bomb.flow.yaml"
    path.write_text(BOMB)
    t0 = time.perf_counter()
    with pytest.raises(FlowValidationError, match="once its aliases"):
        Flow.load(path).validate()
    print(f"alias bomb refused in {time.perf_counter() - t0:.3f} s")  # the bound is in the benchmarks' spirit
    refused(path, "aliases (*name) are expanded")
    # sharing one anchor between nodes is fine
    shared = tmp_path / "shared.flow.yaml"
    shared.write_text("nodes:\n  - {id: a, type: template, config: &c {template: hi}}\n  - {id: b, type: template, config: *c}\n")
    proc = cli("validate", shared.name, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr


def test_a_self_referring_alias_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.flow.yaml"
    path.write_text("nodes:\n  - id: a\n    type: template\n    config: {template: hi}\n    default: &x [1, *x]\n")
    refused(path, "refers to a value that contains it")
