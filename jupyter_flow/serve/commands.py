"""`jupyter-flow serve model|flow`: the command line of `jupyter_flow.serve.app`'s apps.

In one process (uvicorn), or with ``--ray`` on Ray Serve (`jupyter_flow.serve.ray_serve`:
a local Ray started for the server, or the cluster at ``--address``), with the same
routes, limits and answers.
"""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

from jupyter_flow.errors import FlowValidationError, MissingDependencyError, Problem
from jupyter_flow.serve.app import flow_app, model_app
from jupyter_flow.serve.guards import DEFAULT_BODY_TIMEOUT_S, DEFAULT_MAX_BODY
from jupyter_flow.serve.state import DEFAULT_KEEP_BYTES, DEFAULT_KEEP_RUNS

__all__ = ["TOKEN_ENV", "add_to_cli"]

TOKEN_ENV = "JUPYTER_FLOW_TOKEN"


def _check_port(host: str, port: int) -> None:
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as exc:
            raise FlowValidationError(
                [Problem(f"cannot listen on {host}:{port} ({exc.strerror}): pick another with --port", field="--port")]
            ) from None


def _serve(app: Any, args: argparse.Namespace) -> int:
    import uvicorn

    _check_port(args.host, args.port)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    loop, parser = _fast_parts()
    app.state.http_parser = parser
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, backlog=2048, loop=loop, http=parser)
    return 0


def _fast_parts() -> tuple[str, str]:
    """uvicorn's fast event loop and HTTP parser when installed (the serve extra has both)."""
    import importlib.util

    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    parser = "httptools" if importlib.util.find_spec("httptools") else "h11"
    return loop, parser


def _token(args: argparse.Namespace) -> str | None:
    if args.token_env:
        value = os.environ.get(args.token_env)
        if not value:
            raise FlowValidationError([Problem(f"environment variable {args.token_env} is empty or not set", field="--token-env")])
        return value
    return os.environ.get(TOKEN_ENV) or None


def _cmd_model(args: argparse.Namespace) -> int:
    options = {"token": _token(args), "max_body": args.max_body, "keep_runs": args.keep_runs or 0,
               "body_timeout_s": args.body_timeout}
    if args.ray:
        ray_serve = _ray_serve()
        address = args.address or os.environ.get("RAY_ADDRESS") or None
        if not address:  # a local Ray: Serve's proxy listens here, say so now if it cannot
            _check_port(args.host, args.port)
        return int(ray_serve.run_forever(ray_serve.RayServer.for_model(
            args.config, host=args.host, port=args.port, address=address, options=options)))
    return _serve(model_app(args.config, **options), args)


def _cmd_flow(args: argparse.Namespace) -> int:
    keep = DEFAULT_KEEP_RUNS if args.keep_runs is None else args.keep_runs
    options = {"token": _token(args), "files_root": args.files_root, "max_body": args.max_body, "keep_runs": keep,
               "keep_bytes": int(args.keep_mb * 1024 * 1024), "mcp": args.mcp, "body_timeout_s": args.body_timeout}
    if args.ray:
        ray_serve = _ray_serve()
        address = args.address or os.environ.get("RAY_ADDRESS") or None
        if not address:
            _check_port(args.host, args.port)
        return int(ray_serve.run_forever(ray_serve.RayServer.for_flow(
            args.flow, host=args.host, port=args.port, address=address, options=options)))
    return _serve(flow_app(args.flow, **options), args)


def _ray_serve() -> Any:
    """`jupyter_flow.serve.ray_serve`, or MissingDependencyError naming the extra."""
    try:
        from jupyter_flow.serve import ray_serve
    except ImportError as exc:
        if exc.name is not None and exc.name.split(".")[0] != "ray":
            raise
        raise MissingDependencyError("ray[serve]", "ray", "serving on Ray Serve (--ray)") from exc
    return ray_serve


def _size(text: str) -> int:
    """A size such as 8MB, 512KB or 1048576 (bytes)."""
    import re

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?)(?:I?B)?\s*", text.upper())
    if match is None or float(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a size (e.g. 8MB, 512KB, 1048576)")
    return int(float(match.group(1)) * 1024 ** " KMG".index(match.group(2) or " "))


def add_to_cli(sub: Any) -> None:
    p = sub.add_parser("serve", help="serve a model or a flow over HTTP")
    kinds = p.add_subparsers(dest="serve_kind", required=True, parser_class=type(p))
    for name, target, helptext, fn in (
        ("model", "config", "a model node config in YAML", _cmd_model),
        ("flow", "flow", "a flow file (watched for edits)", _cmd_flow),
    ):
        q = kinds.add_parser(name, help=f"serve {helptext}")
        q.add_argument(target)
        q.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
        q.add_argument("--port", type=int, default=8000)
        q.add_argument("--token-env", metavar="VAR", help=f"require `Authorization: Bearer $VAR` (default: ${TOKEN_ENV} if set)")
        q.add_argument("--log-level", default="info")
        q.add_argument("--max-body", type=_size, default=DEFAULT_MAX_BODY, metavar="SIZE",
                       help=f"largest request body, e.g. 20MB (default {DEFAULT_MAX_BODY // 2**20}MB); larger ones get 413")
        q.add_argument("--body-timeout", type=float, default=DEFAULT_BODY_TIMEOUT_S, metavar="S",
                       help=f"seconds a request body may take to arrive whole (default {DEFAULT_BODY_TIMEOUT_S:g}); slower ones get 408")
        q.add_argument("--ray", action="store_true", help="serve on Ray Serve: an ingress with these routes and a "
                       "deployment per model node, replicas from the file's deploy: section (the ray extra)")
        q.add_argument("--address", metavar="ADDR", help="with --ray: the Ray cluster (HOST:PORT, ray://HOST:PORT, auto; "
                       "default RAY_ADDRESS, else a local Ray of 2 CPUs started for the server)")
        q.add_argument("--keep-runs", type=int, metavar="N",
                       help=f"runs whose traces /runs/ID keeps (flow default {DEFAULT_KEEP_RUNS}; model default 0)")
        if name == "flow":
            q.add_argument("--keep-mb", type=float, default=DEFAULT_KEEP_BYTES / 2**20, metavar="MB",
                           help=f"memory for kept traces (default {DEFAULT_KEEP_BYTES // 2**20}); the oldest go first")
            q.add_argument("--files-root", metavar="DIR", help="accept file inputs given as paths inside DIR "
                           "(without it, files come only as multipart/form-data uploads)")
            q.add_argument("--mcp", action="store_true", help="also offer the flow as an MCP tool at /mcp (streamable HTTP; "
                           "the tools extra)")
        q.set_defaults(fn=fn)
