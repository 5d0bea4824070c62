"""The workbench's state driven alone, as its views drive it, without any widget."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from flow_fixtures import three_nodes as shared_three_nodes
from servers import Reply

from jupyter_flow import FlowValidationError
from jupyter_flow.workbench.events import Change
from jupyter_flow.workbench.state import WorkbenchState

CALLS: list[str] = []


def shout(text: str) -> dict[str, Any]:
    CALLS.append(text)
    return {"text": text.upper(), "n": len(text)}


def three_nodes() -> dict[str, Any]:
    return shared_three_nodes("st_shout")


def make_state() -> tuple[WorkbenchState, list[Change]]:
    state = WorkbenchState(three_nodes(), functions={"st_shout": shout})
    seen: list[Change] = []
    state.subscribe(seen.append)
    return state, seen


def test_the_state_module_needs_no_widget_library() -> None:
    # a notebook without ipywidgets (or a test) can still hold and drive a workbench's state
    code = "import sys, jupyter_flow.workbench.state; print(sorted(m for m in sys.modules if m.split('.')[0] in ('ipywidgets', 'ipycytoscape', 'bqplot')))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_select_shows_one_change_per_action_and_refuses_what_is_not_there() -> None:
    state, seen = make_state()
    state.select("shout")
    assert state.selected == ("node", "shout") and seen[-1].topics == {"selection"}
    state.select_edge("shout->report")
    assert state.selected == ("edge", "shout->report")
    with pytest.raises(FlowValidationError, match="nowhere"):
        state.select("nowhere")
    assert state.selected == ("edge", "shout->report") and state.notice is not None and state.notice.error
    # deleting a node takes its edges, and the selection of one of them, in one change
    seen.clear()
    state.delete_node("shout")
    assert state.selected is None and [n.id for n in state.spec.nodes] == ["prompt", "report"]
    assert len(seen) == 1 and {"flow", "selection", "notice"} <= seen[0].topics


def test_a_bad_edit_keeps_the_last_good_flow_and_reports_the_problem() -> None:
    state, seen = make_state()
    before = state.spec
    state.select("shout")
    with pytest.raises(FlowValidationError):
        state.apply_settings("type: python\nconfig: {function: st_shout}\nretri: 3\n")
    assert state.spec == before and state.flow.spec == before
    notice = state.notice
    assert notice is not None and notice.error and notice.place == "settings"
    assert any("retri" in str(p) for p in notice.problems) and "retri" in notice.text
    assert "flow" not in seen[-1] and "notice" in seen[-1]  # nothing to redraw but the message
    with pytest.raises(FlowValidationError, match="cycle"):
        state.connect("report", "prompt")
    assert state.spec == before and state.notice is not None and state.notice.place == "edit"
    # an edit that parses but names an unknown node is kept and flagged on the node
    state.configure("report", "type: template\nconfig: {template: '{{ shuot.output.text }}'}\n")
    assert state.spec != before and any(p.node == "report" and "shuot" in p.message for p in state.problems())
    # applying the same settings again is no edit
    state.apply_settings("type: python\nconfig: {function: st_shout, input_mapping: {text: '{{prompt.output.text}}'}}\n")
    assert state.notice is not None and state.notice.text.startswith("Nothing changed")


def test_undo_and_redo_walk_the_edits_and_a_new_edit_ends_the_redo() -> None:
    state, _seen = make_state()
    original = state.spec
    new = state.add_node("template", config={"template": "x"})
    assert state.selected == ("node", new)
    state.connect("report", new)
    after_both = state.spec
    assert not state.can_redo
    assert state.undo() == f"wire report -> {new}"
    assert state.can_redo and state.next_redo == f"wire report -> {new}"
    assert state.undo() == f"add node {new}"
    assert state.spec == original and state.selected is None  # the node selected went with the undo
    assert state.redo() == f"add node {new}"
    assert state.redo() == f"wire report -> {new}"
    assert state.spec == after_both and not state.can_redo and state.can_undo
    assert state.redo() is None and state.notice is not None and "Nothing to redo" in state.notice.text
    # undo once more, then make another edit: what was undone cannot come back over it
    state.undo()
    state.move("prompt", 400, 300)
    assert not state.can_redo and state.redo() is None
    assert state.undo() == "move prompt"
    # an edit made on the editor itself (past the state) also ends the redo
    state.undo()
    assert state.can_redo
    state.editor.add_node("template", "side", {"template": "y"})
    assert not state.can_redo


def test_a_rename_keeps_the_node_selected() -> None:
    state, _ = make_state()
    state.select("shout")
    assert state.configure("shout", {"id": "loud", "type": "python", "config": {"function": "st_shout"}}) == "loud"
    assert state.selected == ("node", "loud")
    assert [(e.source, e.target) for e in state.spec.edges] == [("prompt", "loud"), ("loud", "report")]


def test_run_a_python_node_and_an_http_node_against_a_loopback_server(serve: Any) -> None:
    server = serve({"/predict": lambda req: Reply(body={"label": "positive", "echo": req.body})})
    data = three_nodes()
    data["nodes"].append({"id": "judge", "type": "http", "config": {"endpoint": f"{server.url}/predict",
                                                                     "input_mapping": {"text": "{{shout.output.text}}"}}})
    data["edges"].append({"from": "shout", "to": "judge"})
    state = WorkbenchState(data)
    state.register("st_shout", shout)
    records: list[str] = []
    state.subscribe(lambda change: records.extend(sorted(change.nodes)), ("record",))

    async def main() -> None:
        state.set_input("text", "good")
        task = state.run()
        assert state.runs.running and set(state.runs.statuses.values()) == {"pending"}
        result = await task
        assert result is not None and result.ok and not state.runs.running
        assert result.outputs["report"]["text"] == "SAY GOOD (8)"
        assert result.outputs["judge"]["label"] == "positive"
        assert state.runs.statuses == {"prompt": "ok", "shout": "ok", "report": "ok", "judge": "ok"}
        assert state.runs.history.last is result and state.notice is not None and state.notice.text.startswith("Run ok")

    asyncio.run(main())
    assert server.requests[0].body == {"text": "SAY GOOD"}
    assert {"prompt", "shout", "report", "judge"} <= set(records)  # each node's events reached the views


def test_run_from_a_node_reuses_the_results_upstream_and_keeps_the_runs() -> None:
    state, seen = make_state()

    async def main() -> None:
        CALLS.clear()
        with pytest.raises(FlowValidationError):
            state.run_from("report")  # nothing to reuse yet
        assert state.notice is not None and "Run the whole flow once first" in state.notice.text
        first = await state.run({"text": "x"})
        assert first is not None and CALLS == ["say x"]
        assert state.runs.inputs["text"] == "x"  # the inputs of a run from code are the next run's
        state.configure("report", {"type": "template", "config": {"template": "<{{shout.output.text}}>"}})
        state.select("report")
        second = await state.run_from()
        assert second is not None and second.outputs["report"]["text"] == "<SAY X>"
        assert CALLS == ["say x"]  # shout was not called again
        assert second.records["shout"].cached and second.records["prompt"].cached and not second.records["report"].cached
        assert state.runs.cached == {"prompt", "shout"}
        assert state.runs.history.last is second and state.runs.history.previous == [first]
        # a node's values are compared with the run before the last one in which it ran
        assert state.runs.history.before("report") is first and state.runs.history.before("shout") is None

    asyncio.run(main())
    run_changes = [c for c in seen if "run" in c]
    assert len(run_changes) == 4  # each run's start and end


def test_cancel_marks_the_run_cancelled_and_keeps_it_out_of_the_history() -> None:
    async def stall(text: str) -> dict[str, Any]:
        await asyncio.sleep(30)
        return {"text": text, "n": 0}

    state = WorkbenchState(three_nodes(), functions={"st_shout": stall})

    async def main() -> None:
        task = state.run()
        for _ in range(300):
            await asyncio.sleep(0.01)
            if state.runs.statuses.get("shout") == "running":
                break
        assert state.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert not state.runs.running and state.runs.statuses["shout"] == "cancelled"
        assert state.runs.history.last is None and state.notice is not None and "cancelled" in state.notice.text
        assert not state.cancel()

    asyncio.run(main())


def test_inputs_typed_as_text_are_checked_when_the_run_starts() -> None:
    data = three_nodes()
    data["inputs"]["items"] = {"type": "json", "default": [1]}
    state = WorkbenchState(data, functions={"st_shout": shout})
    state.set_input("items", "[1, 2")

    async def main() -> None:
        with pytest.raises(FlowValidationError, match="inputs.items"):
            state.run()
        assert not state.runs.running and state.notice is not None and state.notice.place == "run"
        state.set_input("items", "[1, 2]")
        result = await state.run()
        assert result is not None and result.ok

    asyncio.run(main())


def test_to_variable_hands_out_the_live_value_or_says_why_not() -> None:
    import __main__

    state, _ = make_state()
    with pytest.raises(FlowValidationError, match="no result yet"):
        state.to_variable("shout", "st_out")

    async def main() -> None:
        await state.run({"text": "hi"})

    asyncio.run(main())
    assert state.to_variable("shout", "st_out") == "st_out"
    assert vars(__main__)["st_out"] == {"text": "SAY HI", "n": 6} and state.runs.variables == {"st_out": "shout"}
    with pytest.raises(FlowValidationError, match="captured activations"):
        state.to_variable("shout", "st_act", what="activations")
    vars(__main__).pop("st_out", None)


def test_open_replaces_flow_runs_and_history_in_one_change(tmp_path: Path) -> None:
    state, seen = make_state()
    state.add_node("template", "extra", {"template": "z"})
    path = tmp_path / "other.flow.yaml"
    path.write_text("name: other\nnodes:\n  - id: only\n    type: template\n    config: {template: hi}\n")
    seen.clear()
    state.open(path)
    assert [n.id for n in state.spec.nodes] == ["only"] and not state.can_undo and not state.can_redo
    assert state.document is not None and state.document.path == path
    assert len(seen) == 1 and {"flow", "selection", "run", "file", "notice"} <= seen[0].topics
    saved = state.save(tmp_path / "copy.flow.yaml")
    assert "only" in saved.read_text() and state.document.path == saved
