"""Dify import and export under hostile input: a DSL built to exhaust memory, stack or time
is refused quickly with a message naming the file and the bound (nothing walks it), and
export never reads a module outside the flow's folder."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from jupyter_flow import FlowValidationError, export_dify
from jupyter_flow.dify import write_import
from jupyter_flow.dify.source import MAX_DSL_ALIASES, MAX_DSL_BYTES, MAX_DSL_NODES
from jupyter_flow.errors import FlowFileError

HEAD = "app: {mode: workflow, name: Hostile}\nkind: app\nversion: 0.1.5\n"
#: an app cut from the corpus's SEO Slug Generator: a start and a template-transform node
APP = HEAD + """workflow:
  graph:
    edges:
    - {source: '1', sourceHandle: source, target: '2'}
    nodes:
    - {id: '1', data: {type: start, title: 开始, variables: [{variable: text, label: Text, type: paragraph, required: true}]}}
    - id: '2'
      data:
        type: template-transform
        title: Slug
        template: TEMPLATE
        variables: [{variable: t, value_selector: ['1', text]}]
"""


def refused(tmp_path: Path, text: str, *, within_s: float = 20.0) -> str:
    """Import `text`: it must be refused as an unusable file within `within_s` (what it refuses
    would take minutes, or fail with a RecursionError, if walked); the message."""
    app = tmp_path / "app.yml"
    app.write_text(text, encoding="utf-8")
    started = time.perf_counter()
    with pytest.raises(FlowFileError) as info:
        write_import(app, tmp_path / "app.flow.yaml")
    assert time.perf_counter() - started < within_s
    assert info.value.source == str(app)
    assert not (tmp_path / "app.flow.yaml").exists()
    return str(info.value)


def test_an_alias_bomb_is_refused_without_being_expanded(tmp_path: Path) -> None:
    # nine levels of ten aliases, read as a node's template: 10^9 strings once expanded, 1.5 KB on disk
    levels = ["a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    levels += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    text = "bombs:\n" + "".join(f"  {line}\n" for line in levels) + APP.replace("TEMPLATE", "*a9")
    assert len(text.encode()) < 2500
    assert "holds more than 500,000 values once its aliases (*name) are expanded" in refused(tmp_path, text)


def test_more_aliases_than_an_export_has_are_refused(tmp_path: Path) -> None:
    uses = ", ".join(["*word"] * (MAX_DSL_ALIASES + 1))
    text = APP.replace("TEMPLATE", "'{{ t }}'") + f"words: [&word slug, {uses}]\n"
    assert f"more than {MAX_DSL_ALIASES:,} aliases" in refused(tmp_path, text)


def test_deeply_nested_block_yaml_is_refused_not_a_traceback(tmp_path: Path) -> None:
    deep = "".join(f"{' ' * i}k:\n" for i in range(1500)) + f"{' ' * 1500}end\n"
    assert "nested more than 100 levels deep" in refused(tmp_path, APP.replace("TEMPLATE", "'{{ t }}'") + deep)


def test_deeply_nested_flow_yaml_is_refused_quickly(tmp_path: Path) -> None:
    # 200,000 brackets: YAML's scanner alone would take minutes on them, and recursion fails
    deep = "extra: " + "[" * 200_000 + "]" * 200_000 + "\n"
    assert "nested more than 100 levels deep" in refused(tmp_path, APP.replace("TEMPLATE", "'{{ t }}'") + deep)


def test_a_dsl_past_the_byte_bound_is_refused_before_it_is_parsed(tmp_path: Path) -> None:
    text = APP.replace("TEMPLATE", "'{{ t }}'") + "# " + "x" * MAX_DSL_BYTES + "\n"
    message = refused(tmp_path, text)
    assert f"larger than {MAX_DSL_BYTES:,} bytes" in message


def test_the_cli_refuses_a_named_pipe_at_once_instead_of_waiting_for_a_writer(tmp_path: Path) -> None:
    # opening a pipe with no writer blocks for ever: a Dify app is read from regular files only
    pipe = tmp_path / "app.yml"
    os.mkfifo(pipe)
    exe = Path(sys.executable).with_name("jupyter-flow")
    started = time.monotonic()
    done = subprocess.run([str(exe), "import-dify", str(pipe), "-o", str(tmp_path / "app.flow.yaml")],
                          capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 30
    assert done.returncode == 2, done.stderr
    assert "not a regular file" in done.stderr and str(pipe) in done.stderr and "Traceback" not in done.stderr


def test_a_graph_past_the_node_bound_is_refused(tmp_path: Path) -> None:
    nodes = "".join(f"    - {{id: 'n{i}', data: {{type: template-transform, title: T, template: x, variables: []}}}}\n"
                    for i in range(MAX_DSL_NODES - 1))  # and the app's two
    text = APP.replace("TEMPLATE", "'{{ t }}'").replace("    nodes:\n", "    nodes:\n" + nodes)
    assert f"workflow.graph.nodes has {MAX_DSL_NODES + 1:,} entries" in refused(tmp_path, text)


def test_the_cli_names_the_bound_and_exits_2(tmp_path: Path) -> None:
    app = tmp_path / "deep.yml"
    app.write_text(APP.replace("TEMPLATE", "'{{ t }}'") + "extra: " + "[" * 5000 + "]" * 5000 + "\n", encoding="utf-8")
    exe = Path(sys.executable).with_name("jupyter-flow")
    done = subprocess.run([str(exe), "import-dify", str(app), "-o", str(tmp_path / "deep.flow.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "nested more than 100 levels deep" in done.stderr and str(app) in done.stderr
    assert "Traceback" not in done.stderr


# -- export reads nothing outside the flow's folder -----------------------------------------------
FLOW = """spec_version: 1
name: leak
inputs: {text: {type: string}}
nodes:
  - {id: code, type: python, config: {function: "MODULE:main", input_mapping: {text: "{{ inputs.text }}"}}}
edges:
  - {from: start, to: code}
"""
SECRET = "def main(text):\n    return {'key': 'sk-SECRET-do-not-leak'}\n"


@pytest.mark.parametrize("module", ["../outside", "..", "/etc/passwd", "sub.outside"])
def test_export_refuses_modules_outside_the_flows_folder_by_name(tmp_path: Path, module: str) -> None:
    (tmp_path / "outside.py").write_text(SECRET, encoding="utf-8")
    folder = tmp_path / "flows"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "outside.py").write_text(SECRET, encoding="utf-8")
    flow = folder / "leak.flow.yaml"
    flow.write_text(FLOW.replace("MODULE", module), encoding="utf-8")
    with pytest.raises(FlowValidationError) as info:
        export_dify(flow, folder / "leak.yml")
    (problem,) = info.value.problems
    assert problem.node == "code" and problem.field == "config.function"
    assert f"the module {module!r} is not a plain name" in problem.message
    assert not (folder / "leak.yml").exists()


def test_export_refuses_a_module_that_links_outside_the_folder(tmp_path: Path) -> None:
    (tmp_path / "secret.py").write_text(SECRET, encoding="utf-8")
    folder = tmp_path / "flows"
    folder.mkdir()
    os.symlink(tmp_path / "secret.py", folder / "mod.py")
    flow = folder / "leak.flow.yaml"
    flow.write_text(FLOW.replace("MODULE", "mod"), encoding="utf-8")
    with pytest.raises(FlowValidationError) as info:
        export_dify(flow, folder / "leak.yml")
    assert "mod.py leads outside the flow's folder" in str(info.value)
    assert not (folder / "leak.yml").exists()
    # a module in the folder goes over as the code node's code
    (folder / "mod.py").unlink()
    (folder / "mod.py").write_text("def main(text):\n    return {'n': len(text)}\n", encoding="utf-8")
    assert "return {'n': len(text)}" in export_dify(flow, folder / "leak.yml")


def test_a_template_variable_that_is_not_a_name_is_refused_not_written_into_the_template(tmp_path: Path) -> None:
    # Dify's variable names go into `{% set NAME = ... %}`: one that is template code would run
    name = "t = 1 %}{{ 7 * 191 }}{% set u"
    text = APP.replace("TEMPLATE", "'{{ t }}'").replace("variables: [{variable: t,", f"variables: [{{variable: '{name}',")
    app = tmp_path / "app.yml"
    app.write_text(text, encoding="utf-8")
    with pytest.raises(FlowValidationError) as info:
        write_import(app, tmp_path / "app.flow.yaml")
    (problem,) = info.value.problems
    assert problem.node == "2" and f"the template variable {name!r} is not a name a template can use" in problem.message
    result, target = write_import(app, tmp_path / "partial.flow.yaml", partial=True)
    assert [n.type for n in result.spec.nodes] == ["placeholder"] and target.is_file()
