"""The `python` node: importable `module:function`, functions registered from a notebook,
sync and async, and what a user sees when their function raises."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_flow import Flow, FlowRunError, register_function
from jupyter_flow.nodes.python import default_functions

MODULE = '''
import asyncio
import threading


def word_count(text, min_len=1):
    words = [w for w in text.split() if len(w) >= min_len]
    return {"count": len(words), "words": words}


def shout(text):
    return text.upper()


async def slow_double(x):
    await asyncio.sleep(0.01)
    return {"double": x * 2, "thread": threading.current_thread().name}


def explode(text):
    raise ValueError(f"cannot parse {text!r}")


class Tools:
    @staticmethod
    def strip(text):
        return text.strip()
'''


@pytest.fixture
def user_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    name = f"jf_user_{os.getpid()}_{tmp_path.name}".replace("-", "_")
    (tmp_path / f"{name}.py").write_text(MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    yield name
    sys.modules.pop(name, None)


def node(node_id: str, function: str, **mapping: Any) -> dict[str, Any]:
    return {"id": node_id, "type": "python", "config": {"function": function, "input_mapping": mapping}}


def test_importable_function(user_module: str) -> None:
    flow = Flow.from_dict({
        "inputs": {"text": {"type": "string"}},
        "nodes": [
            node("count", f"{user_module}:word_count", text="{{ text }}", min_len=3),
            node("loud", f"{user_module}:shout", text="{{ count.output.words[0] }}"),
            node("strip", f"{user_module}:Tools.strip", text="  x  "),
        ],
        "edges": [{"from": "count", "to": "loud"}],
    })
    result = flow.run({"text": "a quick brown fox"})
    assert result.outputs["count"] == {"count": 3, "words": ["quick", "brown", "fox"]}
    assert result.outputs["loud"] == {"result": "QUICK"}  # a non-dict return is wrapped
    assert result.outputs["strip"] == {"result": "x"}


def test_async_function_runs_on_the_loop(user_module: str) -> None:
    flow = Flow.from_dict({"nodes": [node("d", f"{user_module}:slow_double", x=21)]})

    async def main() -> Any:
        return await flow.arun(), threading.current_thread().name

    result, loop_thread = asyncio.run(main())
    assert result.outputs["d"] == {"double": 42, "thread": loop_thread}


def test_registered_functions_sync_and_async() -> None:
    async def fetch_async(n: int) -> list[int]:
        await asyncio.sleep(0)
        return list(range(n))

    def total(xs: list[int]) -> dict[str, Any]:
        return {"total": sum(xs), "thread": threading.current_thread().name}

    try:
        register_function(fetch_async, name="py_test_fetch")
        flow = Flow.from_dict({
            "nodes": [node("fetch", "py_test_fetch", n=5), node("sum", "total", xs="{{ fetch.output.result }}")],
            "edges": [{"from": "fetch", "to": "sum"}],
        })
        flow.register("total", total)
        result = flow.run()
        assert result.outputs["fetch"] == {"result": [0, 1, 2, 3, 4]}
        assert result.outputs["sum"]["total"] == 10
        assert result.outputs["sum"]["thread"] != threading.main_thread().name  # sync work left the loop
    finally:
        default_functions().pop("py_test_fetch", None)


def test_register_function_as_a_decorator() -> None:
    try:

        @register_function(name="py_test_greet")
        def greet(who: str) -> str:
            return f"hello {who}"

        @register_function
        def py_test_plain(x: int) -> int:
            return x + 1

        flow = Flow.from_dict({"nodes": [node("g", "py_test_greet", who="{{ who }}"), node("p", "py_test_plain", x=1)]})
        assert flow.run({"who": "Ada"}).outputs == {"g": {"result": "hello Ada"}, "p": {"result": 2}}
        with pytest.raises(TypeError, match="not callable"):
            default_functions()["py_test_bad"] = 42  # type: ignore[assignment]
    finally:
        for name in ("py_test_greet", "py_test_plain"):
            default_functions().pop(name, None)


def test_function_that_raises_names_the_node(user_module: str) -> None:
    flow = Flow.from_dict({"nodes": [node("parse", f"{user_module}:explode", text="{{ doc }}")]})
    with pytest.raises(FlowRunError) as info:
        flow.run({"doc": "garbage"})
    assert "node 'parse'" in str(info.value) and "ValueError" in str(info.value) and "garbage" in str(info.value)
    record = info.value.result["parse"]  # type: ignore[index]
    assert record.status == "error" and "explode" in record.error.traceback  # the user's frame is in the trace


def test_function_that_raises_from_the_cli(tmp_path: Path, user_module: str) -> None:
    flow = tmp_path / "f.flow.yaml"
    flow.write_text(textwrap.dedent(f"""\
        nodes:
          - id: parse
            type: python
            config: {{function: "{user_module}:explode", input_mapping: {{text: "{{{{ doc }}}}"}}}}
        """))
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    exe = Path(sys.executable).with_name("jupyter-flow")
    proc = subprocess.run([str(exe), "run", str(flow), "-i", "doc=%%%"], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and proc.stdout == ""
    assert "node 'parse'" in proc.stderr and "ValueError" in proc.stderr and "cannot parse '%%%'" in proc.stderr
    # and the same module works from the CLI when the function is fine
    flow.write_text(flow.read_text().replace(":explode", ":word_count"))
    proc = subprocess.run([str(exe), "run", str(flow), "-i", "doc=a b"], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"parse": {"count": 2, "words": ["a", "b"]}}


def test_unimportable_function_is_a_validation_problem(user_module: str) -> None:
    for target, words in [("no_such_module_xyz:f", ["no module named 'no_such_module_xyz'"]),
                          (f"{user_module}:missing", [f"module '{user_module}'", f"{user_module}.py", "defines no 'missing'"])]:
        (problem,) = Flow.from_dict({"nodes": [node("p", target)]}).problems()
        assert (problem.node, problem.field) == ("p", "config.function")
        assert all(word in problem.message for word in words), problem.message
    assert user_module not in sys.modules  # found by reading its source, not by importing it


def test_unregistered_name_fails_with_a_hint() -> None:
    flow = Flow.from_dict({"nodes": [node("p", "never_registered_fn")]})
    result = flow.run(raise_on_error=False)
    message = result["p"].error.message  # type: ignore[union-attr]
    assert "never_registered_fn" in message and "register_function" in message
    assert result["p"].attempts == 1


def test_blocking_false_runs_on_the_loop_thread() -> None:
    def where() -> str:
        return threading.current_thread().name

    flow = Flow.from_dict({"nodes": [{"id": "w", "type": "python", "config": {"function": "where", "blocking": False}}]},
                          functions={"where": where})

    async def main() -> tuple[Any, str]:
        return (await flow.arun()).outputs["w"], threading.current_thread().name

    out, loop_thread = asyncio.run(main())
    assert out == {"result": loop_thread}
