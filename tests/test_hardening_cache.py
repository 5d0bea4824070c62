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
