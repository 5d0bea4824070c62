"""The workbench driven from Python, as a notebook user's clicks would drive it."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ipycytoscape")

from flow_fixtures import three_nodes as shared_three_nodes
from servers import Reply  # noqa: E402

from jupyter_flow import Flow, FlowValidationError, register_function  # noqa: E402
from jupyter_flow.spec import load_spec  # noqa: E402
from jupyter_flow.workbench import Workbench  # noqa: E402
from jupyter_flow.workbench.graph import default_positions, to_elements  # noqa: E402
from jupyter_flow.workbench.inspector import histogram_svg  # noqa: E402
from jupyter_flow.workbench.styles import STATUS_COLOURS, kind_colour, stylesheet  # noqa: E402
from jupyter_flow.workbench.timeline import bars, timeline_svg  # noqa: E402

QUICKSTART = Path(__file__).resolve().parents[2] / "notebooks" / "flows" / "quickstart.flow.yaml"
CALLS: dict[str, int] = {}


@register_function(name="wb_upper")
def _upper(text: str) -> dict[str, Any]:
    CALLS["upper"] = CALLS.get("upper", 0) + 1
    return {"text": text.upper(), "n": len(text)}


@register_function(name="wb_word_stats")
def _word_stats(text: str, top: int = 3) -> dict[str, Any]:
    from collections import Counter

    counts = Counter(text.split())
    return {"words": sum(counts.values()), "top": [{"word": w, "count": c} for w, c in counts.most_common(top)]}


def three_nodes() -> dict[str, Any]:
    return shared_three_nodes("wb_upper")


def mouseup(wb: Workbench, node: str, x: float, y: float) -> None:
    # The message ipycytoscape's front end sends when the mouse is released on a node.
    wb.graph.widget._handle_interaction(None, {"event": "mouseup", "widget": "node", "data": {"data": {"id": node}, "position": {"x": x, "y": y}}}, [])


def click(wb: Workbench, node: str) -> None:
    wb.graph.widget._handle_interaction(None, {"event": "click", "widget": "node", "data": {"data": {"id": node}}}, [])


# -- pure parts ----------------------------------------------------------------------------
def test_elements_carry_kind_colour_layout_position_and_edge_labels() -> None:
    data = three_nodes()
    data["layout"] = {"prompt": {"x": 10, "y": 20}}
    data["edges"][1]["when"] = "{{ shout.output.n > 2 }}"
    wb = Workbench(data)
    elements = {e["data"]["id"]: e for e in to_elements(wb.spec, statuses={"shout": "error"})}
    assert elements["prompt"]["position"] == {"x": 10.0, "y": 20.0}
    assert elements["prompt"]["data"]["colour"] == kind_colour("template") != kind_colour("python")
    assert "status-error" in elements["shout"]["classes"]
    assert elements["shout->report"]["data"]["label"].startswith("if shout.output.n > 2")
    assert "conditional" in elements["shout->report"]["classes"]
    # Every node not placed by the layout gets a spot of its own.
    guessed = default_positions(load_spec(QUICKSTART).model_copy(update={"layout": {}}))
    assert len(set(guessed.values())) == len(load_spec(QUICKSTART).nodes)
    selectors = {s["selector"] for s in stylesheet()}
    assert {f"node.status-{s}" for s in STATUS_COLOURS} <= selectors


def test_histogram_svg_has_one_bar_per_bin() -> None:
    svg = histogram_svg([1, 5, 0, 2], -1.0, 1.0)
    assert svg.count("<rect") == 4 and "<svg" in svg


# -- editing ---------------------------------------------------------------------------------
def test_add_nodes_from_palette_and_wire_by_clicking_source_then_target() -> None:
    wb = Workbench()
    wb.palette.value = "template"
    wb.add_button.click()
    wb.palette.value = "python"
    wb.add_button.click()
    first, second = wb.editor.node_ids()
    assert (first, second) == ("template_1", "python_1")
    assert [n.type for n in wb.spec.nodes] == ["template", "python"]
    # a new node starts with the required fields of its kind, and is flagged until filled in
    assert "template" in wb.spec.node(first).config
    wb.wire_toggle.value = True
    click(wb, first)
    assert "wire-source" in wb.node_classes(first)
    click(wb, second)
    assert [(e.source, e.target) for e in wb.spec.edges] == [(first, second)]
    assert "wire-source" not in wb.node_classes(first)
    assert [(e.data["source"], e.data["target"]) for e in wb.graph.widget.graph.edges] == [(first, second)]
    assert {n.data["id"] for n in wb.graph.widget.graph.nodes} == {first, second}
    # the whole widget tree serializes (what the browser receives)
    from ipywidgets.embed import embed_data

    state = embed_data(views=[wb.widget])["manager_state"]
    assert json.dumps(state)


def test_a_long_flow_without_layout_is_placed_in_bands_with_legible_labels() -> None:
    from jupyter_flow.workbench.graph import BAND_WIDTH, MIN_ZOOM, layered_positions, node_size
    from jupyter_flow.workbench.styles import MIN_LABEL_PX, NODE_FONT_PX

    ids = ["a_node_with_a_really_long_name_indeed"] + [f"n{i:02d}" for i in range(1, 30)]
    data = {"name": "long", "nodes": [{"id": i, "type": "template", "config": {"template": "x"}} for i in ids],
            "edges": [{"from": "start", "to": ids[0]}] + [{"from": a, "to": b} for a, b in zip(ids, ids[1:])]}
    wb = Workbench(data)
    positions = layered_positions(wb.spec)
    assert positions == {k: (p.x, p.y) for k, p in wb.spec.layout.items()}
    xs, ys = [x for x, _ in positions.values()], [y for _, y in positions.values()]
    # wrapped into bands about a pane wide, not one long line; no two nodes on one spot
    assert max(xs) < BAND_WIDTH and max(ys) - min(ys) > (max(xs) - min(xs)) / 2
    assert len(set(positions.values())) == len(ids)
    assert NODE_FONT_PX * MIN_ZOOM >= MIN_LABEL_PX and wb.graph.widget.min_zoom == MIN_ZOOM
    elements = {e["data"]["id"]: e for e in to_elements(wb.spec)}
    long_label = elements[ids[0]]["data"]["label"]
    assert "\u2026" in long_label and node_size(long_label)[0] == elements[ids[0]]["data"]["width"] <= 230
    # the start node: left of the first node with room between them
    start, first = elements["__start__"], elements[ids[0]]
    assert start["position"]["x"] + 28 + 60 <= first["position"]["x"] - first["data"]["width"] / 2
    assert start["position"]["y"] == first["position"]["y"]
    # a graph bigger than the view is shown from its start at the legible zoom
    assert wb.graph.widget.cytoscape_layout["zoom"] == pytest.approx(MIN_ZOOM, abs=1e-3) and not wb.graph.widget.cytoscape_layout["fit"]


def test_add_node_goes_beside_the_selected_node_and_opens_its_settings() -> None:
    wb = Workbench(three_nodes())
    wb.select("shout")
    wb.tabs.selected_index = 1
    new = wb.add_node("template")
    at, beside = wb.spec.layout["shout"], wb.spec.layout[new]
    assert beside.x > at.x and abs(beside.y - at.y) < 150
    assert all((p.x, p.y) != (beside.x, beside.y) for k, p in wb.spec.layout.items() if k != new)
    assert wb.selected == ("node", new) and wb.tabs.selected_index == 0 and new in wb.settings.text.value
    assert "Applied" in wb.feedback["edit"].value and wb.message.value == ""
    # Apply reports beside Apply
    wb.settings.text.value = "type: template\nconfig: {template: hello}\n"
    wb.settings.apply_button.click()
    assert "Applied" in wb.feedback["settings"].value and wb.feedback["edit"].value == ""
    # Apply again with nothing changed: no success is claimed for an edit that did not happen
    wb.settings.apply_button.click()
    assert "Nothing changed" in wb.feedback["settings"].value and "Applied" not in wb.feedback["settings"].value


def test_kinds_that_only_tools_write_are_not_offered() -> None:
    from jupyter_flow.palette import palette

    offered = [entry["kind"] for entry in palette()]
    assert "placeholder" not in offered and "python" in offered
    assert list(Workbench().palette.options) == offered


def test_a_selected_node_keeps_its_problem_border() -> None:
    chosen = {s["selector"]: s["css"] for s in stylesheet()}["node.chosen"]
    assert not any(key.startswith("border") for key in chosen) and chosen["underlay-opacity"] > 0


def test_invalid_edits_keep_the_last_good_flow_and_say_why() -> None:
    wb = Workbench(three_nodes())
    before = wb.spec
    with pytest.raises(FlowValidationError, match="cycle"):
        wb.connect("report", "prompt")
    assert wb.spec == before
    # said under the toolbar, where the edit was asked for, not below the run bar
    assert "cycle" in wb.feedback["edit"].value and wb.error and wb.message.value == ""
    # a typo in the YAML editor: the node is unchanged and the panel says which field
    wb.select("shout")
    wb.settings.text.value = "type: python\nconfig: {function: wb_upper}\nretri: 3\n"
    wb.settings.apply_button.click()
    assert wb.spec == before
    assert "retri" in wb.settings.problems.value
    wb.settings.text.value = "type: python\nconfig: [unclosed\n"
    wb.settings.apply_button.click()
    assert "does not parse" in wb.settings.problems.value and wb.spec == before
    with pytest.raises(FlowValidationError, match="exists"):
        wb.configure("shout", {"id": "prompt", "type": "python", "config": {"function": "wb_upper"}})
    assert wb.spec == before


def test_undo_takes_back_the_last_edit_only() -> None:
    wb = Workbench(three_nodes())
    wb.delete_node("shout")
    assert wb.editor.node_ids() == ["prompt", "report"] and wb.spec.edges == []
    wb.connect("prompt", "report", label="direct")
    assert wb.undo() == "wire prompt -> report"
    assert wb.spec.edges == [] and wb.editor.node_ids() == ["prompt", "report"]
    wb.undo_button.click()
    assert wb.editor.node_ids() == ["prompt", "shout", "report"]
    assert [(e.source, e.target) for e in wb.spec.edges] == [("prompt", "shout"), ("shout", "report")]
    assert len(wb.graph.widget.graph.edges) == 2


def test_redo_brings_back_what_undo_took_until_the_next_edit() -> None:
    wb = Workbench(three_nodes())
    assert wb.redo_button.disabled
    wb.delete_node("shout")
    wb.undo_button.click()
    assert wb.editor.node_ids() == ["prompt", "shout", "report"] and len(wb.graph.widget.graph.nodes) == 3
    assert not wb.redo_button.disabled and wb.redo_button.tooltip == "Redo: delete node shout"
    wb.redo_button.click()
    assert wb.editor.node_ids() == ["prompt", "report"] and len(wb.graph.widget.graph.nodes) == 2
    assert "Redone: delete node shout" in wb.feedback["edit"].value and wb.redo_button.disabled
    wb.undo()
    mouseup(wb, "report", 500, 40)  # a drag is an edit too: what was undone is gone
    assert wb.redo_button.disabled and wb.redo() is None and "Nothing to redo" in wb.feedback["edit"].value


def test_problems_show_on_the_node_and_in_the_panel_before_any_run() -> None:
    wb = Workbench(three_nodes())
    wb.select("report")
    wb.settings.text.value = "type: template\nconfig:\n  template: '{{ shuot.output.text }}'\n"
    wb.settings.apply_button.click()
    assert "problem" in wb.node_classes("report")
    assert "shuot" in wb.settings.problems.value and "shuot" in wb.problems_view.value
    assert wb.graph.node_widget("report").data["label"].startswith("report \u26a0")
    with pytest.raises(FlowValidationError, match="shuot"):
        wb.run()
    wb.configure("report", {"type": "template", "config": {"template": "{{ shout.output.text }}"}})
    assert "problem" not in wb.node_classes("report") and wb.problems() == []


def test_renaming_a_node_moves_its_edges_and_position() -> None:
    wb = Workbench(three_nodes())
    old = wb.spec.layout["shout"]
    new_id = wb.configure("shout", "id: loud\ntype: python\nconfig: {function: wb_upper, input_mapping: {text: '{{prompt.output.text}}'}}\n")
    assert new_id == "loud" and wb.spec.layout["loud"] == old
    assert [(e.source, e.target) for e in wb.spec.edges] == [("prompt", "loud"), ("loud", "report")]
    # report still names the old id: flagged, not refused
    assert any(p.node == "report" for p in wb.problems())


def test_dragging_a_node_keeps_its_position_in_the_layout() -> None:
    wb = Workbench(three_nodes())
    mouseup(wb, "shout", 321.5, 77.25)
    assert wb.spec.layout["shout"].x == 321.5 and wb.spec.layout["shout"].y == 77.2
    assert wb.graph.node_widget("shout").position == {"x": 321.5, "y": 77.25}
    assert wb.undo() == "move shout"


def test_edge_click_opens_its_settings_and_a_condition_shows_as_label() -> None:
    wb = Workbench(three_nodes())
    wb.graph.widget._handle_interaction(None, {"event": "click", "widget": "edge", "data": {"data": {"id": "shout->report"}}}, [])
    assert "Edge shout-&gt;report" in wb.settings.title.value
    wb.settings.text.value = "when: '{{ shout.output.n > 100 }}'\n"
    wb.settings.apply_button.click()
    assert wb.spec.edges[1].when == "{{ shout.output.n > 100 }}"
    assert "if shout.output.n > 100" in wb.graph.edge_widget("shout->report").data["label"]
    wb.delete_button.click()
    assert [(e.source, e.target) for e in wb.spec.edges] == [("prompt", "shout")]


# -- running -----------------------------------------------------------------------------------
def test_run_from_a_running_loop_colours_nodes_live_and_keeps_the_loop_free() -> None:
    gate = threading.Event()
    seen: list[str] = []

    def slow(text: str) -> dict[str, Any]:
        gate.wait(5)
        return {"text": text, "n": len(text)}

    async def main() -> None:
        wb = Workbench(three_nodes())
        wb.register("wb_slow", slow)
        wb.configure("shout", {"type": "python", "config": {"function": "wb_slow", "input_mapping": {"text": "{{prompt.output.text}}"}}})
        wb.inputs.set("text", "hello")
        task = wb.run()
        assert wb.cancel_button.disabled is False and wb.run_button.disabled
        # the loop keeps turning while the node works: this coroutine observes the states
        for _ in range(200):
            await asyncio.sleep(0.01)
            if "status-running" in wb.node_classes("shout"):
                break
        seen.append(wb.node_classes("shout"))
        seen.append(wb.node_classes("report"))
        assert "status-ok" in wb.node_classes("prompt")
        gate.set()
        result = await task
        assert result is not None and result.ok
        assert result.outputs["report"]["text"] == "say hello (9)"
        for node in ("prompt", "shout", "report"):
            assert "status-ok" in wb.node_classes(node)
        assert wb.run_button.disabled is False and wb.cancel_button.disabled
        assert "Run ok" in wb.message.value
        svg = wb.timeline.value
        assert svg.count("class='jf-bar'") == 3

    asyncio.run(main())
    assert "status-running" in seen[0] and "status-pending" in seen[1]


def test_cancel_stops_the_run_and_marks_nodes_cancelled() -> None:
    async def stall(text: str) -> dict[str, Any]:
        await asyncio.sleep(30)
        return {"text": text}

    async def main() -> None:
        wb = Workbench(three_nodes(), functions={"wb_stall": stall})
        wb.configure("shout", {"type": "python", "config": {"function": "wb_stall", "input_mapping": {"text": "{{prompt.output.text}}"}}})
        task = wb.run()
        for _ in range(200):
            await asyncio.sleep(0.01)
            if wb.statuses.get("shout") == "running":
                break
        t0 = time.perf_counter()
        wb.cancel_button.click()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert time.perf_counter() - t0 < 5
        assert "status-cancelled" in wb.node_classes("shout")
        assert "status-ok" in wb.node_classes("prompt")
        assert "status-cancelled" not in wb.node_classes("report")
        assert "cancelled" in wb.message.value and not wb.running

    asyncio.run(main())


def test_run_from_here_reuses_upstream_results_and_picks_up_edits() -> None:
    async def main() -> None:
        wb = Workbench(three_nodes())
        CALLS.clear()
        first = await wb.run({"text": "x"})
        assert first is not None and CALLS["upper"] == 1
        wb.configure("report", {"type": "template", "config": {"template": "<{{shout.output.text}}>"}})
        wb.select("report")
        wb.run_from_button.click()
        assert wb.state.runs.task is not None
        second = await wb.state.runs.task
        assert second is not None and second.ok
        assert CALLS["upper"] == 1  # shout was not called again
        assert second.records["shout"].cached and second.records["prompt"].cached
        assert not second.records["report"].cached
        assert second.outputs["report"]["text"] == "<SAY X>"
        assert "cached" in wb.node_classes("shout") and "cached" not in wb.node_classes("report")
        third = await wb.run_from("shout", {"text": "x"})
        assert third is not None and CALLS["upper"] == 2 and not third.records["shout"].cached

    asyncio.run(main())


def test_run_against_a_loopback_model_server(serve: Any) -> None:
    server = serve({"/predict": lambda req: Reply(body={"label": "positive", "score": 0.9, "echo": req.body})})
    data = three_nodes()
    data["nodes"][1] = {"id": "shout", "type": "http", "config": {"endpoint": f"{server.url}/predict", "input_mapping": {"text": "{{prompt.output.text}}"}}}
    data["nodes"][2]["config"]["template"] = "{{shout.output.label}}"

    async def main() -> None:
        wb = Workbench(data)
        result = await wb.run({"text": "good"})
        assert result is not None and result.outputs["report"]["text"] == "positive"
        page = wb.inspect("shout")
        assert "positive" in page and "say good" in page and "http_status" in page

    asyncio.run(main())
    assert server.requests[0].body == {"text": "say good"}


def test_a_failed_node_shows_its_error_and_traceback() -> None:
    def broken(text: str) -> dict[str, Any]:
        raise ValueError(f"cannot handle {text!r}")

    async def main() -> None:
        wb = Workbench(three_nodes(), functions={"wb_broken": broken})
        wb.configure("shout", {"type": "python", "config": {"function": "wb_broken", "input_mapping": {"text": "{{prompt.output.text}}"}}})
        result = await wb.run({"text": "zz"})
        assert result is not None and result.status == "error"
        assert "status-error" in wb.node_classes("shout")
        assert "status-skipped" in wb.node_classes("report")
        page = wb.inspect("shout")
        assert "cannot handle" in page and "Traceback" in page and "in broken" in page

    asyncio.run(main())


def test_inputs_form_follows_the_flow_inputs_and_saves_uploads_to_a_file() -> None:
    wb = Workbench(three_nodes())
    wb.configure_flow({"name": "three", "inputs": {"text": {"type": "string", "default": "a"}, "doc": {"type": "file"},
                                                   "n": {"type": "integer", "default": 2}, "loud": {"type": "boolean"}}})
    assert set(wb.inputs.fields) == {"text", "doc", "n", "loud"}
    upload = wb.inputs.widget.children[1].children[2]
    # what the browser's file picker sends through the widget's comm
    upload.set_state({"value": [{"name": "contract.pdf", "type": "application/pdf", "size": 4, "content": memoryview(b"%PDF"), "last_modified": 0}]})
    path = Path(wb.inputs.fields["doc"].value)
    assert path.read_bytes() == b"%PDF" and path.name == "contract.pdf"
    values = wb.inputs.values(wb.spec)
    assert values["n"] == 2 and values["loud"] is False and values["doc"] == str(path)
    wb.inputs.close()
    assert not path.exists()


# -- inspecting ------------------------------------------------------------------------------------
def test_inspector_shows_tensor_summary_histogram_and_to_variable_hands_back_the_live_tensor() -> None:
    torch = pytest.importorskip("torch")
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    torch.manual_seed(0)
    made: dict[str, Any] = {}

    def embed(n: int) -> dict[str, Any]:
        made["t"] = torch.randn(n, 8)
        return {"embedding": made["t"], "rows": [{"i": i, "norm": float(made["t"][i].norm())} for i in range(n)]}

    async def main() -> Workbench:
        wb = Workbench({"name": "t", "nodes": [{"id": "embed", "type": "python", "config": {"function": "wb_embed", "input_mapping": {"n": 4}}}]},
                       functions={"wb_embed": embed})
        await wb.run()
        return wb

    wb = asyncio.run(main())
    click(wb, "embed")
    page = wb.inspector.value
    assert wb.tabs.selected_index == 1
    assert "4\u00d78" in page and "float32" in page and "Tensors" in page
    assert "jf-hist" in page and "<table" in page and "norm" in page
    # the tensor once, in full with its histogram first, above the trees (named there in a line)
    assert page.count("jf-hist") == 1 and page.count("<div class='jf-tensor'>") == 1
    assert page.index("jf-hist") < page.index("<i>shape</i>") < page.index("Outputs")
    assert wb.variable_name.value == "embed_output"
    wb.variable_button.click()
    assert shell.user_ns["embed_output"]["embedding"] is made["t"]
    name = wb.to_variable("embed", "emb_inputs", what="inputs")
    assert shell.user_ns[name] == {"function": "wb_embed", "input_mapping": {"n": 4}}
    with pytest.raises(FlowValidationError):
        wb.to_variable("embed", "not a name")


def test_to_variable_on_a_skipped_node_says_so_instead_of_handing_back_nothing() -> None:
    from IPython.core.interactiveshell import InteractiveShell

    shell = InteractiveShell.instance()
    data = three_nodes()
    data["edges"][1]["when"] = "{{ shout.output.n > 100 }}"

    async def main() -> Workbench:
        wb = Workbench(data)
        result = await wb.run({"text": "hi"})
        assert result is not None and result.records["report"].status == "skipped"
        return wb

    wb = asyncio.run(main())
    click(wb, "report")
    shell.user_ns.pop("report_output", None)
    wb.variable_button.click()
    assert "report_output" not in shell.user_ns
    said = wb.feedback["inspect"].value
    assert "skipped" in said and "now in the variable" not in said and wb.error
    with pytest.raises(FlowValidationError, match="skipped"):
        wb.to_variable("report", "r")
    # the edit and run places stay quiet: the message is beside the button that asked
    assert wb.feedback["edit"].value == "" and wb.message.value == ""


def test_timeline_shows_parallel_nodes_overlapping() -> None:
    async def nap(ms: int) -> dict[str, Any]:
        await asyncio.sleep(ms / 1000)
        return {"ms": ms}

    data = {"name": "par", "nodes": [
        {"id": "a", "type": "python", "config": {"function": "wb_nap", "input_mapping": {"ms": 150}}},
        {"id": "b", "type": "python", "config": {"function": "wb_nap", "input_mapping": {"ms": 150}}},
        {"id": "c", "type": "template", "config": {"template": "{{a.output.ms + b.output.ms}}"}}],
        "edges": [{"from": "a", "to": "c"}, {"from": "b", "to": "c"}]}

    async def main() -> None:
        wb = Workbench(data, functions={"wb_nap": nap})
        result = await wb.run()
        assert result is not None
        rows = {b.node: b for b in bars(result)}
        a, b, c = rows["a"], rows["b"], rows["c"]
        assert a.start_s < b.start_s + b.duration_s and b.start_s < a.start_s + a.duration_s
        assert c.start_s >= max(a.start_s + a.duration_s, b.start_s + b.duration_s) - 0.005
        assert timeline_svg(result) == wb.timeline.value

    asyncio.run(main())


# -- files -------------------------------------------------------------------------------------------
def test_save_and_open_keep_layout_and_the_users_comments(tmp_path: Path) -> None:
    from jupyter_flow_examples.models import CLAUSE_LABELS, make_tiny_bert

    path = tmp_path / "flows" / "q.flow.yaml"
    path.parent.mkdir()
    make_tiny_bert(tmp_path / "models" / "clause-bert", labels=CLAUSE_LABELS)  # the model the flow names
    path.write_text(QUICKSTART.read_text())
    wb = Workbench(path)
    mouseup(wb, "stats", 300, 200)
    wb.add_node("template", "tail", {"template": "{{report.output.text}}!"}, position=(660, 80))
    wb.connect("report", "tail")
    wb.save()
    text = path.read_text()
    assert "# counts words with a function from the notebook" in text
    assert "# The quickstart flow" in text
    again = Workbench(path)
    assert again.spec.layout["stats"].x == 300 and again.spec.layout["stats"].y == 200
    assert again.spec.layout["tail"].x == 660
    assert again.spec == wb.spec
    assert Flow.load(path).problems() == []
    # saving to another path writes a fresh file that reads back the same
    other = wb.save(tmp_path / "copy.flow.yaml")
    assert load_spec(other) == wb.spec
    wb.open(other)
    assert wb.path_text.value == str(other) and not wb.editor.can_undo


def test_opening_a_broken_file_names_line_and_keeps_the_flow(tmp_path: Path) -> None:
    wb = Workbench(three_nodes())
    bad = tmp_path / "bad.flow.yaml"
    bad.write_text("nodes:\n  - id: a\n    type: python\n   config: {}\n")
    with pytest.raises(FlowValidationError, match="line 4"):
        wb.open(bad)
    assert wb.editor.node_ids() == ["prompt", "shout", "report"] and "line 4" in wb.feedback["files"].value


def test_export_button_is_enabled() -> None:
    wb = Workbench(three_nodes())
    assert not wb.export_button.disabled
