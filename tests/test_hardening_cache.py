"""The node cache never answers for a python function that changed, and answers for one
that did not, in every process: the function's token reads the names its code calls (so
`len` -> `abs` is a change) and its nested code by what it does (a comprehension's code
object used to enter the token by its address, so a new process never found its results)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

FLOW = """\
name: words
inputs:
  text: {type: text}
nodes:
  - id: words
    type: python
    config: {function: "steps:words", input_mapping: {text: "{{ text }}"}}
"""

STEPS = """\
from pathlib import Path


def words(text, sep=" "):
    with open(Path(__file__).with_name("calls.log"), "a") as log:
        log.write("called\\n")
    return {"words": [w.%s() for w in text.split(sep)]}
"""


def run(tmp: Path) -> dict:
    exe = Path(sys.executable).with_name("jupyter-flow")
    done = subprocess.run([str(exe), "run", "words.flow.yaml", "--input", "text=Hello World", "--cache", "cache",
                           "--trace", "trace.json"], capture_output=True, text=True, timeout=120, cwd=tmp)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def calls(tmp: Path) -> int:
    log = tmp / "calls.log"
    return log.read_text().count("called") if log.exists() else 0


def test_an_edited_function_is_run_again_and_an_unchanged_one_comes_from_the_cache(tmp_path: Path) -> None:
    (tmp_path / "words.flow.yaml").write_text(FLOW, encoding="utf-8")
    (tmp_path / "steps.py").write_text(STEPS % "upper", encoding="utf-8")
    assert run(tmp_path)["words"] == {"words": ["HELLO", "WORLD"]}
    assert calls(tmp_path) == 1
    # a new process, the same code (a comprehension in it): the cache answers
    assert run(tmp_path)["words"] == {"words": ["HELLO", "WORLD"]}
    assert calls(tmp_path) == 1
    (tmp_path / "steps.py").write_text(STEPS % "lower", encoding="utf-8")  # only a name the code calls changes
    assert run(tmp_path)["words"] == {"words": ["hello", "world"]}
    assert calls(tmp_path) == 2
    (tmp_path / "steps.py").write_text((STEPS % "lower").replace('sep=" "', 'sep="o"'), encoding="utf-8")
    assert run(tmp_path)["words"] == {"words": ["hell", " w", "rld"]}  # a default changed
    assert calls(tmp_path) == 3


def test_in_one_process_a_default_changed_in_place_or_replaced_changes_the_token() -> None:
    """The token is kept per function between runs; what may change under the same function
    object (a mutable default edited in place, `__defaults__` or `__code__` replaced) is seen."""
    from jupyter_flow import Flow, register_function

    calls: list[str] = []

    def tag(text: str, opts: dict = {"mark": "!"}) -> dict:  # noqa: B006 - the point of the test
        calls.append(text)
        return {"text": text + opts["mark"]}

    def scalar(text: str, mark: str = "?") -> dict:
        calls.append(text)
        return {"text": text + mark}

    register_function(tag, name="tag_in_place")
    register_function(scalar, name="tag_scalar")
    spec = {"inputs": {"text": {"type": "text"}},
            "nodes": [{"id": "t", "type": "python", "config": {"function": "tag_in_place", "input_mapping": {"text": "{{ text }}"}}},
                      {"id": "s", "type": "python", "config": {"function": "tag_scalar", "input_mapping": {"text": "{{ text }}"}}}]}
    flow = Flow.from_dict(spec)
    first = flow.run({"text": "a"})
    assert first.outputs == {"t": {"text": "a!"}, "s": {"text": "a?"}}
    again = flow.run({"text": "a"}, reuse=first)
    assert again.records["t"].cached and again.records["s"].cached and calls == ["a", "a"]
    tag.__defaults__[0]["mark"] = "#"  # type: ignore[index]
    scalar.__defaults__ = ("%",)
    changed = flow.run({"text": "a"}, reuse=again)
    assert changed.outputs == {"t": {"text": "a#"}, "s": {"text": "a%"}}
    assert not changed.records["t"].cached and not changed.records["s"].cached
    def shout(text: str, mark: str = "?") -> dict:
        calls.append(text)
        return {"text": text.upper() + mark}

    scalar.__code__ = shout.__code__
    assert flow.run({"text": "a"}, reuse=changed).outputs["s"] == {"text": "A%"}
