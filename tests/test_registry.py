"""Node kinds: the built-in ones, ones added at run time, and ones another package
installs through the `jupyter_flow.nodes` entry-point group."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest

from jupyter_flow import Flow, Node, NodeConfig, NodeContext, NodeRegistry, default_registry

BUILTIN = {"http", "inference", "python", "template", "switch", "vote", "torch", "transformers", "pdf", "rules", "report", "llm", "coalesce", "placeholder", "tool", "agent", "map"}

FAKE_NODE = '''
from __future__ import annotations

from typing import Any

from jupyter_flow import Node, NodeConfig, NodeContext


class ShoutConfig(NodeConfig):
    text: Any
    times: int = 1


class ShoutNode(Node):
    kind = "shout"
    Config = ShoutConfig

    async def run(self, inputs: dict[str, Any], ctx: NodeContext) -> dict[str, Any]:
        return {"text": " ".join([str(inputs["text"]).upper()] * inputs["times"])}
'''


def _install_fake_package(root: Path) -> None:
    """A package installed the way pip leaves one: module plus dist-info with entry points."""
    (root / "fakepkg").mkdir()
    (root / "fakepkg" / "__init__.py").write_text("")
    (root / "fakepkg" / "nodes.py").write_text(FAKE_NODE)
    dist = root / "fakepkg-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: fakepkg\nVersion: 0.1\n")
    (dist / "entry_points.txt").write_text("[jupyter_flow.nodes]\nshout = fakepkg.nodes:ShoutNode\nbroken = fakepkg.missing:Nope\n"
                                         "notnode = fakepkg.nodes:ShoutConfig\ngone = fakepkg.nodes:Gone\n")
    (dist / "RECORD").write_text("")


def _cli(*args: str, cwd: Path, env_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(env_path), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
    exe = Path(sys.executable).with_name("jupyter-flow")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60, cwd=cwd, env=env)


def test_entry_point_node_kind_runs_from_the_cli(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _install_fake_package(site)
    flow = tmp_path / "shout.flow.yaml"
    flow.write_text(textwrap.dedent("""\
        spec_version: 1
        inputs: {text: {type: string}}
        nodes:
          - id: loud
            type: shout
            config: {text: "{{ text }}", times: 2}
        """))
    proc = _cli("run", str(flow), "--input", "text=hello", cwd=tmp_path, env_path=site)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"loud": {"text": "HELLO HELLO"}}

    # the installed kind's config schema is checked like a built-in one
    flow.write_text(flow.read_text().replace("times: 2", "times: 2, volume: 11"))
    proc = _cli("validate", str(flow), cwd=tmp_path, env_path=site)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "node 'loud'" in proc.stderr and "config.volume" in proc.stderr and "shout" in proc.stderr


def test_entry_point_kinds_are_listed_and_broken_ones_reported(tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _install_fake_package(site)
    flow = tmp_path / "bad.flow.json"
    nodes = [{"id": nid, "type": kind, "config": {}} for nid, kind in [("a", "whisper"), ("b", "broken"), ("c", "notnode"), ("d", "gone")]]
    flow.write_text(json.dumps({"nodes": nodes}))
    proc = _cli("validate", str(flow), cwd=tmp_path, env_path=site)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "unknown node type 'whisper'" in proc.stderr
    known = proc.stderr.split("known: ", 1)[1]
    assert "shout" in known and "broken" in known and "http" in known
    assert "node 'b'" in proc.stderr and "fakepkg.missing" in proc.stderr
    assert "node 'c'" in proc.stderr and "not a jupyter_flow Node" in proc.stderr
    assert "node 'd'" in proc.stderr and "Gone" in proc.stderr


def test_without_the_package_the_kind_is_unknown(tmp_path: Path) -> None:
    flow = tmp_path / "shout.flow.json"
    flow.write_text(json.dumps({"nodes": [{"id": "loud", "type": "shout", "config": {"text": "x"}}]}))
    proc = _cli("validate", str(flow), cwd=tmp_path, env_path=tmp_path)
    assert proc.returncode == 2 and "unknown node type 'shout'" in proc.stderr


def test_builtin_kinds() -> None:
    registry = NodeRegistry(entry_points_group=None)
    assert set(registry.kinds()) == BUILTIN
    assert registry.get("http").kind == "http"
    assert "http" in registry and "nope" not in registry
    with pytest.raises(KeyError, match="known: .*http"):
        registry.get("nope")
    assert default_registry() is default_registry()
    assert BUILTIN <= set(default_registry().kinds())


class Reverse(Node):
    kind = "reverse"

    class Config(NodeConfig):
        text: Any

    async def run(self, inputs: dict[str, Any], ctx: NodeContext) -> Any:
        return {"text": str(inputs["text"])[::-1]}


def test_kind_registered_at_run_time() -> None:
    registry = NodeRegistry()
    registry.register(Reverse)
    assert "reverse" in registry.kinds()
    flow = Flow.from_dict(
        {"nodes": [{"id": "r", "type": "reverse", "config": {"text": "{{ word }}"}}]}, registry=registry
    )
    assert flow.run({"word": "flow"}).outputs == {"r": {"text": "wolf"}}
    # the process-wide registry is not touched
    assert "reverse" not in default_registry().kinds()
    with pytest.raises(ValueError, match="has no `kind`"):
        registry.register(type("Nameless", (Node,), {}))
