"""`jupyter-flow serve`: a model as a service, and a flow as a service (Starlette + uvicorn).

- ``serve model CONFIG``: CONFIG is one node in YAML (``type``, ``config``, and the request
  fields under ``inputs``). ``POST /predict`` takes those fields as JSON (lists allowed) and
  answers the node's output. Concurrent requests share the node, so a model node's
  micro-batcher gathers them into one forward pass.
- ``serve flow FLOW``: ``POST /run`` runs the flow on the posted inputs and answers its
  outputs and a run id; ``GET /runs/{id}`` gives that run's trace. The file is watched: a
  valid edit serves the next request, an invalid one is rejected, logged and reported by
  ``/health`` while the last good flow keeps serving.

Both have ``GET /health`` and ``GET /metrics`` (Prometheus). They bind 127.0.0.1 unless
told otherwise. With ``--token-env VAR`` (or JUPYTER_FLOW_TOKEN set) every route but
``/health`` needs ``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import hmac
import logging
import os
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from jupyter_flow.errors import FlowError, FlowValidationError, MissingDependencyError, Problem
from jupyter_flow.flow import Flow
from jupyter_flow.http import make_client
from jupyter_flow.spec import FlowSpec, spec_from_dict
from jupyter_flow.trace import RunResult, to_jsonable

__all__ = ["FlowService", "add_to_cli", "flow_app", "model_app", "model_flow"]

log = logging.getLogger("jupyter_flow.serve")
TOKEN_ENV = "JUPYTER_FLOW_TOKEN"
_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


def _deps() -> None:
    for module, package in (("starlette", "starlette"), ("uvicorn", "uvicorn"), ("prometheus_client", "prometheus-client")):
        try:
            __import__(module)
        except ImportError:
            raise MissingDependencyError(package, "serve", "jupyter-flow serve") from None


class _Metrics:
    """Prometheus metrics in a registry of the app's own (so apps never share counters)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("jupyter_flow_requests", "Requests by route and status code", ["route", "status"], registry=self.registry)
        self.latency = Histogram("jupyter_flow_request_seconds", "Request latency", ["route"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.errors = Counter("jupyter_flow_errors", "Failed runs by node and error type", ["node", "type"], registry=self.registry)
        self.batch = Histogram("jupyter_flow_batch_size", "Micro-batch sizes of model nodes", ["node"], buckets=_BATCH_BUCKETS, registry=self.registry)
        self.node_latency = Histogram("jupyter_flow_node_seconds", "Node durations", ["node"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.variant = Counter("jupyter_flow_variant_requests", "Runs per node variant", ["node", "variant", "role"], registry=self.registry)
        self.variant_latency = Histogram("jupyter_flow_variant_seconds", "Latency per node variant", ["node", "variant", "role"], buckets=_LATENCY_BUCKETS, registry=self.registry)
        self.reloads = Counter("jupyter_flow_reloads", "Flow file reloads by outcome", ["outcome"], registry=self.registry)
        self.in_flight = Gauge("jupyter_flow_in_flight", "Requests being served", registry=self.registry)

    def observe(self, result: RunResult, *, shadows: bool = True) -> None:
        for record in result.records.values():
            if record.duration_s is not None and not record.cached:
                self.node_latency.labels(record.node).observe(record.duration_s)
            size = record.extra.get("batch_size")
            if isinstance(size, int):
                self.batch.labels(record.node).observe(size)
            if record.status == "error" and record.error:
                self.errors.labels(record.node, record.error.type).inc()
            if record.variant is not None:
                self.variant.labels(record.node, record.variant, "primary").inc()
                if record.duration_s is not None:
                    self.variant_latency.labels(record.node, record.variant, "primary").observe(record.duration_s)
        if shadows:
            self.observe_shadows(result)

    def observe_shadows(self, result: RunResult) -> None:
        for record in result.records.values():
            for vid, shadow in (record.shadow or {}).items():
                if vid == record.variant:
                    continue
                self.variant.labels(record.node, vid, "shadow").inc()
                if shadow.get("duration_s") is not None:
                    self.variant_latency.labels(record.node, vid, "shadow").observe(shadow["duration_s"])

    def render(self) -> tuple[bytes, str]:
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class FlowService:
    """The state behind a served flow: the current flow, the file watch, recent runs."""

    def __init__(self, flow: Flow, *, keep_runs: int = 1000, watch_interval_s: float = 0.5) -> None:
        self.flow = flow
        self.source = flow.source
        self.runs: OrderedDict[str, RunResult] = OrderedDict()
        self.keep_runs = keep_runs
        self.watch_interval_s = watch_interval_s
        self.reload_error: str | None = None
        self.loaded_at = time.time()
        self._mtime = self._stat()
        self.metrics = _Metrics()

    def _stat(self) -> float | None:
        try:
            return self.source.stat().st_mtime_ns if self.source else None
        except OSError:
            return None

    def check_reload(self) -> bool:
        """Load the file again if it changed; keep the last good flow on a bad edit."""
        mtime = self._stat()
        if self.source is None or mtime is None or mtime == self._mtime:
            return False
        self._mtime = mtime
        try:
            flow = Flow.load(self.source).validate()
        except FlowError as exc:
            self.reload_error = str(exc)
            self.metrics.reloads.labels("rejected").inc()
            log.error("rejected the edit of %s; still serving the last good flow: %s", self.source, exc)
            return False
        self.flow = flow
        self.reload_error = None
        self.loaded_at = time.time()
        self.metrics.reloads.labels("ok").inc()
        log.info("reloaded %s", self.source)
        return True

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.watch_interval_s)
            self.check_reload()

    def remember(self, result: RunResult) -> None:
        self.runs[result.run_id] = result
        while len(self.runs) > self.keep_runs:
            self.runs.popitem(last=False)


def _auth_middleware(token: str | None) -> list[Any]:
    if not token:
        return []
    from starlette.middleware import Middleware
    from starlette.middleware.base import BaseHTTPMiddleware
    from starlette.responses import JSONResponse

    expected = f"Bearer {token}".encode()

    async def check(request: Any, call_next: Any) -> Any:
        if request.url.path != "/health":
            given = request.headers.get("authorization", "").encode()
            if not hmac.compare_digest(given, expected):
                return JSONResponse({"error": "missing or wrong bearer token"}, status_code=401)
        return await call_next(request)

    return [Middleware(BaseHTTPMiddleware, dispatch=check)]


def _body_inputs(body: Any, *, wrapped: bool) -> dict[str, Any]:
    """The run inputs a request body carries (a JSON object, for a flow also `{"inputs":
    {...}}`); their values are checked by the flow's input rules like any other run's."""
    if not isinstance(body, Mapping):
        raise FlowValidationError([Problem("the request body must be a JSON object", field="body")])
    if wrapped and "inputs" in body and set(body) <= {"inputs"}:
        body = body["inputs"]
        if not isinstance(body, Mapping):
            raise FlowValidationError([Problem("must be a JSON object of input names to values", field="inputs")])
    return dict(body)


_MAX_TENSOR_VALUES = 100_000


def _plain(value: Any) -> Any:
    """A model's answer as JSON for API clients: tensors and arrays as (nested) lists of
    numbers up to a size; larger ones, and everything else odd, as `to_jsonable` gives."""
    if hasattr(value, "shape") and hasattr(value, "tolist") and getattr(value, "size", None) is not None:
        size = value.numel() if hasattr(value, "numel") else int(value.size)
        if size <= _MAX_TENSOR_VALUES:
            data = value.detach().cpu() if hasattr(value, "detach") else value
            return to_jsonable(data.tolist())
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return to_jsonable(value)


def _problems_json(exc: FlowValidationError) -> dict[str, Any]:
    return {"error": "invalid request: " + "; ".join(map(str, exc.problems)), "problems": [p.to_dict() for p in exc.problems]}


class _ServiceApp:
    """The routes of a served model or flow, on one `FlowService`: its lifespan (HTTP
    client, file watch, warm-up), the run route, health, metrics and run traces."""

    def __init__(self, service: FlowService, *, mode: str, warm: bool) -> None:
        self.service = service
        self.metrics = service.metrics
        self.mode = mode
        self.warm = warm
        self.client: Any = None
        self.warm_error: str | None = None
        self.background: set[asyncio.Future[Any]] = set()  # shadow runs finishing after their response

    # -- lifespan ---------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        self.client = make_client()
        service = self.service
        watcher = asyncio.create_task(service.watch()) if self.mode == "flow" and service.source else None
        if self.warm:
            await self.warm_up()
        try:
            yield
        finally:
            if self.background:
                await asyncio.gather(*self.background, return_exceptions=True)
            if watcher is not None:
                watcher.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await watcher
            await self.client.aclose()

    async def warm_up(self) -> None:
        for planned in self.service.flow.plan.nodes.values():
            try:
                await asyncio.to_thread(planned.node.ensure_warm)
            except Exception as exc:  # reported by /health; requests then fail with the reason
                self.warm_error = f"node '{planned.id}': warm-up failed: {type(exc).__name__}: {exc}"
                log.error("%s", self.warm_error)

    # -- runs -------------------------------------------------------------------------
    async def run_request(self, request: Any, route: str) -> Any:
        from starlette.responses import JSONResponse

        t0 = time.perf_counter()
        self.metrics.in_flight.inc()
        status = 500
        try:
            if self.mode == "flow":
                self.service.check_reload()
            flow = self.service.flow
            try:
                body = await request.json()
            except ValueError:
                status = 422
                return JSONResponse({"error": "the request body is not JSON", "problems": [{"field": "body", "node": None, "edge": None, "message": "not JSON"}]}, status_code=422)
            try:
                inputs = flow.resolve_inputs(_body_inputs(body, wrapped=self.mode == "flow"))
            except FlowValidationError as exc:
                status = 422
                return JSONResponse(_problems_json(exc), status_code=422)
            result = await flow.arun(inputs, http_client=self.client, raise_on_error=False, wait_for_shadows=False)
            status, answer = self.answer(result)
            return JSONResponse(answer, status_code=status)
        except FlowError as exc:
            return JSONResponse({"error": str(exc)}, status_code=500)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - t0)

    def answer(self, result: RunResult) -> tuple[int, Any]:
        """Record a finished run (metrics, shadows, history); the status code and body."""
        self.metrics.observe(result, shadows=not result.background)
        if result.background:  # shadows must not delay the answer; their trace fills in later
            task = asyncio.ensure_future(self.finish_shadows(result))
            self.background.add(task)
            task.add_done_callback(self.background.discard)
        self.service.remember(result)
        if not result.ok:
            failed = result.failed()
            status = 504 if result.status == "timeout" else 500
            return status, {"error": result.error, "run_id": result.run_id, "node": failed[0].node if failed else None}
        if self.mode == "model":
            (only,) = result.outputs.values()
            return 200, _plain(only)
        return 200, {"run_id": result.run_id, "outputs": to_jsonable(result.outputs)}

    async def finish_shadows(self, result: RunResult) -> None:
        await asyncio.gather(*result.background, return_exceptions=True)
        self.metrics.observe_shadows(result)

    # -- routes -----------------------------------------------------------------------
    async def predict(self, request: Any) -> Any:
        return await self.run_request(request, "/predict")

    async def run(self, request: Any) -> Any:
        return await self.run_request(request, "/run")

    async def get_run(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        result = self.service.runs.get(request.path_params["run_id"])
        if result is None:
            return JSONResponse({"error": f"no run {request.path_params['run_id']!r} (the last {self.service.keep_runs} are kept)"}, status_code=404)
        return JSONResponse(result.to_dict())

    async def health(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        from jupyter_flow import __version__

        service = self.service
        body: dict[str, Any] = {"status": "ok", "version": __version__, "mode": self.mode, "flow": service.flow.name}
        if self.mode == "flow":
            body.update(source=str(service.source) if service.source else None, loaded_at=service.loaded_at, reload_error=service.reload_error)
            if service.reload_error:
                body["status"] = "degraded"
        else:
            body.update(_model_health(service.flow))
        if self.warm_error:
            body.update(status="error", error=self.warm_error)
        return JSONResponse(body, status_code=200 if body["status"] != "error" else 503)

    async def metrics_route(self, request: Any) -> Any:
        from starlette.responses import Response

        data, ctype = self.metrics.render()
        return Response(data, media_type=ctype)

    def routes(self) -> list[Any]:
        from starlette.routing import Route

        routes = [Route("/health", self.health, methods=["GET"]), Route("/metrics", self.metrics_route, methods=["GET"])]
        if self.mode == "model":
            routes.append(Route("/predict", self.predict, methods=["POST"]))
        else:
            routes += [Route("/run", self.run, methods=["POST"]), Route("/runs/{run_id}", self.get_run, methods=["GET"])]
        return routes


def _build_app(service: FlowService, *, mode: str, token: str | None, warm: bool) -> Any:
    from starlette.applications import Starlette

    app = _ServiceApp(service, mode=mode, warm=warm)
    return Starlette(routes=app.routes(), lifespan=app.lifespan, middleware=_auth_middleware(token))


def _model_health(flow: Flow) -> dict[str, Any]:
    (planned,) = flow.plan.nodes.values()
    node = planned.node
    info: dict[str, Any] = {"node": planned.id, "type": planned.spec.type, "model_loaded": not node.needs_warm_up}
    with contextlib.suppress(ImportError):
        import torch

        info["cuda_available"] = torch.cuda.is_available()
        info["torch"] = torch.__version__
    info.update(node.runtime_info())
    return info


def model_flow(config: Mapping[str, Any] | str | Path) -> Flow:
    """A one-node flow from a model service config (a mapping or a YAML file)."""
    source = None
    if not isinstance(config, Mapping):
        source = Path(config)
        try:
            config = yaml.safe_load(source.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise FlowValidationError("no such file", source=str(source)) from None
        except yaml.YAMLError as exc:
            raise FlowValidationError(f"not YAML: {exc}", source=str(source)) from None
        if not isinstance(config, Mapping):
            raise FlowValidationError("a model service config is a mapping with `type` and `config`", source=str(source))
    body = dict(config)
    name = str(body.pop("name", "model"))
    inputs = body.pop("inputs", None) or {"text": {"type": "text"}}
    node = {"id": body.pop("id", "model"), **body}
    spec: FlowSpec = spec_from_dict({"name": name, "inputs": inputs, "nodes": [node]}, source=str(source) if source else None)
    # relative model paths are read from the config file's folder
    return Flow(spec, source=source).validate()


def model_app(config: Mapping[str, Any] | str | Path, *, token: str | None = None, warm: bool = True) -> Any:
    """The Starlette app of a model service."""
    _deps()
    return _build_app(FlowService(model_flow(config)), mode="model", token=token, warm=warm)


def flow_app(flow: Flow | str | Path, *, token: str | None = None, warm: bool = True, watch_interval_s: float = 0.5) -> Any:
    """The Starlette app of a flow service (the file is watched when the flow has one)."""
    _deps()
    if not isinstance(flow, Flow):
        flow = Flow.load(flow)
    flow.validate()
    return _build_app(FlowService(flow, watch_interval_s=watch_interval_s), mode="flow", token=token, warm=warm)


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
    uvicorn.run(app, host=args.host, port=args.port, log_level=args.log_level, backlog=2048)
    return 0


def _token(args: argparse.Namespace) -> str | None:
    if args.token_env:
        value = os.environ.get(args.token_env)
        if not value:
            raise FlowValidationError([Problem(f"environment variable {args.token_env} is empty or not set", field="--token-env")])
        return value
    return os.environ.get(TOKEN_ENV) or None


def _cmd_model(args: argparse.Namespace) -> int:
    return _serve(model_app(args.config, token=_token(args)), args)


def _cmd_flow(args: argparse.Namespace) -> int:
    return _serve(flow_app(args.flow, token=_token(args)), args)


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
        q.set_defaults(fn=fn)
