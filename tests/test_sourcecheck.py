"""Opening or validating a flow runs none of its code; only running it does.

A flow folder from someone else holds `evil.py`, which leaves a marker file when it is
imported. `jupyter-flow validate`, `Flow.load(...).validate()` and the JupyterLab server
extension's validate route (what the file view asks as a flow opens) must not import it;
`jupyter-flow run` does. The same for a package's `__init__.py` on the way to a module,
and for a `torch` node's `factory`. Problems stay as useful as when validation imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import httpx
import pytest
from lab_server import JupyterLab

from jupyter_flow import Flow, FlowValidationError
from jupyter_flow.sourcecheck import check_callable

EVIL = '''\
import os
from pathlib import Path

Path(os.environ["JF_MARKER_DIR"], "{name}.ran").write_text("imported")


def shout(text):
    return {{"loud": text.upper()}}


class Tools:
    def strip(self, text):
        return text.strip()


LIMIT = 3
'''

FLOW = """\
name: evil
inputs: {text: {type: string, default: hi}}
nodes:
  - id: loud
    type: python
    config: {function: "FUNCTION", input_mapping: {text: "{{ text }}"}}
"""


def cli(*args: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("jupyter-flow")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120, cwd=cwd, env=env)


@pytest.fixture
def markers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    folder = tmp_path / "markers"
    folder.mkdir()
    monkeypatch.setenv("JF_MARKER_DIR", str(folder))
    return folder


def flow_folder(root: Path, function: str) -> Path:
    """A flow folder as someone else's checkout brings it: the flow, `evil.py` beside it, and
    a package whose `__init__.py` and module both leave markers."""
    folder = root / "checkout"
    folder.mkdir(exist_ok=True)
    (folder / "evil.py").write_text(EVIL.format(name="evil"))
    (folder / "evilpkg").mkdir(exist_ok=True)
    (folder / "evilpkg" / "__init__.py").write_text(EVIL.format(name="evilpkg"))
    (folder / "evilpkg" / "tools.py").write_text(EVIL.format(name="evilpkg.tools"))
    (folder / "evil.flow.yaml").write_text(FLOW.replace("FUNCTION", function))
    return folder


def test_validate_imports_nothing_and_run_does(tmp_path: Path, markers: Path) -> None:
    folder = flow_folder(tmp_path, "evil:shout")
    env = {**os.environ}
    done = cli("validate", "evil.flow.yaml", cwd=folder, env=env)
    assert done.returncode == 0, done.stderr
    assert list(markers.iterdir()) == []

    Flow.load(folder / "evil.flow.yaml").validate()
    assert list(markers.iterdir()) == []

    ran = cli("run", "evil.flow.yaml", "-i", "text=boo", cwd=folder, env=env)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout) == {"loud": {"loud": "BOO"}}
    assert [p.name for p in markers.iterdir()] == ["evil.ran"]


def test_a_package_on_the_path_is_found_without_running_its_init(tmp_path: Path, markers: Path) -> None:
    folder = flow_folder(tmp_path, "evilpkg.tools:shout")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))}
    done = cli("validate", "evil.flow.yaml", cwd=folder, env=env)
    assert done.returncode == 0, done.stderr
    assert list(markers.iterdir()) == []
    ran = cli("run", "evil.flow.yaml", cwd=folder, env=env)
    assert ran.returncode == 0, ran.stderr
    assert sorted(p.name for p in markers.iterdir()) == ["evilpkg.ran", "evilpkg.tools.ran"]


@pytest.mark.parametrize(("function", "words"), [
    ("evil:missing", ["module 'evil'", "evil.py", "defines no 'missing'"]),
    ("evil:Tools.nope", ["class 'Tools'", "defines no 'nope'"]),
    ("evil:LIMIT", ["'LIMIT'", "is a value, not a function"]),
    ("nowhere_module_xyz:f", ["no module named 'nowhere_module_xyz'", "no nowhere_module_xyz.py beside the flow file"]),
    ("evilpkg.nope:f", ["no module named 'evilpkg.nope'"]),
    ("evil.sub:f", ["'evil' is not a package"]),
])
def test_what_cannot_be_called_is_named_by_node_and_field(tmp_path: Path, markers: Path, function: str,
                                                         words: list[str]) -> None:
    folder = flow_folder(tmp_path, function)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))}
    done = cli("validate", "evil.flow.yaml", cwd=folder, env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr, done.stderr
    assert "node 'loud', field 'config.function'" in done.stderr
    for word in words:
        assert word in done.stderr, (word, done.stderr)
    assert list(markers.iterdir()) == []


def test_a_module_that_does_not_parse_is_a_problem_not_a_crash(tmp_path: Path, markers: Path) -> None:
    folder = flow_folder(tmp_path, "evil:shout")
    (folder / "evil.py").write_text("def shout(text):\n    return {\n")
    with pytest.raises(FlowValidationError) as info:
        Flow.load(folder / "evil.flow.yaml").validate()
    (problem,) = info.value.problems
    assert (problem.node, problem.field) == ("loud", "config.function")
    assert "does not parse: line" in problem.message


def test_names_bound_in_blocks_imports_and_dynamic_modules_count_as_defined(tmp_path: Path) -> None:
    (tmp_path / "shapes.py").write_text(textwrap.dedent("""\
        import json as codec
        from os.path import join
        try:
            from fast_impl import speedy
        except ImportError:
            def speedy(x):
                return x
        if True:
            helper = lambda x: x
        """))
    (tmp_path / "lazy.py").write_text("def __getattr__(name):\n    return print\n")
    (tmp_path / "starry.py").write_text("from os.path import *\n")
    for target in ("shapes:codec", "shapes:join", "shapes:speedy", "shapes:helper", "lazy:anything", "starry:whatever"):
        assert check_callable(target, base_dir=tmp_path) is None, target
    assert check_callable("json:dumps") is None  # installed and already imported
    assert check_callable("json:nope") == "module 'json' has no 'nope'"
    assert check_callable("math:sqrt") is None  # compiled: found by existence


def test_the_file_view_validates_without_running_the_flows_code(tmp_path: Path, markers: Path) -> None:
    folder = flow_folder(tmp_path, "evil:shout")
    (folder / "broken.flow.yaml").write_text(FLOW.replace("FUNCTION", "evil:missing"))
    with JupyterLab(folder, env={"JF_MARKER_DIR": str(markers)}) as lab, httpx.Client(
        base_url=f"{lab.url}/jupyter-flow/api/", headers={"Authorization": f"token {lab.token}"}, timeout=60
    ) as api:
        good = api.post("validate", json={"path": "evil.flow.yaml"})
        assert good.status_code == 200 and good.json()["valid"] is True, good.text
        bad = api.post("validate", json={"path": "broken.flow.yaml"})
        (problem,) = bad.json()["problems"]
        assert (problem["node"], problem["field"]) == ("loud", "config.function")
        assert "defines no 'missing'" in problem["message"]
        assert list(markers.iterdir()) == [], lab.log()


TORCH_FLOW = """\
name: evil-model
nodes:
  - id: model
    type: torch
    config: {factory: "FACTORY", inputs: [1.0, 2.0], device: cpu}
"""

EVIL_MODEL = '''\
import os
from pathlib import Path

import torch

Path(os.environ["JF_MARKER_DIR"], "evil_model.ran").write_text("imported")


def build():
    layer = torch.nn.Linear(2, 1)
    torch.nn.init.constant_(layer.weight, 1.0)
    torch.nn.init.zeros_(layer.bias)
    return layer
'''


def test_a_torch_factory_is_found_without_importing_it(tmp_path: Path, markers: Path) -> None:
    pytest.importorskip("torch")
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "evil_model.py").write_text(EVIL_MODEL)
    (folder / "m.flow.yaml").write_text(TORCH_FLOW.replace("FACTORY", "evil_model:build"))
    (folder / "gone.flow.yaml").write_text(TORCH_FLOW.replace("FACTORY", "evil_model:gone"))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(folder), os.environ.get("PYTHONPATH")]))}
    done = cli("validate", "m.flow.yaml", cwd=folder, env=env)
    assert done.returncode == 0, done.stderr
    gone = cli("validate", "gone.flow.yaml", cwd=folder, env=env)
    assert gone.returncode == 2 and "node 'model', field 'config.factory'" in gone.stderr, gone.stderr
    assert "defines no 'gone'" in gone.stderr
    assert list(markers.iterdir()) == []

    ran = cli("run", "m.flow.yaml", cwd=folder, env=env)
    assert ran.returncode == 0, ran.stderr
    assert json.loads(ran.stdout)["model"]["output"] == [3.0]
    assert [p.name for p in markers.iterdir()] == ["evil_model.ran"]
