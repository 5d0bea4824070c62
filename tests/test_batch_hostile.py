"""Batches over inputs a careless or hostile user hands over, through `jupyter-flow batch`
as it is typed: a file name as long as the file system allows, an id of 10,000
characters, an item nested 600 levels deep, ids that are null or empty, an output folder
inside the inputs. One bad item fails alone; the batch ends with its summary and the exit
code the README promises (0 all ok, 1 items failed, 2 the batch could not start)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jupyter_flow import Flow
from jupyter_flow.batch import BatchInputError, collect_items, read_results, run_batch, trace_name
from jupyter_flow.batch.items import MAX_ITEM_DEPTH, MAX_NAME_BYTES

FLOW = """\
name: echo
inputs:
  document: {type: file}
  extra: {type: any, default: 0}
nodes:
  - id: echo
    type: template
    config: {template: "got {{ document }}"}
"""


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("jupyter-flow")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def batch(tmp: Path, inputs: str, out: str = "out", *more: str) -> subprocess.CompletedProcess[str]:
    return cli("batch", "echo.flow.yaml", "--inputs", inputs, "--out", out, "--quiet", *more, cwd=tmp)


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    (tmp_path / "echo.flow.yaml").write_text(FLOW, encoding="utf-8")
    return tmp_path


def nested(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = [value]
    return value


def write_jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows), encoding="utf-8")
    return path


def traces_named_in(out: Path) -> dict[str, Path]:
    """Each recorded item's trace file, checked to be there and short enough for any file system."""
    found = {}
    for record in read_results(out):
        path = out / record["trace"]
        assert path.is_file(), record["trace"]
        assert len(path.name.encode()) <= MAX_NAME_BYTES + len(".json")
        found[record["id"]] = path
    return found


def test_a_file_name_as_long_as_the_file_system_allows_runs_resumes_and_is_summarised(tmp: Path) -> None:
    inbox = tmp / "inbox"
    inbox.mkdir()
    long_name = "n" * 250 + ".txt"  # 254 bytes: a legal name; its trace file `NAME.json` would not be
    (inbox / long_name).write_text("long", encoding="utf-8")
    (inbox / "short.txt").write_text("short", encoding="utf-8")

    first = batch(tmp, "inbox")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "2 items: 2 ok, 0 failed" in first.stdout and "Traceback" not in first.stderr
    traces = traces_named_in(tmp / "out")
    assert set(traces) == {long_name, "short.txt"}
    assert traces["short.txt"].name == "short.txt.json"  # a short safe id keeps its own name
    (echo,) = json.loads(traces[long_name].read_text())["nodes"]
    assert echo["outputs"]["text"].endswith(long_name)

    again = batch(tmp, "inbox", "out", "--resume")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "(0 run now, 2 already done" in again.stdout
    summary = json.loads((tmp / "out" / "summary.json").read_text())
    assert (summary["ok"], summary["resumed"]) == (2, 2)


def test_ids_of_10000_characters_and_odd_unicode_get_short_distinct_trace_names(tmp: Path) -> None:
    ids = ["x" * 10_000, "x" * 9_999 + "y", "\u202egnp.exe\u200d/../../etc", "合同" * 200, "e\u0301" * 150, "\udc80lone"]
    rows = [{"id": item_id, "document": "doc.txt"} for item_id in ids]
    write_jsonl(tmp / "items.jsonl", [json.dumps(row) for row in rows])

    first = batch(tmp, "items.jsonl")
    assert first.returncode == 0, first.stdout + first.stderr[-2000:]
    assert f"{len(ids)} items: {len(ids)} ok" in first.stdout
    traces = traces_named_in(tmp / "out")
    # every id whole in the results, not cut; a lone surrogate as the text results.jsonl can hold
    assert set(traces) == {*ids[:-1], "\\udc80lone"}
    assert len({p.name for p in traces.values()}) == len(ids)  # ids that share a long beginning stay apart
    assert all(p.parent == tmp / "out" / "traces" for p in traces.values())  # `/../` stays inside
    assert trace_name(ids[0]) == trace_name("x" * 10_000)  # the same id always maps to the same name

    again = batch(tmp, "items.jsonl", "out", "--resume")
    assert again.returncode == 0 and f"(0 run now, {len(ids)} already done" in again.stdout, again.stderr


def test_an_item_nested_600_levels_fails_alone_naming_its_line(tmp: Path) -> None:
    items = write_jsonl(tmp / "items.jsonl", [
        {"id": "first", "document": "a.txt"},
        {"id": "deep", "document": "b.txt", "extra": nested(600)},  # some 7 KB
        {"id": "third", "document": "c.txt"},
        "[" * 100_000 + "]" * 100_000,  # deeper than the JSON parser itself goes
        {"id": "edge", "document": "d.txt", "extra": nested(MAX_ITEM_DEPTH - 1)},  # the limit itself is fine
    ])
    done = batch(tmp, "items.jsonl")
    assert done.returncode == 1, done.stdout + done.stderr[-2000:]
    assert "Traceback" not in done.stderr
    lines = done.stdout.splitlines()
    assert lines[-3].startswith("5 items: 3 ok, 2 failed") and lines[-2].startswith("batch FAILED")
    assert lines[-1] == "failed items: deep, line-4"
    records = {r["id"]: r for r in read_results(tmp / "out")}
    assert {i: r["status"] for i, r in records.items()} == {"first": "ok", "deep": "error", "third": "ok", "line-4": "error",
                                                           "edge": "ok"}
    assert records["deep"]["error"]["message"] == f"{items.name}:2: nested more than {MAX_ITEM_DEPTH} levels deep"
    assert records["line-4"]["error"]["message"] == f"{items.name}:4: nested more than {MAX_ITEM_DEPTH} levels deep"
    traces_named_in(tmp / "out")

    # the exit code follows the README's rule: failures within --max-failures are a success
    accepted = batch(tmp, "items.jsonl", "out2", "--max-failures", "2")
    assert accepted.returncode == 0 and "(2 failed, 2 allowed)" in accepted.stdout, accepted.stdout


def test_null_empty_and_unusable_ids_are_refused_item_by_item(tmp: Path) -> None:
    items = write_jsonl(tmp / "items.jsonl", [
        {"id": None, "document": "a.txt"},
        {"id": "", "document": "b.txt"},
        {"id": "  ", "document": "c.txt"},
        {"id": ["x"], "document": "d.txt"},
        {"id": 7, "document": "e.txt"},
        {"document": "f.txt"},
    ])
    done = batch(tmp, "items.jsonl")
    assert done.returncode == 1, done.stdout + done.stderr
    assert done.stdout.splitlines()[-1] == "failed items: line-1, line-2, line-3, line-4"
    records = {r["id"]: r for r in read_results(tmp / "out")}
    assert records["7"]["status"] == "ok" and records["line-6"]["status"] == "ok"
    assert "None" not in records
    assert records["line-1"]["error"]["message"] == (
        f"{items.name}:1: `id` must be a non-empty string or a number, not null (leave it out to use the line number)")
    assert records["line-2"]["error"]["message"] == f"{items.name}:2: `id` is empty (leave it out to use the line number)"
    assert "not list" in records["line-4"]["error"]["message"]


def test_ids_and_depth_of_a_list_of_items_are_checked_the_same_way(tmp: Path) -> None:
    flow = Flow.load(tmp / "echo.flow.yaml")
    items = collect_items(flow, [{"id": None, "document": "a"}, {"id": "ok", "document": "b"},
                                 {"id": "deep", "document": "c", "extra": nested(300)}])
    assert [(i.id, i.problem) for i in items] == [
        ("item-1", "item 1: `id` must be a non-empty string or a number, not null (leave it out to use the item's number)"),
        ("ok", None),
        ("deep", f"item 3: nested more than {MAX_ITEM_DEPTH} levels deep"),
    ]
    summary = run_batch(flow, items, tmp / "out", progress=False)
    assert (summary.ok, summary.failed, summary.failed_ids) == (1, 2, ["item-1", "deep"])


@pytest.mark.parametrize(("inputs", "out", "words"), [
    ("inbox", "inbox", "is the folder of inputs"),
    ("inbox", "inbox/runs", "is inside the folder of inputs"),
    ("inbox/**/*.txt", "inbox/runs", "where the pattern"),
    ("*/*.txt", "inbox", "where the pattern"),
])
def test_an_output_folder_the_inputs_are_read_from_is_refused(tmp: Path, inputs: str, out: str, words: str) -> None:
    inbox = tmp / "inbox"
    inbox.mkdir()
    (inbox / "a.txt").write_text("a", encoding="utf-8")
    done = batch(tmp, inputs, out)
    assert done.returncode == 2, done.stdout + done.stderr
    assert words in done.stderr and "give --out a folder" in done.stderr and "Traceback" not in done.stderr
    assert sorted(p.name for p in inbox.iterdir()) == ["a.txt"]  # nothing written, no lock left
    with pytest.raises(BatchInputError, match="field 'out_dir'"):
        run_batch(Flow.load(tmp / "echo.flow.yaml"), str(tmp / inputs), tmp / out, progress=False)


def test_an_output_folder_a_pattern_cannot_reach_is_fine(tmp: Path) -> None:
    inbox = tmp / "inbox"
    inbox.mkdir()
    (inbox / "a.txt").write_text("a", encoding="utf-8")
    done = batch(tmp, "inbox/*.txt", "inbox/runs")  # only files directly in inbox match
    assert done.returncode == 0, done.stdout + done.stderr
    again = batch(tmp, "inbox/*.txt", "inbox/runs")
    assert again.returncode == 0 and "1 items: 1 ok" in again.stdout
