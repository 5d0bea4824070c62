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

import ast
import datetime
import dis
import inspect
import math
import re
import sys
import textwrap
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jupyter_flow.errors import FlowValidationError, MissingDependencyError, Problem
from jupyter_flow.spec import START
from jupyter_flow.version import __version__

if TYPE_CHECKING:
    import argparse

    from jupyter_flow.flow import Flow
    from jupyter_flow.nodes.base import Node

__all__ = ["PARAMETERS", "add_to_cli", "export_notebook", "flow_files", "literal", "notebook_for"]

#: The names in the exported notebook's `parameters` cell, in order.
PARAMETERS = (
    "inputs", "inputs_path", "output_dir", "device", "endpoints", "concurrency", "fail_fast", "max_failures", "engine",
    "flow_dir", "cache",
)

DEFAULT_CONCURRENCY = 4


def _md(text: Any) -> str:
    return " ".join(str(text).split()).replace("|", "\\|")


def _code(text: Any) -> str:
    return f"`{_md(text).replace('`', chr(39))}`"


class _CannotCarry(Exception):
    pass


def _global_loads(code: Any) -> set[str]:
    """Names a function's code reads as globals (nested comprehensions and functions included)."""
    names = {ins.argval for ins in dis.get_instructions(code) if ins.opname in ("LOAD_GLOBAL", "LOAD_NAME")}
    for const in code.co_consts:
        if inspect.iscode(const):
            names |= _global_loads(const)
    return names


def _header_names(tree: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Names a def line reads when it runs: defaults and annotations."""
    a = tree.args
    parts: list[ast.AST | None] = [*a.defaults, *a.kw_defaults, tree.returns]
    parts += [arg.annotation for arg in (*a.posonlyargs, *a.args, *a.kwonlyargs, a.vararg, a.kwarg) if arg is not None]
    return {n.id for part in parts if part is not None for n in ast.walk(part) if isinstance(n, ast.Name)}


def _importable(value: Any) -> str | None:
    """`module` when `from module import name` gives back this very object."""
    module = getattr(value, "__module__", None)
    name = getattr(value, "__name__", None)
    if not module or not name or module in ("__main__", "builtins") or module.startswith("__"):
        return None
    return module if getattr(sys.modules.get(module), name, None) is value else None


def _is_literal(value: Any) -> bool:
    try:
        return type(value) in (int, float, str, bool, type(None), tuple, list, dict, set, frozenset) and \
            ast.literal_eval(repr(value)) == value
    except (ValueError, SyntaxError):
        return False


class _Carrier:
    """Writes the notebook-registered functions of a flow, with what they use, into a cell."""

    def __init__(self) -> None:
        self.imports: dict[str, None] = {}
        self.constants: dict[str, str] = {}
        self.sources: dict[str, str] = {}

    def add(self, fn: Any) -> str:
        """Carry `fn`; returns the name it has in the cell."""
        module = _importable(fn)
        if module is not None:
            self.imports[f"from {module} import {fn.__name__}"] = None
            return str(fn.__name__)
        if not inspect.isfunction(fn) or fn.__name__ == "<lambda>":
            raise _CannotCarry("it is not a function written with def")
        if fn.__closure__:
            raise _CannotCarry("it uses variables of an enclosing function")
        if fn.__name__ in self.sources:
            return str(fn.__name__)
        try:
            source = textwrap.dedent(inspect.getsource(fn))
        except (OSError, TypeError):
            raise _CannotCarry("its source code is not available") from None
        tree = ast.parse(source).body[0]
        if not isinstance(tree, (ast.FunctionDef, ast.AsyncFunctionDef)) or tree.name != fn.__name__:
            raise _CannotCarry("its source code is not a plain def")
        self.sources[fn.__name__] = "\n".join(source.splitlines()[tree.lineno - 1 : tree.end_lineno])  # no decorators
        for name in sorted(_global_loads(fn.__code__) | _header_names(tree)):
            if name not in fn.__globals__:
                continue  # a builtin
            value = fn.__globals__[name]
            if inspect.ismodule(value):
                line = f"import {value.__name__}" + (f" as {name}" if value.__name__ != name else "")
                self.imports[line] = None
            elif _importable(value) is not None:
                line = f"from {_importable(value)} import {value.__name__}" + (f" as {name}" if value.__name__ != name else "")
                self.imports[line] = None
            elif inspect.isfunction(value) and value.__name__ == name:
                self.add(value)
            elif _is_literal(value):
                self.constants[name] = repr(value)
            else:
                raise _CannotCarry(f"it uses the notebook's {name!r} ({type(value).__name__}), which cannot be written out")
        return str(fn.__name__)

    def cell(self, registrations: list[str]) -> str:
        parts = ["from jupyter_flow import register_function", *self.imports]
        parts += [f"{k} = {v}" for k, v in self.constants.items()]
        return "\n".join(parts) + "\n\n\n" + "\n\n\n".join(self.sources.values()) + "\n\n\n" + "\n".join(registrations)


def _carry_functions(flow: Flow) -> str | None:
    """The code of a cell that registers the functions the flow's python nodes name
    without a module (functions registered from the notebook the flow was built in)."""
    from jupyter_flow.nodes.python import default_functions

    registered = {**default_functions(), **flow.functions}
    carrier = _Carrier()
    registrations: list[str] = []
    problems: list[Problem] = []
    for node in flow.spec.nodes:
        name = str(node.config.get("function", ":"))
        if node.type != "python" or ":" in name:
            continue
        fix = "define it in a module and name it as 'module:function'"
        if name not in registered:
            problems.append(Problem(f"no function {name!r} is registered here, so it cannot be written into the "
                                    f"notebook: export from the notebook that registers it, or {fix}",
                                    node=node.id, field="config.function"))
            continue
        try:
            local = carrier.add(registered[name])
        except _CannotCarry as exc:
            problems.append(Problem(f"the function {name!r} cannot be written into the notebook: {exc}; {fix}",
                                    node=node.id, field="config.function"))
            continue
        line = f"register_function({local}, name={name!r})"
        if line not in registrations:
            registrations.append(line)
    if problems:
        raise FlowValidationError(problems, source=str(flow.source) if flow.source else None)
    return carrier.cell(registrations) if registrations else None


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


def notebook_for(flow: Flow, *, output_dir: str | None = None) -> Any:
    """The notebook (an `nbformat` NotebookNode) that runs `flow`; see the module docstring."""
    try:
        import nbformat
        from nbformat import v4
    except ImportError:
        raise MissingDependencyError("nbformat", "export", "exporting a flow to a notebook") from None

    flow.validate()
    functions = _carry_functions(flow)
    out = output_dir or f"{re.sub(r'[^A-Za-z0-9._-]+', '-', flow.name).strip('-') or 'flow'}-output"
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


def export_notebook(flow: Flow | str | Path, path: str | Path, *, output_dir: str | None = None) -> Path:
    """Write a papermill-ready notebook that runs `flow` (a Flow or a flow file) to `path`."""
    import nbformat

    from jupyter_flow.flow import Flow

    if not isinstance(flow, Flow):
        flow = Flow.load(flow)
    nb = notebook_for(flow, output_dir=output_dir)
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(target))
    return target


def _cmd_export(args: argparse.Namespace) -> int:
    source = Path(args.flow)
    target = Path(args.output) if args.output else Path(source.name.split(".")[0] + ".ipynb")
    path = export_notebook(source, target, output_dir=args.output_dir)
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
    p.set_defaults(fn=_cmd_export)
