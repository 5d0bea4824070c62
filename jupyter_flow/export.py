"""Export a flow to a self-contained notebook that papermill runs on a schedule.

The notebook carries the flow spec, so it runs without the flow file. Its cell tagged
`parameters` holds the names cron lines and Airflow tasks rely on::

    inputs        one run's inputs (default: the flow's declared input defaults)
    inputs_path   a folder, glob or JSONL file for a batch; when set it wins over `inputs`
    output_dir    where results.jsonl, traces/ and summary.json go
    device        device for model nodes that say `device: auto`
    endpoints     http node endpoints to override, by node id
    concurrency   items run at once in a batch
    fail_fast     stop at the first failed item (the notebook, and papermill, then fail)
    max_failures  failed items accepted (a number, "5%" or 0.05); beyond it the last cell fails
    engine        "local" (in the kernel) or "ray" (a batch on a Ray cluster: RAY_ADDRESS, else a local one)
    flow_dir      the folder relative paths in the flow are read from (None: the working
                  folder when the flow's files are there, else the folder it was exported from)
    cache         None (every node runs), True or a folder: the node cache unchanged nodes come from
    rerun_changed a batch resuming results of another version of the flow runs their items again
                  (False: it refuses, naming them)

Every value is written as a plain Python literal (a date as its ISO text, infinity as
`float("inf")`), so the cells run wherever the notebook goes. The cells after it hold the
flow's spec (and the relative paths it names), pass it with the parameters to the one
public entry point `jupyter_flow.run_exported` (which checks every parameter first, then
runs the flow once or as a batch, locally or on Ray, with a progress bar), show the
summary it returns as a table and a per-node timing chart, and end with
`summary.check()`, which fails the notebook (and papermill) when more items failed than
`max_failures` allows. The notebook names nothing else of the package, so a notebook
exported today keeps working when the package's insides change.
"""

from __future__ import annotations

import datetime
import hashlib
import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_flow.atomic import FileChangedError, FileStamp, write_atomic
from jupyter_flow.errors import MissingDependencyError
from jupyter_flow.export_functions import carry_functions
from jupyter_flow.spec import START
from jupyter_flow.version import __version__

if TYPE_CHECKING:
    import argparse

    from jupyter_flow.flow import Flow
    from jupyter_flow.nodes.base import Node

__all__ = ["PARAMETERS", "add_to_cli", "cells_digest", "export_notebook", "flow_files", "literal", "notebook_for"]

#: The names in the exported notebook's `parameters` cell, in order.
PARAMETERS = (
    "inputs", "inputs_path", "output_dir", "device", "endpoints", "concurrency", "fail_fast", "max_failures", "engine",
    "flow_dir", "cache", "rerun_changed",
)

DEFAULT_CONCURRENCY = 4


def _md(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(text: Any) -> str:
    return f"`{_md(text).replace('`', chr(39))}`"


def _intro(flow: Flow) -> str:
    spec = flow.spec
    upstream: dict[str, list[str]] = {n.id: [] for n in spec.nodes}
    for edge in spec.edges:
        if edge.source != START and edge.target in upstream:
            upstream[edge.target].append(edge.source + (" (if a condition holds)" if edge.when else ""))
    lines = [f"# {spec.name}", ""]
    if spec.description:
        lines += [spec.description, ""]
    lines += [
        f"This notebook runs the flow **{spec.name}** (exported by jupyter-flow {__version__}). It holds the "
        "whole flow, so it runs without the flow file: open it and run all cells, or run it unattended "
        "with papermill:",
        "",
        "```sh",
        "papermill THIS.ipynb run.ipynb -p inputs_path inbox/ -p output_dir runs/today",
        "```",
        "",
        "## Parameters (the cell tagged `parameters`)",
        "",
        "| name | what it sets |",
        "|---|---|",
        "| `inputs` | the inputs of one run (default: the flow's declared defaults) |",
        "| `inputs_path` | a folder or glob (one run per file) or a JSONL file (one run per line); when set it wins over `inputs` |",
        "| `output_dir` | where `results.jsonl`, `traces/` and `summary.json` go |",
        "| `device` | device for model nodes that say `device: auto` (`cpu`, `cuda`, `cuda:1`) |",
        "| `endpoints` | http node endpoints to use instead of the flow's, by node id |",
        "| `concurrency` | how many items run at once |",
        "| `fail_fast` | stop at the first failed item and fail the notebook |",
        "| `max_failures` | failed items accepted (a number, `'5%'` or `0.05`); beyond it the last cell fails "
        "the notebook (default 0: any failed item fails it) |",
        "| `engine` | `local` (in this kernel) or `ray`: a batch on a Ray cluster (`RAY_ADDRESS`, else a local one), "
        "one loaded flow per actor, `concurrency` items at once in each |",
        "| `flow_dir` | the folder the flow's relative paths (models, rule files) are read from; default: the "
        "working folder when the flow's files (`FLOW_FILES`) are there, else the folder it was exported from |",
        "| `cache` | `None` (every node runs), `True` (the default folder) or a folder: nodes whose kind, inputs "
        "and code are unchanged take their results from the node cache |",
        "| `rerun_changed` | a batch resumes only results this flow made; results of another version of the flow "
        "stop it (naming them) unless this is `True`: then their items run again, the old results moved aside |",
        "",
        "Every parameter is checked before anything runs; a wrong one fails the first cell that runs the flow, "
        "naming the parameter, its value and the type it takes. File inputs are read relative to the working folder.",
        "To run this notebook on another machine, copy it with the files listed in `FLOW_FILES` (keeping their "
        "paths relative to the notebook) and run papermill from that folder.",
        "",
        f"## The nodes ({len(spec.nodes)})",
        "",
        "| node | kind | what it does | runs after |",
        "|---|---|---|---|",
    ]
    own: dict[str, Node] = {}  # the validated flow's node objects (each says what it does), not its variants'
    for obj in flow.plan.node_objects():
        own.setdefault(obj.id, obj)
    for node in spec.nodes:
        after = ", ".join(upstream[node.id]) or "the start"
        lines.append(f"| `{node.id}` | {node.type} | {_md(own[node.id].describe())} | {_md(after)} |")
    if spec.inputs:
        lines += ["", "## The flow's inputs", "", "| input | type | default | description |", "|---|---|---|---|"]
        for name, inp in spec.inputs.items():
            default = _code(inp.default) if inp.default is not None else ("(required)" if inp.is_required else "")
            lines.append(f"| `{name}` | {inp.type} | {default} | {_md(inp.description or '')} |")
    return "\n".join(lines)


def _plain(value: Any) -> Any:
    """`value` with what a Python literal cannot hold made plain: dates and times as ISO
    text, other objects as text."""
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, Mapping):
        return {str(k) if not isinstance(k, (int, float, bool)) else k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def literal(value: Any, indent: int = 0, width: int = 100) -> str:
    """Python source for `value` (plain data: see `_plain`) that evaluates back to it:
    `float("inf")` and `float("nan")` for the floats without a literal; short values on
    one line, longer mappings and lists one entry a line, indented by 4 from `indent`."""
    value = _plain(value)
    flat = _flat(value)
    if len(flat) + indent <= width or not isinstance(value, (dict, list)) or not value:
        return flat
    pad = " " * (indent + 4)
    if isinstance(value, dict):
        inner = [f"{pad}{_flat(k)}: {literal(v, indent + 4, width)}" for k, v in value.items()]
        return "{\n" + ",\n".join(inner) + ",\n" + " " * indent + "}"
    inner = [f"{pad}{literal(v, indent + 4, width)}" for v in value]
    return "[\n" + ",\n".join(inner) + ",\n" + " " * indent + "]"


def _flat(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return f'float("{value}")'
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_flat(k)}: {_flat(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(_flat(v) for v in value) + "]"
    return repr(value)


def _parameters(flow: Flow, output_dir: str) -> str:
    defaults = {name: inp.default for name, inp in flow.spec.inputs.items() if inp.default is not None}
    return "\n".join(
        [
            f"inputs = {literal(defaults)}  # one run: the flow's inputs (paths: from the working folder)",
            "inputs_path = None  # a batch: a folder, glob or JSONL file (wins over `inputs`)",
            f"output_dir = {output_dir!r}  # results.jsonl, traces/ and summary.json go here",
            "device = None  # e.g. 'cpu', 'cuda', 'cuda:1' for model nodes with `device: auto`",
            "endpoints = {}  # {node id: URL} to call instead of the flow's endpoints",
            f"concurrency = {DEFAULT_CONCURRENCY}  # items run at once",
            "fail_fast = False  # stop at the first failed item (and fail the notebook)",
            "max_failures = 0  # failed items accepted: a number, '5%' or 0.05; beyond it the notebook fails",
            "engine = 'local'  # 'ray': run a batch on a Ray cluster (RAY_ADDRESS, else a local one)",
            "flow_dir = None  # folder of the flow's models and rule files (None: here, else FLOW_DIR below)",
            "cache = None  # True or a folder: unchanged nodes' results come from the node cache",
            "rerun_changed = False  # True: items whose results another version of the flow made run again",
        ]
    )


def flow_files(flow: Flow) -> list[str]:
    """The relative paths the flow's node configs name (models, rule files, templates,
    modules of `python` nodes) that exist beside the flow file: what has to travel with
    an exported notebook."""
    if flow.source is None:
        return []
    base = flow.source.resolve().parent
    found: dict[str, None] = {}

    def walk(value: Any) -> None:
        if isinstance(value, Mapping):
            for v in value.values():
                walk(v)
        elif isinstance(value, (list, tuple)):
            for v in value:
                walk(v)
        elif isinstance(value, str) and value and "{{" not in value and "\n" not in value and len(value) < 300:
            candidates = [value]
            if ":" in value and value.split(":", 1)[0].isidentifier():  # module:function of a python node
                candidates.append(value.split(":", 1)[0] + ".py")
            for text in candidates:
                path = Path(text)
                if not path.is_absolute() and not text.startswith("~") and (base / path).exists():
                    found[path.as_posix()] = None

    for node in flow.spec.nodes:
        walk(node.config)
    return list(found)


def _spec_data(flow: Flow) -> dict[str, Any]:
    """The spec as `spec_to_dict` gives it, but with its Python values (an infinite
    default stays infinite, where JSON would make it null); `literal` writes them out."""
    body = flow.spec.model_dump(mode="python", by_alias=True, exclude_defaults=True)
    body.pop("spec_version", None)
    return {"spec_version": flow.spec.spec_version, **body}


def _spec_cell(flow: Flow) -> str:
    origin = str(flow.source.resolve().parent) if flow.source else None
    files = flow_files(flow)
    return "\n".join(
        [
            f"FLOW_SPEC = {literal(_spec_data(flow))}",
            "# Relative paths in the flow (models, rule files) are read from `flow_dir`; by default from the",
            "# working folder when these files are there, else from the folder the flow was exported from.",
            f"FLOW_FILES = {literal(files)}",
            f"FLOW_DIR = {origin!r}",
        ]
    )


#: The run cell: the parameters go, as they are, to the one public entry point.
_RUN_CELL = (
    "import jupyter_flow\n\nsummary = jupyter_flow.run_exported(\n    FLOW_SPEC,\n"
    + "".join(f"    {name}={name},\n" for name in PARAMETERS)
    + "    exported_from=FLOW_DIR,\n    flow_files=FLOW_FILES,\n)\nsummary"
)

#: The last cell: the notebook fails when the batch failed by the `max_failures` rule.
_CHECK_CELL = """\
# Fails (and papermill exits non-zero) when more items failed than `max_failures` allows.
summary.check()"""


_RESULTS_CELL = """\
from IPython.display import HTML, Markdown, display

print(summary.to_text())
display(Markdown(summary.results_markdown(limit=100)))"""

_OUTPUTS_CELL = """\
import json


def _shown(value):
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text[:200].replace("|", "&#124;").replace("\\n", " ")


_rows = summary.results()[:100]
_names = sorted({name for r in _rows for name in (r.get("result") or {})})
_table = ["| item | " + " | ".join(_names) + " |", "|---|" + "---|" * len(_names)]
_table += [f"| {r['id']} | " + " | ".join(_shown((r.get("result") or {}).get(n)) for n in _names) + " |" for r in _rows]
display(Markdown("\\n".join(_table)))"""

_CHART_CELL = """\
try:
    import matplotlib.pyplot as plt
except ImportError:  # no plotting library: an HTML bar chart does the job
    plt = None

if plt is not None and summary.node_timing:
    names = list(summary.node_timing)
    means_ms = [summary.node_timing[n]["mean_s"] * 1000 for n in names]
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(names) + 1))
    ax.barh(names, means_ms)
    ax.invert_yaxis()
    ax.set_xlabel("mean milliseconds per item")
    ax.set_title("time per node")
    plt.show()
else:
    display(HTML(summary.timing_html()))"""


#: The longest folder name an export makes from a flow's name (file systems take 255 bytes).
MAX_STEM_CHARS = 100


def _name_stem(name: str) -> str:
    """`name` as a folder name: safe characters only, and a long one cut with a digest of
    the whole name (two long names never share a folder)."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-.") or "flow"
    if len(stem) <= MAX_STEM_CHARS:
        return stem
    digest = hashlib.blake2b(name.encode("utf-8", "surrogatepass"), digest_size=8).hexdigest()
    return f"{stem[: MAX_STEM_CHARS - len(digest) - 1]}-{digest}"


def notebook_for(flow: Flow, *, output_dir: str | None = None) -> Any:
    """The notebook (an `nbformat` NotebookNode) that runs `flow`; see the module docstring."""
    try:
        import nbformat
        from nbformat import v4
    except ImportError:
        raise MissingDependencyError("nbformat", "export", "exporting a flow to a notebook") from None

    flow.validate()
    functions = carry_functions(flow)
    out = output_dir or f"{_name_stem(flow.name)}-output"
    cells = [
        v4.new_markdown_cell(_intro(flow)),
        v4.new_code_cell(_parameters(flow, out), metadata={"tags": ["parameters"]}),
        *(
            [
                v4.new_markdown_cell(
                    "## Functions from the notebook\n\nThe `python` nodes call these functions, registered in the "
                    "notebook the flow was built in; their code (and what it imports) is copied here."
                ),
                v4.new_code_cell(functions),
            ]
            if functions
            else []
        ),
        v4.new_markdown_cell(
            "## 1. The flow\n\nThe flow's spec is written out below, so this notebook needs no flow file."
        ),
        v4.new_code_cell(_spec_cell(flow)),
        v4.new_markdown_cell(
            "## 2. Run it\n\n`jupyter_flow.run_exported` checks every node and reference before anything "
            "runs; `endpoints` replaces the endpoints of the http nodes it names. "
            "With `inputs_path` set, the flow runs once per file (or JSONL line), "
            "`concurrency` at a time; otherwise it runs once with `inputs`. Each finished item is appended "
            "to `output_dir/results.jsonl` at once, with its trace in `output_dir/traces/`. A batch resumes: "
            "items already in `results.jsonl` are not run again. A failed item is recorded and the batch goes "
            "on, unless `fail_fast` is set: then this cell fails, naming the item and the node. Only one batch "
            "runs on an `output_dir` at a time; a single run moves the earlier results aside."
        ),
        v4.new_code_cell(_RUN_CELL),
        v4.new_markdown_cell(
            "## 3. Results\n\nCounts, the failed items with the node that failed, and a table of the items "
            "(the whole set is in `results.jsonl`; `summary.json` has these counts and timings)."
        ),
        v4.new_code_cell(_RESULTS_CELL),
        *(
            [v4.new_markdown_cell("The flow's declared outputs, per item:"), v4.new_code_cell(_OUTPUTS_CELL)]
            if flow.spec.outputs
            else []
        ),
        v4.new_markdown_cell("## 4. Time per node\n\nThe mean time each node took per item."),
        v4.new_code_cell(_CHART_CELL),
        v4.new_markdown_cell(
            "## 5. Did it succeed?\n\nThe last cell fails when more items failed than `max_failures` "
            "allows (by default: any), naming the counts and the failed items, so that papermill, cron "
            "and Airflow see the failure."
        ),
        v4.new_code_cell(_CHECK_CELL),
    ]
    nb = v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    nb.metadata["jupyter_flow"] = {"flow": flow.name, "version": __version__, "spec_version": flow.spec.spec_version}
    nbformat.validate(nb)
    return nb


#: A notebook at the export's path larger than this is not read to tell whether it is one
#: jupyter-flow wrote: it is refused as a notebook someone else made (unless `force`).
MAX_EXISTING_BYTES = 64 * 1024 * 1024


def cells_digest(nb: Any) -> str:
    """A digest of a notebook's cells, their kind and source: what an export writes and a
    person edits (outputs, execution counts and metadata left out: running the notebook
    is not editing it)."""
    body = [[cell.get("cell_type"), _source(cell.get("source"))] for cell in nb.get("cells") or [] if isinstance(cell, Mapping)]
    return hashlib.sha256(json.dumps(body, ensure_ascii=False).encode("utf-8", "surrogatepass")).hexdigest()


def _source(value: Any) -> str:
    return "".join(map(str, value)) if isinstance(value, list) else str(value or "")


def _why_not_replace(target: Path) -> tuple[str | None, FileStamp | None]:
    """Why the file at `target` must not be replaced by an export (None: it may be), and
    its stamp as read (for the write to check it did not change meanwhile)."""
    if not target.exists() and not target.is_symlink():
        return None, FileStamp(None, None)
    if not target.is_file():
        return "it is not a file", None
    if target.stat().st_size > MAX_EXISTING_BYTES:
        return "it is not a notebook jupyter-flow exported (too large to be one)", None
    data = target.read_bytes()
    try:
        nb = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
        return "it is not a notebook jupyter-flow exported (not notebook JSON)", None
    ours = nb.get("metadata", {}).get("jupyter_flow") if isinstance(nb, dict) and isinstance(nb.get("metadata"), dict) else None
    if not isinstance(ours, dict) or "cells_digest" not in ours:
        return "it is not a notebook jupyter-flow exported (or one exported before exports were marked)", None
    if ours["cells_digest"] != cells_digest(nb):
        return "its cells were changed since jupyter-flow exported it", None
    return None, FileStamp.of_bytes(data)


def export_notebook(flow: Flow | str | Path, path: str | Path, *, output_dir: str | None = None, force: bool = False) -> Path:
    """Write a papermill-ready notebook that runs `flow` (a Flow or a flow file) to `path`,
    whole or not at all (`jupyter_flow.atomic.write_atomic`).

    A notebook already at `path` is replaced only when it is one an export wrote and its
    cells are as written (running it is fine, editing it is not): anything else (a
    notebook edited by hand, the workbench notebook beside the flow, any other file)
    raises FileChangedError naming the file, unless `force`."""
    import nbformat

    from jupyter_flow.flow import Flow

    if not isinstance(flow, Flow):
        flow = Flow.load(flow)
    nb = notebook_for(flow, output_dir=output_dir)
    nb.metadata["jupyter_flow"]["cells_digest"] = cells_digest(nb)
    target = Path(path)
    stamp = None
    if not force:
        why, stamp = _why_not_replace(target)
        if why is not None:
            raise FileChangedError(f"not replaced: {why}; export to another path, or overwrite it on purpose "
                                   "(--force on the command line, force=True in Python)", source=str(target))
    target.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(target, nbformat.writes(nb), unchanged_since=stamp)
    return target


def _cmd_export(args: argparse.Namespace) -> int:
    source = Path(args.flow)
    target = Path(args.output) if args.output else Path((source.name.split(".")[0] or "flow") + ".ipynb")
    path = export_notebook(source, target, output_dir=args.output_dir, force=args.force)
    print(f"wrote {path}; run it with: papermill {path} run.ipynb -p inputs_path INBOX -p output_dir OUT")
    return 0


def add_to_cli(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "export",
        help="write a papermill-ready notebook that runs the flow (the flow embedded)",
        description="Write a self-contained notebook that runs the flow once or over a batch. Its "
        f"`parameters` cell has: {', '.join(PARAMETERS)}.",
    )
    p.add_argument("flow")
    p.add_argument("-o", "--output", metavar="NB.ipynb", help="the notebook to write (default: FLOW's name .ipynb)")
    p.add_argument("--output-dir", metavar="DIR", help="the default of the notebook's `output_dir` parameter")
    p.add_argument("--force", action="store_true",
                   help="replace the notebook at -o even when it is not one jupyter-flow exported or was edited since")
    p.set_defaults(fn=_cmd_export)
