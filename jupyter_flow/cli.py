"""`jupyter-flow`: validate, run and export flows from the command line.

Exit codes: 0 success; 1 the flow ran and failed (the message names the node and the
cause); 2 an invalid flow file or invalid usage (the message names the node or field).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jupyter_flow.errors import FlowError, FlowRunError, FlowValidationError

__all__ = ["main"]

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
    values: dict[str, Any] = {}
    if inputs_file:
        try:
            data = json.loads(Path(inputs_file).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise _Usage(f"--inputs {inputs_file}: no such file") from None
        except json.JSONDecodeError as exc:
            raise _Usage(f"--inputs {inputs_file}: not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})") from None
        if not isinstance(data, dict):
            raise _Usage(f"--inputs {inputs_file}: must hold a JSON object of input names to values")
        values.update(data)
    values.update(parse_pairs(pairs, "--input"))
    return values


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


def _cmd_run(args: argparse.Namespace) -> int:
    from jupyter_flow.flow import Flow
    from jupyter_flow.trace import to_jsonable

    flow = Flow.load(args.flow).validate()
    inputs = _parse_inputs(args.input, args.inputs)
    if args.trace:
        _check_writable(args.trace, "--trace")
    settings = {"device": args.device} if args.device else {}
    try:
        result = flow.run(inputs, settings=settings)
    except FlowRunError as exc:
        if args.trace and exc.result is not None:
            exc.result.to_json(args.trace)
        raise
    if args.trace:
        result.to_json(args.trace)
    print(json.dumps(to_jsonable(result.outputs), indent=2, ensure_ascii=False))
    return EXIT_OK


def _build_parser() -> argparse.ArgumentParser:
    from jupyter_flow import __version__

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
    p.add_argument("--device", help="device for model nodes that say `device: auto` (cpu, cuda, cuda:N)")
    p.set_defaults(fn=_cmd_run)

    for extra in _extra_commands():
        extra(sub)
    return parser


def _extra_commands() -> list[Callable[[Any], None]]:
    """Sub-commands that live in other modules register themselves through `add_to_cli`."""
    import importlib

    commands = []
    for module in ("jupyter_flow.export", "jupyter_flow.batch", "jupyter_flow.serve", "jupyter_flow.doctor",
                   "jupyter_flow.demo_models"):
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
    except FlowValidationError as exc:
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


if __name__ == "__main__":
    sys.exit(main())
