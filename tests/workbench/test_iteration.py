"""Change a node, run again, compare: the workbench with a node cache and a run history.

The workbench is driven from Python as a user's clicks drive it; the cache, the history and
the evaluations are real SQLite files and folders under the test's temporary folder."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

pytest.importorskip("ipycytoscape")

from jupyter_flow import FlowValidationError  # noqa: E402
from jupyter_flow.cache import NodeCache  # noqa: E402
from jupyter_flow.evaluate import evaluate  # noqa: E402
from jupyter_flow.history import HistoryError, RunHistory  # noqa: E402
from jupyter_flow.workbench import Workbench  # noqa: E402
from jupyter_flow.workbench.iteration import CACHE_FOLDER, HISTORY_FILE, STORES_FOLDER  # noqa: E402

CALLS: list[str] = []


def tidy(text: str) -> dict[str, Any]:
    CALLS.append(text)
    return {"text": " ".join(text.split()).title()}


def greet_flow() -> dict[str, Any]:
    return {
        "spec_version": 1,
        "name": "greet",
        "inputs": {"who": {"type": "string", "default": " ada "}},
        "nodes": [
            {"id": "clean", "type": "python", "config": {"function": "it_tidy", "input_mapping": {"text": "{{who}}"}}},
            {"id": "greet", "type": "template", "config": {"template": "Hello, {{ clean.output.text }}!"}},
            {"id": "sign", "type": "template", "config": {"template": "{{ greet.output.text }} -- the shop"}},
        ],
        "edges": [{"from": "start", "to": "clean"}, {"from": "clean", "to": "greet"}, {"from": "greet", "to": "sign"}],
        "outputs": {"text": "{{ greet.output.text }}"},
    }


def write_flow(folder: Path) -> Path:
    path = folder / "greet.flow.yaml"
    path.write_text(yaml.safe_dump(greet_flow(), sort_keys=False))
    return path


def make(folder: Path, **options: Any) -> Workbench:
    return Workbench(write_flow(folder), functions={"it_tidy": tidy}, **options)


def new_greeting(wb: Workbench, template: str = "Good morning, {{ clean.output.text }}!") -> None:
    wb.configure("greet", {"type": "template", "config": {"template": template}})


def element(wb: Workbench, node: str) -> dict[str, Any]:
    return dict(wb.graph.node_widget(node).data)


def test_the_second_run_takes_unchanged_nodes_from_the_cache_and_badges_them(tmp_path: Path) -> None:
    wb = make(tmp_path, cache=True, history=True)
    stores = tmp_path / STORES_FOLDER
    assert wb.state.iteration.cache is not None and wb.state.iteration.cache.folder == stores / CACHE_FOLDER
    assert wb.state.iteration.history is not None and wb.state.iteration.history.path == stores / HISTORY_FILE

    async def main() -> None:
        CALLS.clear()
        first = await wb.run()
        assert first is not None and first.ok and not wb.cached
        assert all(element(wb, n)["badge"] == "" for n in ("clean", "greet", "sign"))
        new_greeting(wb)
        second = await wb.run()
        assert second is not None and second.outputs["greet"]["text"] == "Good morning, Ada!"
        assert CALLS == [" ada "]  # the python node ran once: the second time it came from the cache

    asyncio.run(main())
    assert wb.cached == {"clean"}
    assert "cached" in wb.node_classes("clean") and "cached" not in wb.node_classes("greet")
    badge = element(wb, "clean")["badge"]
    assert badge.startswith("data:image/svg+xml") and "cached" in badge
    assert element(wb, "greet")["badge"] == "" and element(wb, "sign")["badge"] == ""
    assert "1 node(s) cached" in wb.message_text
    wb.select("clean")
    page = wb.inspector.value
    assert "jf-badge-cached" in page and "from the node cache, not run" in page
    wb.select("greet")
    assert "jf-badge-cached" not in wb.inspector.value
    assert (stores / CACHE_FOLDER / "nodes.sqlite").is_file() and (stores / HISTORY_FILE).is_file()


def test_clear_cache_for_a_node_makes_its_next_run_compute_it(tmp_path: Path) -> None:
    wb = make(tmp_path, cache=tmp_path / "my-cache")
    assert wb.cache_bar.clear_button.disabled  # nothing selected
    with pytest.raises(FlowValidationError):
        wb.clear_cache()
    assert "Select the node" in wb.message_text

    async def main() -> None:
        CALLS.clear()
        await wb.run()
        await wb.run()
        assert CALLS == [" ada "] and wb.cached == {"clean", "greet", "sign"}
        wb.select("clean")
        assert not wb.cache_bar.clear_button.disabled and "my-cache" in wb.cache_bar.where.value
        wb.cache_bar.clear_button.click()
        assert "Removed 1 cached result(s) of clean" in wb.feedback["inspect"].value
        third = await wb.run()
        assert third is not None and CALLS == [" ada ", " ada "]
        assert wb.cached == {"greet", "sign"}  # the same text again downstream: still cached

    asyncio.run(main())
    assert NodeCache(tmp_path / "my-cache").info().nodes == {"clean": 1, "greet": 1, "sign": 1}


def test_the_cache_off_says_how_to_turn_it_on(tmp_path: Path) -> None:
    wb = make(tmp_path)
    wb.select("clean")
    assert wb.cache_bar.clear_button.disabled and "cache off" in wb.cache_bar.where.value
    with pytest.raises(FlowValidationError, match="cache is off"):
        wb.clear_cache("clean")
    assert "cache=True" in wb.message_text
    assert "history is off" in wb.history_panel.where.value
    with pytest.raises(FlowValidationError, match="history is off"):
        wb.compare()
    assert not (tmp_path / STORES_FOLDER).exists()


def test_the_history_tab_lists_the_runs_and_compare_marks_the_changed_nodes(tmp_path: Path) -> None:
    wb = make(tmp_path, cache=True, history=True)
    with pytest.raises(FlowValidationError):
        wb.compare()
    assert "Run the flow twice" in wb.feedback["history"].value

    async def main() -> None:
        await wb.run()
        assert len(wb.runs_listed()) == 1 and wb.history_panel.compare_button.disabled
        new_greeting(wb)
        await wb.run()

    asyncio.run(main())
    runs = wb.runs_listed()
    assert len(runs) == 2 and [r["cached"] for r in runs] == [1, 0]
    panel = wb.history_panel
    assert panel.runs_view.value.count("<tr>") == 3 and runs[0]["run_id"][:8] in panel.runs_view.value
    assert [v for _, v in panel.run_choice.options] == [r["run_id"] for r in runs]
    assert (panel.run_choice.value, panel.other_choice.value) == (runs[0]["run_id"], runs[1]["run_id"])
    assert not panel.compare_button.disabled

    panel.compare_button.click()  # the newest run against the one before it
    comparison = wb.comparison
    assert comparison is not None and (comparison.before, comparison.after) == (runs[1]["run_id"], runs[0]["run_id"])
    # greet was edited; sign only gave another text; clean is the same
    assert comparison.marks == {"greet": "edited", "sign": "changed"}
    assert "diff-edited" in wb.node_classes("greet") and "diff-changed" in wb.node_classes("sign")
    assert "diff-" not in wb.node_classes("clean")
    assert "edited" in element(wb, "greet")["badge"] and "changed" in element(wb, "sign")["badge"]
    assert "cached" in element(wb, "clean")["badge"]
    shown = panel.diff_view.value
    assert "2 node(s) changed: greet, sign" in shown and "config.template" in shown
    assert "+text: Good morning, Ada!" in shown and "~ node greet" in shown  # the output's text diff, the flows' diff
    assert wb.tabs.selected_index == 3
    assert "2 node(s) changed (greet, sign)" in wb.feedback["history"].value

    # the other order, chosen in the lists, gives the same direction: older first
    panel.run_choice.value, panel.other_choice.value = runs[1]["run_id"], runs[0]["run_id"]
    panel.compare_button.click()
    assert wb.comparison is not None and wb.comparison.before == runs[1]["run_id"]
    panel.clear_button.click()
    assert wb.comparison is None and "diff-" not in wb.node_classes("greet") and element(wb, "greet")["badge"] == ""
    assert panel.diff_view.value == ""
    with pytest.raises(FlowValidationError):
        wb.compare(runs[0]["run_id"], runs[0]["run_id"][:10])
    assert "two different runs" in wb.message_text
    with pytest.raises(HistoryError):
        wb.compare("nope", runs[0]["run_id"])
    assert "Cannot compare: no run 'nope'" in wb.message_text


def test_runs_of_the_flow_from_elsewhere_are_listed_and_the_default_place_follows_the_notebook(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    wb = Workbench(greet_flow(), functions={"it_tidy": tidy}, history=True)  # no file: the notebook's folder
    history = RunHistory(tmp_path / STORES_FOLDER / HISTORY_FILE)
    assert wb.state.iteration.history is not None and wb.state.iteration.history.path == history.path
    # a run of the same flow recorded elsewhere (a script, a batch) and one of another flow
    flow = wb.flow
    history.record(flow.run({"who": "bob"}), spec=flow.spec)
    other = greet_flow() | {"name": "other"}
    from jupyter_flow import Flow

    history.record(Flow.from_dict(other, functions={"it_tidy": tidy}).run({}), spec=None)
    wb.history_panel.refresh_button.click()
    assert [r["flow"] for r in wb.runs_listed()] == ["greet"]
    assert wb.history_panel.runs_view.value.count("<tr>") == 2
    # renaming the flow lists the runs of the new name
    wb.configure_flow({"name": "other", "inputs": {"who": {"type": "string", "default": "x"}}})
    assert [r["flow"] for r in wb.runs_listed()] == ["other"]


def test_a_history_that_cannot_be_written_is_said_and_the_run_still_shows(tmp_path: Path) -> None:
    blocked = tmp_path / "history-is-a-folder"
    blocked.mkdir()
    wb = make(tmp_path, history=blocked)

    async def main() -> None:
        result = await wb.run()
        assert result is not None and result.ok

    asyncio.run(main())
    assert wb.statuses == {"clean": "ok", "greet": "ok", "sign": "ok"}
    assert "Not kept in the run history" in wb.message_text and wb.error is not None
    assert "cannot open the run history" in wb.history_panel.where.value


def items_file(folder: Path) -> Path:
    path = folder / "items.jsonl"
    people = [" ada ", "BOB", "cy  lee", "dee", " eve"]
    path.write_text("".join(json.dumps({"id": str(i), "who": who, "text": f"Hello, {' '.join(who.split()).title()}!"}) + "\n"
                            for i, who in enumerate(people)))
    return path


def test_evaluate_the_edited_flow_against_its_file_and_show_the_table(tmp_path: Path) -> None:
    wb = make(tmp_path, cache=True)
    data = items_file(tmp_path)
    new_greeting(wb, "{% if clean.output.text == 'Bob' %}Hi, Bob!{% else %}Hello, {{ clean.output.text }}!{% endif %}")

    async def main() -> None:
        CALLS.clear()
        evaluation = await wb.evaluate(data, expect=["text"], out=tmp_path / "eval")
        assert evaluation is not None and wb.evaluation is evaluation

    asyncio.run(main())
    evaluation = wb.evaluation
    assert evaluation is not None
    assert len(CALLS) == 5  # the clean node ran once per item: version b took it from the cache
    assert evaluation.summary["items"] == 5 and evaluation.summary["changed"] == 1
    assert [r["id"] for r in evaluation.rows if r["changed"]] == ["1"]
    assert evaluation.summary["flows"]["a"]["scores"] == {"expect:text": 1.0}
    assert evaluation.summary["flows"]["b"]["scores"] == {"expect:text": 0.8}
    view = wb.evaluation_panel.view.value
    assert "5 items" in view and "1 changed" in view and "-0.200" in view
    assert view.count("jf-eval-changed'") == 1 and view.count("jf-eval-same'") == 4
    assert "text: &quot;Hello, Bob!&quot; -&gt; &quot;Hi, Bob!&quot;" in view
    assert wb.tabs.selected_index == 4 and "1 changed" in wb.feedback["evaluation"].value
    wb.evaluation_panel.only_changed.value = True
    view = wb.evaluation_panel.view.value
    assert view.count("jf-eval-changed'") == 1 and "jf-eval-same'" not in view


def test_the_evaluation_tab_evaluates_the_items_typed_and_shows_a_folder(tmp_path: Path) -> None:
    wb = make(tmp_path, cache=True)
    panel = wb.evaluation_panel
    panel.evaluate_button.click()
    assert "Type the items file" in wb.feedback["evaluation"].value
    panel.show_button.click()
    assert "Type the folder" in wb.feedback["evaluation"].value
    new_greeting(wb)
    panel.data_text.value = str(items_file(tmp_path))

    async def main() -> None:
        panel.evaluate_button.click()  # as a click in the kernel: the evaluation runs while the notebook stays usable
        task = wb.state.iteration.evaluating
        assert task is not None and not task.done() and "Evaluating over" in wb.feedback["evaluation"].value
        panel.evaluate_button.click()
        assert "in progress" in wb.feedback["evaluation"].value
        await task

    asyncio.run(main())
    evaluation = wb.evaluation
    assert evaluation is not None and evaluation.summary["changed"] == 5
    assert evaluation.out_dir.parent == tmp_path / STORES_FOLDER / "evaluations"  # a new folder beside the flow
    wb.state.iteration.evaluation = None
    panel.folder_text.value = str(evaluation.out_dir)
    panel.show_button.click()
    assert wb.evaluation is not None and wb.evaluation.summary["changed"] == 5 and "5 changed" in panel.view.value


def test_show_an_evaluation_the_cli_wrote_and_refuse_a_folder_without_one(tmp_path: Path) -> None:
    flow_path = write_flow(tmp_path)
    data = items_file(tmp_path)
    wb = Workbench(flow_path, functions={"it_tidy": tidy})
    made = evaluate(wb.flow, data=data, out=tmp_path / "one", expect=["text"], progress=False)
    shown = wb.show_evaluation(tmp_path / "one")
    assert shown.rows == json.loads(json.dumps(made.rows)) and shown.summary["items"] == 5
    view = wb.evaluation_panel.view.value
    assert "0 changed" in view and view.count("jf-eval-same'") == 5
    with pytest.raises(FlowValidationError, match="summary.json is missing"):
        wb.show_evaluation(tmp_path)
    assert "Cannot show the evaluation" in wb.feedback["evaluation"].value
    assert wb.evaluation is shown  # the one shown stays
    (tmp_path / "one" / "rows.jsonl").write_text("{not json\n")
    with pytest.raises(FlowValidationError, match="line 1 is not JSON"):
        wb.show_evaluation(tmp_path / "one")


def test_evaluate_needs_a_version_to_compare_with_and_says_a_bad_one(tmp_path: Path) -> None:
    wb = Workbench(greet_flow(), functions={"it_tidy": tidy})
    with pytest.raises(FlowValidationError):
        wb.evaluate(items_file(tmp_path))
    assert "no file" in wb.feedback["evaluation"].value

    async def main() -> None:
        out = await wb.evaluate(tmp_path / "missing.jsonl", against=write_flow(tmp_path), out=tmp_path / "e")
        assert out is None

    asyncio.run(main())
    assert "missing.jsonl" in wb.feedback["evaluation"].value and wb.evaluation is None


def test_opening_another_flow_moves_the_default_stores_beside_it(tmp_path: Path) -> None:
    wb = make(tmp_path, cache=True, history=True)
    elsewhere = tmp_path / "other"
    elsewhere.mkdir()
    wb.open(write_flow(elsewhere))
    iteration = wb.state.iteration
    assert iteration.cache is not None and iteration.cache.folder == elsewhere / STORES_FOLDER / CACHE_FOLDER
    assert iteration.history is not None and iteration.history.path == elsewhere / STORES_FOLDER / HISTORY_FILE
    assert wb.runs_listed() == [] and "Runs of <b>greet</b>" in wb.history_panel.where.value


def test_a_comparison_of_a_large_flow_lists_the_changed_nodes_first_and_a_bounded_number() -> None:
    from jupyter_flow.flowdiff import FieldChange
    from jupyter_flow.history import NodeDiff, RunDiff
    from jupyter_flow.workbench.history_view import MAX_NODES, comparison_html
    from jupyter_flow.workbench.iteration import Comparison

    def node(i: int, changed: bool) -> NodeDiff:
        outputs = [FieldChange("text", "a", "b")] if changed else []
        return NodeDiff(f"n{i:03d}", ("ok", "ok"), [], outputs, "-a\n+b" if changed else "", (0.001, 0.002), (False, not changed))

    diff = RunDiff("a" * 32, "b" * 32, [], [node(i, changed=i == 299) for i in range(300)])
    page = comparison_html(Comparison(diff, None, {"n299": "changed"}))
    assert page.count("<tr") == MAX_NODES + 2  # the header, the rows, the line saying how many more
    assert page.index("n299") < page.index("n000") and "100 more nodes, the same in both runs" in page
    assert "n250" not in page


def test_a_workbench_store_choice_is_read_as_the_cache_and_history_options_are(tmp_path: Path) -> None:
    from jupyter_flow.workbench.iteration import workbench_cache, workbench_history

    flow_path = tmp_path / "f.flow.yaml"
    beside = tmp_path / STORES_FOLDER
    assert workbench_cache(False, flow_path) is None and workbench_history(None, flow_path) is None
    cache, history = workbench_cache(True, flow_path), workbench_history(True, flow_path)
    assert cache is not None and cache.folder == beside / CACHE_FOLDER
    assert history is not None and history.path == beside / HISTORY_FILE
    own = workbench_cache(str(tmp_path / "c"), flow_path)
    assert own is not None and own.folder == tmp_path / "c"
    assert workbench_cache(own, flow_path) is own and workbench_history(history, flow_path) is history
    with pytest.raises(TypeError, match="history must be True, False, a file or a RunHistory, not int"):
        workbench_history(3, flow_path)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="cache must be True, False, a folder or a NodeCache, not list"):
        workbench_cache([], flow_path)  # type: ignore[arg-type]
