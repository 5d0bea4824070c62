"""`jupyter-flow`: validate, run and export flows from the command line.

Exit codes: 0 success; 1 the flow ran and failed (the message names the node and the
cause), or a file it writes after the run could not be written (`run` prints the outputs
first); 2 an invalid flow file or invalid usage (the message names the node or field).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jupyter_flow.errors import FlowError, FlowFileError, FlowRunError, FlowValidationError, StoreError
from jupyter_flow.version import __version__

__all__ = ["console", "main"]

EXIT_OK, EXIT_FAILED, EXIT_INVALID = 0, 1, 2


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> Any:  # usage errors exit 2 with a one-line reason
        self.print_usage(sys.stderr)
        raise _Usage(f"{self.prog}: {message}")


class _Usage(Exception):
    pass


def parse_pairs(values: Sequence[str], flag: str, shape: str = "KEY=VALUE") -> dict[str, str]:
    """`KEY=VALUE` options (repeated) as a dict; a malformed one is a usage error (exit 2)."""
    pairs: dict[str, str] = {}
    for pair in values:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise _Usage(f"{flag} {pair!r}: expected {shape}")
        pairs[key] = value
    return pairs


def _parse_inputs(pairs: Sequence[str], inputs_file: str | None) -> dict[str, Any]:
    from jupyter_flow.atomic import read_bounded
    from jupyter_flow.spec import parse_json

    values: dict[str, Any] = {}
    if inputs_file:
        try:  # bounded as a served request's body is: bytes, nesting, values, keys given once
            data = parse_json(read_bounded(inputs_file), source=inputs_file)
        except FileNotFoundError:
            raise _Usage(f"--inputs {inputs_file}: no such file") from None
        except FlowFileError as exc:
            raise _Usage(f"--inputs {inputs_file}: not usable JSON ({exc.problems[0].message})") from None
        if not isinstance(data, dict):
            raise _Usage(f"--inputs {inputs_file}: must hold a JSON object of input names to values")
        values.update(data)
    values.update(parse_pairs(pairs, "--input"))
    return values


def _write_after_run(path: str, option: str, write: Callable[[], object], run: str) -> str | None:
    """Write the file an option names once the run is over: None when written, else a
    message naming the option, the file and the cause (a full disk, a folder gone), so
    the caller can still show the outputs and exit 1 rather than lose them."""
    try:
        write()
    except OSError as exc:
        return f"error: {option} {path}: cannot write: {exc.strerror or exc} ({run})"
    return None


def _check_writable(path: str, option: str) -> None:
    """Fail before the run, not after it, when an output file cannot be written."""
    target = Path(path)
    if target.is_dir():
        raise _Usage(f"{option} {path}: is a folder; give a file name")
    if not target.parent.is_dir():
        raise _Usage(f"{option} {path}: the folder {target.parent} does not exist")


def _cmd_validate(args: argparse.Namespace) -> int:
    from jupyter_flow.flow import Flow

    flow = Flow.load(args.flow).validate()
    print(f"{args.flow}: ok ({len(flow.spec.nodes)} nodes, {len(flow.spec.edges)} edges)")
    return EXIT_OK


def _plain_streams() -> None:
    """Text no encoder accepts (a lone surrogate in an error message) is printed escaped
    instead of ending the command with a UnicodeEncodeError."""
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")


def _cmd_run(args: argparse.Namespace) -> int:
    from jupyter_flow.flow import Flow
    from jupyter_flow.values import dumps, encode

    _plain_streams()
    flow = Flow.load(args.flow).validate()
    inputs = _parse_inputs(args.input, args.inputs)
    if args.trace:
        _check_writable(args.trace, "--trace")
    if args.output:
        _check_writable(args.output, "--output")
    captures = _captures(args)
    if captures:
        from jupyter_flow.tensorfiles import add_captures

        flow = add_captures(flow, captures).validate()
    settings = {"device": args.device} if args.device else {}
    try:
        result = flow.run(inputs, settings=settings, cache=args.cache, history=args.history)
    except FlowRunError as exc:
        if args.trace and exc.result is not None:
            failed = exc.result
            if problem := _write_after_run(args.trace, "--trace", lambda: failed.to_json(args.trace), "the run failed too"):
                print(problem, file=sys.stderr)
        raise
    problems: list[str] = []
    done = "the run itself succeeded"
    if args.trace and (problem := _write_after_run(args.trace, "--trace", lambda: result.to_json(args.trace), done)):
        problems.append(problem)
    if args.save_tensors:
        from jupyter_flow.tensorfiles import captured_names, save_tensors

        index = save_tensors(result, captures or captured_names(flow), args.save_tensors)
        for miss in index["missing"]:
            print(f"note: --save-tensors: {miss['reason']}", file=sys.stderr)
    # a flow that declares its outputs answers with them; otherwise every node's output
    shown = result.flow_outputs if result.flow_outputs is not None else result.outputs
    data, converted = encode(shown)  # whole: results are never cut (traces may summarise)
    text = dumps(data, indent=2)
    for c in converted:  # what JSON cannot hold, and how it was written instead
        print(f"note: output {c.path}: {c.kind} written as {c.written_as}", file=sys.stderr)
    output = args.output
    if output and (problem := _write_after_run(
            output, "--output", lambda: Path(output).write_text(text + "\n", encoding="utf-8"),
            f"{done}; its outputs are printed instead")):
        problems.append(problem)
        output = None
    if not output:
        print(text, flush=True)
    for problem in problems:
        print(problem, file=sys.stderr)
    return EXIT_FAILED if problems else EXIT_OK


def _captures(args: argparse.Namespace) -> list[tuple[str, str]]:
    """`--capture NODE:NAME` pairs, and a usable `--save-tensors` folder, checked before the run."""
    if args.save_tensors and Path(args.save_tensors).exists() and not Path(args.save_tensors).is_dir():
        raise _Usage(f"--save-tensors {args.save_tensors}: is a file; give a folder")
    if not args.capture:
        return []
    from jupyter_flow.tensorfiles import parse_captures

    try:
        return parse_captures(args.capture)
    except ValueError as exc:
        raise _Usage(str(exc)) from None


def _cmd_batch(args: argparse.Namespace) -> int:
    from jupyter_flow.batch import BatchOptions, BatchStoppedError, batch_engines
    from jupyter_flow.flow import Flow

    _plain_streams()
    engine = batch_engines().get(args.engine)
    settings = {"address": args.address} if args.address else {}
    if not engine.settings >= settings.keys():
        raise _Usage(f"--address is for --engine ray (the {args.engine} engine takes no address)")
    options = BatchOptions(
        concurrency=args.concurrency,
        resume=args.resume,
        rerun_changed=args.rerun_changed,
        fail_fast=args.fail_fast,
        progress=not args.quiet,
        input_name=args.input_name,
        settings={"device": args.device} if args.device else {},
        endpoints=parse_pairs(args.endpoint, "--endpoint", "NODE=URL"),
        common_inputs=parse_pairs(args.input, "--input"),
        max_failures=args.max_failures,
        cache=args.cache,
        history=args.history,
    )
    engine.check()  # before the flow is read, so that a missing extra is the first thing said
    try:
        summary = engine.run(Flow.load(args.flow), args.inputs, args.out, options, **settings)
    except BatchStoppedError as exc:
        print(exc.summary.to_text())
        raise
    print(summary.to_text())  # its last lines: the counts, the verdict, the failed items
    return EXIT_OK if summary.succeeded else EXIT_FAILED


def _add_batch(sub: Any) -> None:
    p = sub.add_parser(
        "batch",
        help="run a flow over a folder, glob or JSONL file of inputs; results to OUT/results.jsonl",
        description="Run a flow once per item, concurrently. Each finished item is appended to "
        "OUT/results.jsonl at once (a killed batch keeps what finished; --resume skips it); "
        "each item's trace goes to OUT/traces/. One batch per OUT at a time (OUT/.jupyter-flow.lock); "
        "without --resume earlier results are moved to OUT/earlier-TIME/. Exit 0 when every item "
        "succeeded (or no more failed than --max-failures), 1 when more failed or --fail-fast stopped "
        "it (the last lines give the counts and the failed items), 2 for bad usage or a folder in use.",
    )
    p.add_argument("flow")
    p.add_argument("--inputs", required=True, metavar="DIR|GLOB|FILE.jsonl",
                   help="a folder or glob (one item per file) or a JSONL file (one object of inputs per line)")
    p.add_argument("--out", required=True, metavar="DIR", help="where results.jsonl, traces/ and summary.json go")
    p.add_argument("--resume", action="store_true",
                   help="skip items already in OUT/results.jsonl (refused when another version of the flow made some)")
    p.add_argument("--rerun-changed", action="store_true",
                   help="resume, running again the items whose results another version of the flow made "
                   "(their old results are moved to OUT/earlier-TIME/)")
    p.add_argument("--concurrency", "-c", type=int, default=4, metavar="N", help="items run at once (default 4)")
    p.add_argument("--fail-fast", action="store_true", help="stop at the first failed item (exit 1)")
    p.add_argument("--max-failures", default="0", metavar="N|P%",
                   help="failed items accepted with exit 0: a number, or a share such as 5%% (default 0)")
    p.add_argument("--input-name", metavar="NAME", help="the input that gets each file's path (default: the flow's file input)")
    p.add_argument("--input", "-i", action="append", default=[], metavar="KEY=VALUE", help="an input given to every item")
    p.add_argument("--endpoint", action="append", default=[], metavar="NODE=URL", help="override an http node's endpoint")
    p.add_argument("--device", help="device for model nodes that say `device: auto` (cpu, cuda, cuda:N)")
    p.add_argument("--engine", default="local",
                   help="local: in this process (default); ray: on a Ray cluster, one loaded flow per actor; "
                   "or an engine a package adds")
    p.add_argument("--address", metavar="ADDR", help="the Ray cluster for --engine ray (default: RAY_ADDRESS, else a local one)")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    add_store_options(p)
    p.set_defaults(fn=_cmd_batch)


def add_store_options(p: argparse.ArgumentParser) -> None:
    """`--cache [DIR]` and `--history [FILE]`: without a value, the default place."""
    p.add_argument("--cache", nargs="?", const=True, default=False, metavar="DIR",
                   help="take unchanged nodes' results from the node cache and store new ones "
                   "(default folder: $JUPYTER_FLOW_CACHE, else ~/.cache/jupyter-flow)")
    p.add_argument("--history", nargs="?", const=True, default=False, metavar="FILE",
                   help="record the run in the run history (see `jupyter-flow runs`; "
                   "default file: $JUPYTER_FLOW_HISTORY, else ~/.local/share/jupyter-flow/history.sqlite)")


def _build_parser() -> argparse.ArgumentParser:

    parser = _Parser(prog="jupyter-flow", description="Chain models into flows: validate, run, export.")
    parser.add_argument("--version", action="version", version=f"jupyter-flow {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("validate", help="check a flow file; exit 2 with every problem if it is invalid")
    p.add_argument("flow")
    p.set_defaults(fn=_cmd_validate)

    p = sub.add_parser("run", help="run a flow once; print the outputs as JSON")
    p.add_argument("flow")
    p.add_argument("--input", "-i", action="append", default=[], metavar="KEY=VALUE", help="a flow input (repeatable)")
    p.add_argument("--inputs", metavar="FILE.json", help="a JSON object of inputs")
    p.add_argument("--trace", metavar="FILE", help="write the run's trace as JSON")
    p.add_argument("--output", metavar="FILE", help="write the outputs (whole, as JSON) to FILE instead of stdout")
    p.add_argument("--device", help="device for model nodes that say `device: auto` (cpu, cuda, cuda:N)")
    p.add_argument("--capture", action="append", default=[], metavar="NODE:NAME",
                   help="also capture a module's output (or `attentions`) of a model node (repeatable)")
    p.add_argument("--save-tensors", metavar="DIR",
                   help="write the captured tensors as safetensors files (NODE.NAME.safetensors) and index.json to DIR")
    add_store_options(p)
    p.set_defaults(fn=_cmd_run)

    _add_batch(sub)
    for extra in _extra_commands():
        extra(sub)
    return parser


def _extra_commands() -> list[Callable[[Any], None]]:
    """Sub-commands that live in other modules register themselves through `add_to_cli`."""
    import importlib

    commands = []
    for module in ("jupyter_flow.export", "jupyter_flow.serve.commands", "jupyter_flow.doctor", "jupyter_flow.dify", "jupyter_flow.flowdiff", "jupyter_flow.history", "jupyter_flow.cache", "jupyter_flow.evaluate", "jupyter_flow.deploy"):
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name == module:
                continue
            raise
        commands.append(mod.add_to_cli)
    return commands


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _build_parser().parse_args(argv)
        return int(args.fn(args) or 0)
    except _Usage as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_INVALID
    except (FlowValidationError, StoreError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INVALID
    except FlowRunError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except FlowError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_FAILED
    except OSError as exc:  # a file or folder named on the command line that cannot be used
        where = f" {exc.filename}" if exc.filename else ""
        print(f"error: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_INVALID
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def console() -> None:
    """The `jupyter-flow` command. A node that timed out or was interrupted while its
    worker thread was blocked leaves that thread behind; the command does not wait for it."""
    from jupyter_flow.workers import abandoned_workers

    code = main()
    if abandoned_workers():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    console()
