"""Batch runs: one flow over many inputs, concurrently, losing nothing on a crash.

The steps of a batch::

    items    = collect_items(flow, "inbox/")           # a folder, a glob, a JSONL file or a list
    summary  = run_batch(flow, items, "out/", concurrency=8, resume=True)

Each item has a stable id (the file's path relative to the folder or glob, a JSONL
line's `id` field or its line number). Runs share one flow (so its loaded models and
their micro-batchers) and one HTTP client. As each item finishes, its trace goes to
`out/traces/<id>.json` and one JSON line to `out/results.jsonl`, flushed and fsynced, so
a killed batch keeps everything that finished; `resume=True` skips the ids already in
`results.jsonl` (and drops a line torn by the kill), so every item ends up there exactly
once. A failed item is recorded and the batch goes on, unless `fail_fast`: then the
batch stops and raises FlowRunError naming the item and the node.
"""

from __future__ import annotations

import asyncio
import functools
import glob as globlib
import hashlib
import json
import re
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

from jupyter_flow.errors import FlowError, FlowRunError, FlowValidationError, Problem
from jupyter_flow.batch_results import (
    RESULTS_FILE,
    TRACES_DIR,
    BatchSummary,
    _ResultsWriter,
    read_results,
    summarize_results,
)
from jupyter_flow.trace import to_jsonable

if TYPE_CHECKING:
    import argparse

    import httpx

    from jupyter_flow.flow import Flow

__all__ = [
    "BatchInputError",
    "BatchItem",
    "BatchStoppedError",
    "BatchSummary",
    "ItemsSource",
    "add_to_cli",
    "apply_endpoints",
    "arun_batch",
    "collect_items",
    "read_results",
    "run_batch",
]


#: A folder, a glob pattern, a `.jsonl` file, one file, or a list of input dicts.
ItemsSource = Union[str, Path, Sequence[Mapping[str, Any]], Sequence["BatchItem"]]

_GLOB_CHARS = re.compile(r"[*?\[]")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@dataclass(frozen=True)
class BatchItem:
    """One run of a batch: a stable `id` and the flow inputs it runs with."""

    id: str
    inputs: dict[str, Any]
    source: str | None = None  # where it came from (file path or "FILE.jsonl:LINE")


class BatchInputError(FlowValidationError):
    """The batch's items or options are wrong (CLI exit code 2): names the file and line,
    the option, or the node."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        self.source = None
        FlowError.__init__(self, "cannot run the batch: " + "; ".join(str(p) for p in self.problems))


# -- items ----------------------------------------------------------------------------
def _file_input(flow: Flow, input_name: str | None) -> str:
    declared = flow.spec.inputs
    if input_name:
        if declared and input_name not in declared:
            raise BatchInputError(
                [Problem(f"the flow has no input {input_name!r} (it takes: {', '.join(declared)})", field="input_name")]
            )
        return input_name
    files = [name for name, spec in declared.items() if spec.type == "file"]
    if len(files) == 1:
        return files[0]
    if not files and len(declared) == 1:
        return next(iter(declared))
    what = f"file inputs {', '.join(files)}" if files else f"inputs {', '.join(declared) or '(none declared)'}"
    raise BatchInputError(
        [Problem(f"cannot tell which input takes each file (the flow has {what}): name it with --input-name / input_name=",
                 field="inputs")]
    )


def _glob_root(pattern: str) -> Path:
    parts = Path(pattern).parts
    root: list[str] = []
    for part in parts:
        if _GLOB_CHARS.search(part):
            break
        root.append(part)
    return Path(*root) if root else Path(".")


def _jsonl_items(path: Path) -> list[BatchItem]:
    items: list[BatchItem] = []
    seen: dict[str, int] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise BatchInputError([Problem(f"cannot read {path}: {exc}", field="inputs")]) from None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"{path}:{number}"
        try:
            data = json.loads(line)
        except json.JSONDecodeError as exc:
            raise BatchInputError([Problem(f"{where}: not JSON (column {exc.colno}: {exc.msg})", field="inputs")]) from None
        if not isinstance(data, dict):
            raise BatchInputError([Problem(f"{where}: each line must be a JSON object of inputs", field="inputs")])
        item_id = str(data.pop("id")) if "id" in data else f"line-{number}"
        if item_id in seen:
            raise BatchInputError(
                [Problem(f"{where}: id {item_id!r} is used again (first on line {seen[item_id]})", field="inputs")]
            )
        seen[item_id] = number
        items.append(BatchItem(item_id, data, where))
    return items


def collect_items(flow: Flow, source: ItemsSource, *, input_name: str | None = None) -> list[BatchItem]:
    """The items of a batch, in a stable order.

    - a folder: one item per file in it (hidden files left out), its path given to the
      flow's file input (the single `type: file` input, or `input_name`); id = file name;
    - a glob pattern (`inbox/**/*.pdf`): likewise; id = path relative to the pattern's root;
    - a `.jsonl` file: one item per line, a JSON object of inputs; id = its `id` field,
      else `line-N`;
    - any other file: one item, that file;
    - a list of dicts (id = their `id` key, else `item-N`) or of BatchItem.
    """
    if not isinstance(source, (str, Path)):
        items = []
        for n, entry in enumerate(source, start=1):
            if isinstance(entry, BatchItem):
                items.append(entry)
            else:
                data = dict(entry)
                item_id = str(data.pop("id")) if "id" in data and "id" not in flow.spec.inputs else f"item-{n}"
                items.append(BatchItem(item_id, data, None))
        if not items:
            raise BatchInputError([Problem("no items to run (an empty list)", field="inputs")])
        _check_unique(items)
        return items
    text = str(source)
    path = Path(text).expanduser()
    if path.is_dir():
        name = _file_input(flow, input_name)
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
        items = [BatchItem(p.name, {name: str(p.resolve())}, str(p)) for p in files]
    elif path.is_file() and path.suffix.lower() == ".jsonl":
        items = _jsonl_items(path)
    elif path.is_file():
        name = _file_input(flow, input_name)
        items = [BatchItem(path.name, {name: str(path.resolve())}, str(path))]
    elif _GLOB_CHARS.search(text):
        name = _file_input(flow, input_name)
        root = _glob_root(text)
        files = sorted(Path(p) for p in globlib.glob(text, recursive=True) if Path(p).is_file())
        items = [BatchItem(p.relative_to(root).as_posix() if p.is_relative_to(root) else p.as_posix(),
                           {name: str(p.resolve())}, str(p)) for p in files]
    else:
        raise BatchInputError([Problem(f"{text}: no such folder or file, and not a glob pattern", field="inputs")])
    if not items:
        raise BatchInputError([Problem(f"{text}: no items to run (no files, or no lines)", field="inputs")])
    _check_unique(items)
    return items


def _check_unique(items: Sequence[BatchItem]) -> None:
    seen: set[str] = set()
    for item in items:
        if item.id in seen:
            raise BatchInputError([Problem(f"two items have the id {item.id!r}", field="inputs")])
        seen.add(item.id)


def trace_name(item_id: str) -> str:
    """A file name for an item's trace: the id made safe, with a digest when it had to change."""
    safe = _UNSAFE.sub("_", item_id).strip("._") or "item"
    if safe != item_id:
        safe = f"{safe[:80]}-{hashlib.blake2b(item_id.encode(), digest_size=4).hexdigest()}"
    return f"{safe}.json"


# -- endpoint overrides ---------------------------------------------------------------
def apply_endpoints(flow: Flow, endpoints: Mapping[str, str] | None) -> Flow:
    """A copy of `flow` whose http nodes named in `endpoints` call the given URLs."""
    if not endpoints:
        return flow
    from jupyter_flow.flow import Flow

    data = flow.to_dict()
    by_id = {n["id"]: n for n in data["nodes"]}
    problems = []
    for node_id, url in endpoints.items():
        node = by_id.get(node_id)
        if node is None:
            problems.append(Problem(f"no such node (the flow has: {', '.join(by_id)})", node=node_id, field="endpoints"))
        elif node.get("type", "http") != "http":
            problems.append(Problem(f"is a '{node['type']}' node, not an http node", node=node_id, field="endpoints"))
        else:
            node["config"] = {**node.get("config", {}), "endpoint": str(url)}
    if problems:
        raise BatchInputError(problems)
    copy = Flow.from_dict(data, registry=flow.registry, functions=flow.functions)
    copy.source = flow.source
    return copy


# -- summary --------------------------------------------------------------------------
class BatchStoppedError(FlowRunError):
    """`fail_fast` stopped a batch; the message names the item and the node, `summary`
    tells what had finished."""

    def __init__(self, message: str, summary: BatchSummary) -> None:
        super().__init__(message)
        self.summary = summary


# -- running --------------------------------------------------------------------------
def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


async def _run_item(
    flow: Flow, item: BatchItem, client: httpx.AsyncClient, settings: Mapping[str, Any], traces: Path
) -> dict[str, Any]:
    started = _now()
    t0 = time.perf_counter()
    trace_file = traces / trace_name(item.id)
    record: dict[str, Any] = {"id": item.id, "source": item.source, "inputs": to_jsonable(item.inputs), "started_at": started}
    try:
        result = await flow.arun(item.inputs, settings=settings, http_client=client, raise_on_error=False, run_id=None)
    except Exception as exc:  # this item's inputs do not fit the flow (or the run broke)
        message = "; ".join(str(p) for p in exc.problems) if isinstance(exc, FlowValidationError) else f"{type(exc).__name__}: {exc}"
        record.update(status="error", outputs=None, nodes={}, error={"node": None, "type": type(exc).__name__, "message": message})
        trace_file.write_text(json.dumps({"item": item.id, "status": "error", "error": message}, indent=2) + "\n", encoding="utf-8")
    else:
        failed = result.failed()
        error = None
        if not result.ok:
            first = failed[0] if failed else None
            message = (first.error.message if first and first.error else None) or result.error or result.status
            if first is not None and message.startswith(f"node '{first.node}': "):
                message = message[len(f"node '{first.node}': "):]
            error = {
                "node": first.node if first else None,
                "type": first.error.type if first and first.error else result.status,
                "message": message,
            }
        record.update(
            status="ok" if result.ok else "error",
            run_id=result.run_id,
            outputs=to_jsonable(result.outputs),
            error=error,
            nodes={r.node: {"status": r.status, "duration_s": r.duration_s, "attempts": r.attempts} for r in result.trace},
        )
        result.to_json(trace_file)
    record["duration_s"] = time.perf_counter() - t0
    record["trace"] = f"{TRACES_DIR}/{trace_file.name}"
    return record


def _make_bar(progress: Any, total: int, initial: int) -> Any:
    if progress is False or progress is None:
        return None
    if progress is True or progress == "auto":
        if progress == "auto":
            from tqdm.auto import tqdm
        else:
            from tqdm import tqdm
        return tqdm(total=total, initial=initial, unit="item", desc="batch", file=None if progress == "auto" else sys.stderr)
    return progress(total=total, initial=initial, unit="item", desc="batch")  # a tqdm-like class


async def arun_batch(
    flow: Flow,
    items: ItemsSource,
    out_dir: str | Path,
    *,
    concurrency: int = 4,
    resume: bool = False,
    fail_fast: bool = False,
    progress: Any = True,
    input_name: str | None = None,
    settings: Mapping[str, Any] | None = None,
    endpoints: Mapping[str, str] | None = None,
    common_inputs: Mapping[str, Any] | None = None,
    _bar: Any = None,
) -> BatchSummary:
    """Run `flow` over `items` on the current event loop; see `run_batch`."""
    import httpx

    if concurrency < 1:
        raise BatchInputError([Problem("must be at least 1", field="concurrency")])
    flow = apply_endpoints(flow, endpoints).validate()
    batch = collect_items(flow, items, input_name=input_name) if not _is_items(items) else list(items)  # type: ignore[arg-type]
    if common_inputs:
        batch = [BatchItem(i.id, {**common_inputs, **i.inputs}, i.source) for i in batch]
    out = Path(out_dir)
    traces = out / TRACES_DIR
    traces.mkdir(parents=True, exist_ok=True)
    results_path = out / RESULTS_FILE
    if resume:
        done = {r["id"] for r in read_results(out, repair=True)}
    else:
        results_path.write_bytes(b"")
        for old in traces.glob("*.json"):
            old.unlink()
        done = set()
    todo = [item for item in batch if item.id not in done]
    resumed = len(batch) - len(todo)
    bar = _bar if _bar is not None else _make_bar(progress, len(batch), resumed)
    writer = _ResultsWriter(results_path)
    slots = asyncio.Semaphore(concurrency)
    running: set[asyncio.Task[None]] = set()
    stop: list[str] = []
    crashed: list[BaseException] = []
    ran = 0
    t0 = time.perf_counter()

    async def one(item: BatchItem) -> None:
        nonlocal ran
        try:
            record = await _run_item(flow, item, client, settings or {}, traces)
            writer.append(record)
            ran += 1
            if bar is not None:
                bar.update(1)
            if fail_fast and record["status"] != "ok" and not stop:
                err = record["error"] or {}
                where = f"at node '{err['node']}'" if err.get("node") else "at its inputs"
                stop.append(f"item '{item.id}' failed {where}: {err.get('message')}")
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # writing results failed: end the batch, keep the cause
            crashed.append(exc)
        finally:
            slots.release()

    try:
        async with httpx.AsyncClient(
            limits=httpx.Limits(max_connections=max(64, 4 * concurrency), max_keepalive_connections=max(32, concurrency)),
            follow_redirects=True,
        ) as client:
            try:
                for item in todo:
                    await slots.acquire()
                    if stop or crashed:
                        slots.release()
                        break
                    task = asyncio.create_task(one(item), name=f"jupyter-flow batch:{item.id}")
                    running.add(task)
                    task.add_done_callback(running.discard)
                while running:
                    if stop or crashed:
                        break  # what still runs is cancelled below; resume runs it again
                    await asyncio.wait(set(running), return_when=asyncio.FIRST_COMPLETED)
            finally:
                for task in list(running):
                    task.cancel()
                if running:
                    await asyncio.gather(*list(running), return_exceptions=True)
    finally:
        writer.close()
        if bar is not None and _bar is None:
            bar.close()
    if crashed:
        raise crashed[0]
    summary = summarize_results(
        out, batch, resumed=resumed, ran=ran, duration_s=time.perf_counter() - t0, stopped=stop[0] if stop else None
    )
    if stop:
        raise BatchStoppedError(f"batch stopped (fail-fast): {stop[0]}", summary)
    return summary


def _is_items(items: Any) -> bool:
    return isinstance(items, (list, tuple)) and bool(items) and all(isinstance(i, BatchItem) for i in items)


def run_batch(
    flow: Flow,
    items: ItemsSource,
    out_dir: str | Path,
    *,
    concurrency: int = 4,
    resume: bool = False,
    fail_fast: bool = False,
    progress: Any = True,
    input_name: str | None = None,
    settings: Mapping[str, Any] | None = None,
    endpoints: Mapping[str, str] | None = None,
    common_inputs: Mapping[str, Any] | None = None,
) -> BatchSummary:
    """Run `flow` over `items` (a folder, glob, `.jsonl` file or list; see `collect_items`),
    `concurrency` at a time, writing `out_dir/results.jsonl`, `out_dir/traces/` and
    `out_dir/summary.json`. Without `resume` earlier results in `out_dir` are replaced.

    `progress`: True (a tqdm bar on stderr), "auto" (tqdm.auto, a widget in Jupyter),
    False, or a tqdm-like class. `settings` go to every run (e.g. `{"device": "cuda"}`);
    `endpoints` override http nodes' endpoints by node id; `common_inputs` are given to
    every item (an item's own inputs win). Works in a script and inside a Jupyter kernel.
    Raises FlowRunError naming the item and node when `fail_fast` stops the batch.
    """
    kwargs = dict(concurrency=concurrency, resume=resume, fail_fast=fail_fast, progress=progress,
                  input_name=input_name, settings=settings, endpoints=endpoints, common_inputs=common_inputs)
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(arun_batch(flow, items, out_dir, **kwargs))  # type: ignore[arg-type]
    # Inside a running loop (a Jupyter kernel): items and the progress bar are made here,
    # in the caller's thread (so a widget bar shows in the cell), the runs in a worker thread.
    flow_v = apply_endpoints(flow, endpoints).validate()
    batch = collect_items(flow_v, items, input_name=input_name) if not _is_items(items) else list(items)  # type: ignore[arg-type]
    done = {r["id"] for r in read_results(out_dir)} if resume else set()
    bar = _make_bar(progress, len(batch), sum(1 for i in batch if i.id in done))
    box: dict[str, Any] = {}
    kwargs["endpoints"] = None

    def target() -> None:
        try:
            box["summary"] = asyncio.run(arun_batch(flow_v, batch, out_dir, _bar=bar, **kwargs))  # type: ignore[arg-type]
        except BaseException as exc:  # handed to the caller's thread below
            box["error"] = exc

    thread = threading.Thread(target=target, name=f"jupyter-flow batch:{flow.name}", daemon=True)
    thread.start()
    thread.join()
    if bar is not None:
        bar.close()
    if "error" in box:
        raise box["error"]
    return box["summary"]


# -- command line ---------------------------------------------------------------------
def _cmd_batch(args: argparse.Namespace) -> int:
    from jupyter_flow.cli import parse_pairs
    from jupyter_flow.flow import Flow

    runner: Any = run_batch
    if args.engine == "ray":
        from jupyter_flow.ray_batch import run_batch_ray

        runner = functools.partial(run_batch_ray, address=args.address)
    elif args.address:
        raise BatchInputError([Problem("--address is for --engine ray", field="address")])
    try:
        summary = runner(
            Flow.load(args.flow),
            args.inputs,
            args.out,
            concurrency=args.concurrency,
            resume=args.resume,
            fail_fast=args.fail_fast,
            progress=not args.quiet,
            input_name=args.input_name,
            settings={"device": args.device} if args.device else None,
            endpoints=parse_pairs(args.endpoint, "--endpoint", "NODE=URL"),
            common_inputs=parse_pairs(args.input, "--input"),
        )
    except BatchStoppedError as exc:
        print(exc.summary.to_text())
        raise
    print(summary.to_text())
    return 0


def add_to_cli(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "batch",
        help="run a flow over a folder, glob or JSONL file of inputs; results to OUT/results.jsonl",
        description="Run a flow once per item, concurrently. Each finished item is appended to "
        "OUT/results.jsonl at once (a killed batch keeps what finished; --resume skips it); "
        "each item's trace goes to OUT/traces/. Exit 0 when the batch ran (failed items are "
        "listed in the summary), 1 when --fail-fast stopped it, 2 for bad usage.",
    )
    p.add_argument("flow")
    p.add_argument("--inputs", required=True, metavar="DIR|GLOB|FILE.jsonl",
                   help="a folder or glob (one item per file) or a JSONL file (one object of inputs per line)")
    p.add_argument("--out", required=True, metavar="DIR", help="where results.jsonl, traces/ and summary.json go")
    p.add_argument("--resume", action="store_true", help="skip items already in OUT/results.jsonl")
    p.add_argument("--concurrency", "-c", type=int, default=4, metavar="N", help="items run at once (default 4)")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failed item (exit 1)")
    p.add_argument("--input-name", metavar="NAME", help="the input that gets each file's path (default: the flow's file input)")
    p.add_argument("--input", "-i", action="append", default=[], metavar="KEY=VALUE", help="an input given to every item")
    p.add_argument("--endpoint", action="append", default=[], metavar="NODE=URL", help="override an http node's endpoint")
    p.add_argument("--device", help="device for model nodes that say `device: auto` (cpu, cuda, cuda:N)")
    p.add_argument("--engine", choices=("local", "ray"), default="local",
                   help="local: in this process (default); ray: on a Ray cluster, one loaded flow per actor")
    p.add_argument("--address", metavar="ADDR", help="the Ray cluster for --engine ray (default: RAY_ADDRESS, else a local one)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(fn=_cmd_batch)
