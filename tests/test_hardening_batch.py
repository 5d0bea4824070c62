"""Batches resumed after the flow changed, and batch files holding text JSON allows but
line splitting trips on, through `jupyter-flow batch` as it is typed.

A resume must never mix results of two versions of a flow with exit 0: every result line
carries the flow's digest, a resume with another flow is refused before anything runs,
and `--rerun-changed` runs the old flow's items again, keeping their old results aside."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from jupyter_flow import Flow
from jupyter_flow.batch import FlowChangedError, read_results, run_batch
from jupyter_flow.history import flow_digest

FLOW = """\
name: echo
inputs:
  text: {type: text}
nodes:
  - id: echo
    type: template
    config: {template: "%s {{ text }}"}
"""


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("jupyter-flow")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def batch(tmp: Path, *more: str, inputs: str = "in.jsonl") -> subprocess.CompletedProcess[str]:
    return cli("batch", "echo.flow.yaml", "--inputs", inputs, "--out", "out", "--quiet", *more, cwd=tmp)


def write_flow(tmp: Path, word: str, layout: str = "") -> None:
    (tmp / "echo.flow.yaml").write_text(FLOW % word + layout, encoding="utf-8")


def write_items(tmp: Path, *ids: str) -> None:
    (tmp / "in.jsonl").write_text("".join(json.dumps({"id": i, "text": i}) + "\n" for i in ids), encoding="utf-8")


def texts(out: Path) -> dict[str, str]:
    return {r["id"]: r["outputs"]["echo"]["text"] for r in read_results(out)}


def test_a_resume_after_the_flow_changed_is_refused_and_touches_nothing(tmp_path: Path) -> None:
    write_flow(tmp_path, "old")
    write_items(tmp_path, "a", "b")
    assert batch(tmp_path).returncode == 0
    before = (tmp_path / "out" / "results.jsonl").read_bytes()
    write_flow(tmp_path, "new")
    write_items(tmp_path, "a", "b", "c")
    done = batch(tmp_path, "--resume")
    assert done.returncode == 2, done.stderr
    assert "2 result(s) ('a', 'b')" in done.stderr and "another version of the flow" in done.stderr
    assert "--rerun-changed" in done.stderr and "Traceback" not in done.stderr
    assert (tmp_path / "out" / "results.jsonl").read_bytes() == before  # item c did not run either


def test_rerun_changed_runs_the_old_flows_items_again_and_keeps_their_old_results(tmp_path: Path) -> None:
    write_flow(tmp_path, "old")
    write_items(tmp_path, "a", "b")
    assert batch(tmp_path).returncode == 0
    write_flow(tmp_path, "new")
    write_items(tmp_path, "a", "b", "c")
    done = batch(tmp_path, "--rerun-changed")
    assert done.returncode == 0, done.stderr
    assert "2 result(s) made by another version of the flow were moved to" in done.stdout
    out = tmp_path / "out"
    assert texts(out) == {"a": "new a", "b": "new b", "c": "new c"}
    lines = (out / "results.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3  # each item once
    digest = flow_digest(Flow.load(tmp_path / "echo.flow.yaml").spec)
    assert {json.loads(line)["flow_digest"] for line in lines} == {digest}
    (earlier,) = out.glob("earlier-*")
    assert texts(earlier) == {"a": "old a", "b": "old b"}
    assert sorted(p.name for p in (earlier / "traces").iterdir()) == ["a.json", "b.json"]
    assert json.loads((out / "summary.json").read_text())["flow_digest"] == digest
    again = batch(tmp_path, "--resume")  # the same flow now: nothing to run again
    assert again.returncode == 0 and "0 run now, 3 already done" in again.stdout


def test_moving_nodes_on_the_canvas_is_not_a_change(tmp_path: Path) -> None:
    write_flow(tmp_path, "same")
    write_items(tmp_path, "a")
    assert batch(tmp_path).returncode == 0
    write_flow(tmp_path, "same", "layout: {echo: {x: 10, y: 20}}\n")
    done = batch(tmp_path, "--resume")
    assert done.returncode == 0, done.stderr
    assert "0 run now, 1 already done" in done.stdout


def test_results_written_without_a_digest_are_not_taken_as_this_flows(tmp_path: Path) -> None:
    write_flow(tmp_path, "x")
    write_items(tmp_path, "a", "b")
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.jsonl").write_text(json.dumps({"id": "a", "status": "ok", "outputs": {}}) + "\n", encoding="utf-8")
    done = batch(tmp_path, "--resume")
    assert done.returncode == 2 and "carry no flow digest" in done.stderr
    assert batch(tmp_path, "--rerun-changed").returncode == 0
    assert texts(out) == {"a": "x a", "b": "x b"}


def test_the_python_api_refuses_the_same_way(tmp_path: Path) -> None:
    items = [{"id": "a", "text": "a"}]
    run_batch(Flow.from_text(FLOW % "one"), items, tmp_path / "out", progress=False)
    with pytest.raises(FlowChangedError) as caught:
        run_batch(Flow.from_text(FLOW % "two"), items, tmp_path / "out", resume=True, progress=False)
    assert caught.value.stale == ["a"]
    summary = run_batch(Flow.from_text(FLOW % "two"), items, tmp_path / "out", rerun_changed=True, progress=False)
    assert summary.ok == 1 and summary.ran == 1 and texts(tmp_path / "out") == {"a": "two a"}


@pytest.mark.parametrize("odd", ["\u2028", "\u2029", "\x85", "\x1c", "\x0b"])
def test_text_with_characters_other_than_newline_that_end_lines_stays_one_item(tmp_path: Path, odd: str) -> None:
    # JSON leaves these characters raw inside strings; a JSONL line ends only at "\n"
    write_flow(tmp_path, "got")
    item = json.dumps({"id": f"a{odd}b", "text": f"x{odd}y"}, ensure_ascii=False)
    (tmp_path / "in.jsonl").write_text(item + "\n", encoding="utf-8")
    first = batch(tmp_path)
    assert first.returncode == 0, first.stderr + first.stdout
    assert texts(tmp_path / "out") == {f"a{odd}b": f"got x{odd}y"}
    again = batch(tmp_path, "--resume")  # found again in results.jsonl: not run twice
    assert again.returncode == 0 and "0 run now, 1 already done" in again.stdout
    assert len((tmp_path / "out" / "results.jsonl").read_bytes().split(b"\n")) == 2


def test_an_item_refused_for_its_depth_stays_refused_with_common_inputs(tmp_path: Path) -> None:
    write_flow(tmp_path, "got")
    deep: object = "bottom"
    for _ in range(150):
        deep = [deep]
    (tmp_path / "in.jsonl").write_text(json.dumps({"id": "deep", "text": deep}) + "\n", encoding="utf-8")
    done = batch(tmp_path, "--input", "text=given")
    assert done.returncode == 1, done.stdout + done.stderr
    (record,) = read_results(tmp_path / "out")
    assert record["status"] == "error" and "nested more than" in record["error"]["message"]


def test_a_jsonl_file_opening_with_a_bom_runs(tmp_path: Path) -> None:
    write_flow(tmp_path, "got")
    (tmp_path / "in.jsonl").write_bytes(b"\xef\xbb\xbf" + json.dumps({"id": "a", "text": "x"}).encode() + b"\r\n")
    done = batch(tmp_path)
    assert done.returncode == 0, done.stderr
    assert texts(tmp_path / "out") == {"a": "got x"}


def test_a_key_given_twice_in_an_item_fails_that_item_naming_the_key(tmp_path: Path) -> None:
    # which of the two values did the user mean? served requests and flow files refuse it too
    write_flow(tmp_path, "got")
    (tmp_path / "in.jsonl").write_text('{"id": "a", "text": "x", "text": "y"}\n{"id": "b", "text": "z"}\n',
                                       encoding="utf-8")
    done = batch(tmp_path)
    assert done.returncode == 1, done.stderr
    records = {r["id"] if r["status"] == "ok" else "refused": r for r in read_results(tmp_path / "out")}
    assert records["b"]["outputs"]["echo"]["text"] == "got z"
    assert "key 'text' is given twice" in records["refused"]["error"]["message"]
    assert "in.jsonl:1" in records["refused"]["error"]["message"]


def test_failed_ids_with_escape_sequences_are_printed_escaped(tmp_path: Path) -> None:
    # a file name can hold a terminal escape (clear screen) or a right-to-left override
    (tmp_path / "fail.flow.yaml").write_text(
        'name: fail\ninputs: {doc: {type: file}}\nnodes:\n  - {id: n, type: template, config: {template: "{{ 1 // 0 }}"}}\n',
        encoding="utf-8")
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for name in ("clear\x1b[2J.txt", "gnp.\u202eexe", "two\nlines.txt"):
        (inbox / name).write_text("x", encoding="utf-8")
    done = cli("batch", "fail.flow.yaml", "--inputs", "inbox", "--out", "out", "--quiet", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    assert "\x1b" not in done.stdout and "\u202e" not in done.stdout
    assert "clear\\x1b[2J.txt" in done.stdout and "gnp.\\u202eexe" in done.stdout and "two\\nlines.txt" in done.stdout
    assert {r["id"] for r in read_results(tmp_path / "out")} == {"clear\x1b[2J.txt", "gnp.\u202eexe", "two\nlines.txt"}


def test_eval_again_after_editing_a_flow_compares_the_new_version(tmp_path: Path) -> None:
    # the same --out again: results of the old version must not stand in for the new one
    from jupyter_flow.evaluate import evaluate

    write_flow(tmp_path, "same")
    a = tmp_path / "echo.flow.yaml"
    b = tmp_path / "b.flow.yaml"
    b.write_text(FLOW % "same", encoding="utf-8")
    data = tmp_path / "data.jsonl"
    data.write_text("".join(json.dumps({"id": i, "text": i}) + "\n" for i in ("x", "y")), encoding="utf-8")
    first = evaluate(a, b, data=data, out=tmp_path / "eval", progress=False)
    assert first.summary["changed"] == 0
    b.write_text(FLOW % "other", encoding="utf-8")
    second = evaluate(a, b, data=data, out=tmp_path / "eval", progress=False)
    assert second.summary["changed"] == 2
    assert texts(tmp_path / "eval" / "b") == {"x": "other x", "y": "other y"}


def test_max_failures_as_a_fraction_on_the_command_line_as_its_message_offers(tmp_path: Path) -> None:
    write_flow(tmp_path, "got")
    (tmp_path / "in.jsonl").write_text('{"id": "a", "text": "x", "text": "y"}\n{"id": "b", "text": "z"}\n', encoding="utf-8")
    done = batch(tmp_path, "--max-failures", "0.5")
    assert done.returncode == 0, done.stderr
    assert "(1 failed, 1 allowed)" in done.stdout


def test_a_line_past_the_item_bound_fails_alone_without_being_read_whole(tmp_path: Path) -> None:
    from jupyter_flow.batch.items import MAX_ITEM_BYTES

    write_flow(tmp_path, "got")
    with (tmp_path / "in.jsonl").open("w", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "a", "text": "x"}) + "\n")
        fh.write('{"id": "huge", "text": "' + "y" * (MAX_ITEM_BYTES + 10) + '"}\n')
        fh.write(json.dumps({"id": "c", "text": "z"}) + "\n")
    done = batch(tmp_path)
    assert done.returncode == 1, done.stderr
    records = {r["id"]: r for r in read_results(tmp_path / "out")}
    assert records["a"]["status"] == records["c"]["status"] == "ok"
    assert records["line-2"]["status"] == "error"
    assert f"in.jsonl:2: longer than {MAX_ITEM_BYTES:,} bytes" in records["line-2"]["error"]["message"]


TONE_FLOW = """\
name: tone
inputs:
  text: {type: text}
  tone: {type: text}
nodes:
  - id: echo
    type: template
    config: {template: "{{ tone }} {{ text }}"}
  - id: call
    type: http
    config: {endpoint: "http://127.0.0.1:9/never", input_mapping: {text: "{{ text }}"}}
"""


def test_a_resume_with_other_common_inputs_is_refused_naming_the_input_and_rerun_changed_runs_again(tmp_path: Path) -> None:
    # results made with `--input tone=calm` must not be mixed with ones made with tone=ANGRY
    (tmp_path / "echo.flow.yaml").write_text(TONE_FLOW, encoding="utf-8")
    write_items(tmp_path, "a", "b")
    assert batch(tmp_path, "--input", "tone=calm").returncode == 1  # the http node fails: lines are written all the same
    before = (tmp_path / "out" / "results.jsonl").read_bytes()
    write_items(tmp_path, "a", "b", "c")
    done = batch(tmp_path, "--resume", "--input", "tone=ANGRY")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "2 result(s) ('a', 'b')" in done.stderr and "common input 'tone'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr
    assert (tmp_path / "out" / "results.jsonl").read_bytes() == before
    again = batch(tmp_path, "--resume", "--input", "tone=calm")  # the same inputs: only c runs
    assert "1 run now, 2 already done" in again.stdout, again.stdout + again.stderr
    rerun = batch(tmp_path, "--rerun-changed", "--input", "tone=ANGRY")
    assert "3 result(s) made with another common input 'tone' (--input) were moved to" in rerun.stdout
    angry = {r["id"]: r["outputs"]["echo"]["text"] for r in read_results(tmp_path / "out")}
    assert angry == {"a": "ANGRY a", "b": "ANGRY b", "c": "ANGRY c"}


def test_a_resume_with_another_endpoint_override_is_refused_naming_the_node(tmp_path: Path) -> None:
    (tmp_path / "echo.flow.yaml").write_text(TONE_FLOW, encoding="utf-8")
    write_items(tmp_path, "a")
    assert batch(tmp_path, "-i", "tone=x", "--endpoint", "call=http://127.0.0.1:9/one").returncode == 1
    done = batch(tmp_path, "--resume", "-i", "tone=x", "--endpoint", "call=http://127.0.0.1:9/two")
    assert done.returncode == 2 and "endpoint override of node 'call'" in done.stderr, done.stderr
    dropped = batch(tmp_path, "--resume", "-i", "tone=x")  # leaving the override out is a change too
    assert dropped.returncode == 2 and "endpoint override of node 'call'" in dropped.stderr, dropped.stderr
    same = batch(tmp_path, "--resume", "-i", "tone=x", "--endpoint", "call=http://127.0.0.1:9/one")
    assert "0 run now, 1 already done" in same.stdout, same.stdout + same.stderr
