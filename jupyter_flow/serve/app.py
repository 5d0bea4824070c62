"""A model as a service, and a flow as a service: the Starlette apps of `jupyter-flow serve`
(run by uvicorn in one process, or by Ray Serve: `jupyter_flow.serve.commands`).

- ``serve model CONFIG``: CONFIG is one node in YAML (``type``, ``config``, and the request
  fields under ``inputs``). ``POST /predict`` takes those fields as JSON (lists allowed) and
  answers the node's output. Concurrent requests share the node, so a model node's
  micro-batcher gathers them into one forward pass.
- ``serve flow FLOW``: ``POST /run`` runs the flow on the posted inputs (JSON, or
  ``multipart/form-data`` with files for `file` inputs) and answers its outputs and a run
  id; ``GET /runs/{id}`` gives that run's trace. One watcher follows the file: an edit is
  taken once its content has stayed the same for a short settle time, validated in a
  thread and swapped in whole; an invalid one is rejected, logged and reported by
  ``/health`` while the last good flow keeps serving.

Both have ``GET /health`` and ``GET /metrics`` (Prometheus). They bind 127.0.0.1 unless
told otherwise. With ``--token-env VAR`` (or JUPYTER_FLOW_TOKEN set) every route but
``/health`` needs ``Authorization: Bearer <token>``, and ``/health`` without it says only
ok or degraded. What a client may send and see (body size, files, paths in messages) is
`jupyter_flow.serve.guards`' subject.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from jupyter_flow import telemetry
from jupyter_flow.errors import FlowError, FlowValidationError, MissingDependencyError, Problem, WorkersBusyError
from jupyter_flow.flow import Flow
from jupyter_flow.http import make_client
from jupyter_flow.serve import v2
from jupyter_flow.serve.codec import MAX_VALUES
from jupyter_flow.serve.guards import DEFAULT_BODY_TIMEOUT_S, DEFAULT_MAX_BODY, MAX_BODY_DEPTH, BodyLimit, BodyRefused, FileInputs, Scrubber
from jupyter_flow.serve.mcp import FlowMcp
from jupyter_flow.serve.ray_deploy import ReplicasUnavailableError
from jupyter_flow.serve.state import DEFAULT_KEEP_BYTES, DEFAULT_KEEP_RUNS, DEFAULT_SETTLE_S, FlowService
from jupyter_flow.spec import FlowSpec, parse_json, spec_from_dict
from jupyter_flow.trace import RunResult
from jupyter_flow.values import ValueTooLarge, encode, limit

__all__ = ["FlowService", "flow_app", "model_app", "model_config", "model_flow"]

log = logging.getLogger("jupyter_flow.serve")


def _deps() -> None:
    for module, package in (("starlette", "starlette"), ("uvicorn", "uvicorn"), ("prometheus_client", "prometheus-client"),
                            ("watchfiles", "watchfiles"), ("python_multipart", "python-multipart")):
        try:
            __import__(module)
        except ImportError:
            raise MissingDependencyError(package, "serve", "jupyter-flow serve") from None


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


#: An answer holds every value of its outputs (tensor elements and list items), up to this
#: many in all (the bound of one V2 tensor); a larger one is refused with a 500 that says so.
MAX_ANSWER_VALUES = MAX_VALUES
_ANSWER = limit(max_values=MAX_ANSWER_VALUES)


def _problems_json(exc: FlowValidationError) -> dict[str, Any]:
    return {"error": "invalid request: " + "; ".join(map(str, exc.problems)), "problems": [p.to_dict() for p in exc.problems]}


class _ServiceApp:
    """The routes of a served model or flow, on one `FlowService`: its lifespan (HTTP
    client, file watch, warm-up), the run route, health, metrics and run traces."""

    def __init__(self, service: FlowService, *, mode: str, warm: bool, token: str | None = None,
                 files_root: Path | None = None, outputs: tuple[v2.TensorSpec, ...] = ()) -> None:
        self.service = service
        self.metrics = service.metrics
        self.mode = mode
        self.warm = warm
        self.token = token
        self.files_root = files_root.resolve() if files_root is not None else None
        self.client: Any = None
        self.warm_error: str | None = None
        self.background: set[asyncio.Future[Any]] = set()  # shadow runs finishing after their response
        self.protocol = v2.Protocol(self, outputs=outputs)  # the Open Inference Protocol (KServe V2 / Triton)

    # -- lifespan ---------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def lifespan(self, app: Any) -> AsyncIterator[None]:
        self.client = make_client()
        service = self.service
        stop = asyncio.Event()
        watcher = asyncio.create_task(service.watch(stop)) if self.mode == "flow" and service.source else None
        if self.warm:
            await self.warm_up()
            await self.protocol.start()  # a model's outputs its metadata lists, before any request
        try:
            yield
        finally:
            if self.background:
                await asyncio.gather(*self.background, return_exceptions=True)
            if watcher is not None:
                stop.set()
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(watcher, 5)
            await self.client.aclose()

    async def warm_up(self) -> None:
        for node in self.service.flow.plan.node_objects():  # variants too: any may be chosen
            try:
                await asyncio.to_thread(node.ensure_warm)
            except Exception as exc:  # reported by /health; requests then fail with the reason
                self.warm_error = f"node '{node.id}': warm-up failed: {type(exc).__name__}: {exc}"
                log.error("%s", self.warm_error)

    # -- runs -------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def exchange(self, route: str) -> AsyncIterator[Exchange]:
        """One request to a run route, as every such route handles it: one flow for the whole
        request (whatever a reload does), its uploaded files (removed at the end) and its
        metrics (in flight, answers by status, latency). The handler sets `status`."""
        t0 = time.perf_counter()
        self.metrics.in_flight.inc()
        flow = self.service.flow
        ex = Exchange(flow, FileInputs(flow.spec.inputs, self.files_root))
        try:
            yield ex
        finally:
            await asyncio.to_thread(ex.files.close)
            self.metrics.in_flight.dec()
            self.metrics.requests.labels(route, str(ex.status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - t0)

    async def run_request(self, request: Any, route: str) -> Any:
        from starlette.responses import JSONResponse

        async with self.exchange(route) as ex:
            flow, files = ex.flow, ex.files
            try:
                try:
                    body = await self.read_body(request, files)
                    inputs = flow.resolve_inputs(files.confine(_body_inputs(body, wrapped=self.mode == "flow")))
                except BodyRefused as exc:
                    ex.status = exc.status
                    return JSONResponse({"error": str(exc)}, status_code=exc.status)
                except FlowValidationError as exc:
                    ex.status = 422
                    return JSONResponse(files.scrubber.value(_problems_json(exc), messages=True), status_code=422)
                with telemetry.continue_trace(request.headers):  # the caller's `traceparent`, when traced
                    result = await flow.arun(inputs, http_client=self.client, raise_on_error=False,
                                             wait_for_shadows=files.folder is not None)
                code, answer = self.answer(result, files.scrubber)
                response = JSONResponse(answer, status_code=code, headers=self.run_headers(result))
                ex.status = code  # counted as answered only once the answer could be built
                return response
            except FlowError as exc:
                return JSONResponse({"error": files.scrubber.text(str(exc))}, status_code=500)
            except Exception as exc:
                log.exception("%s failed", route)
                return JSONResponse({"error": f"the server failed to answer: {type(exc).__name__}"}, status_code=500)

    async def read_body(self, request: Any, files: FileInputs) -> Any:
        """The request's inputs: a JSON body, or a multipart form whose file fields are
        saved for the run (their inputs get the saved paths)."""
        ctype = request.headers.get("content-type", "")
        if ctype.startswith("multipart/form-data"):
            from starlette.exceptions import HTTPException

            try:
                form = await request.form(max_files=32, max_fields=256)
            except HTTPException as exc:
                raise FlowValidationError([Problem(f"cannot read the form: {exc.detail}", field="body")]) from None
            try:
                inputs: dict[str, Any] = {}
                for name, value in form.multi_items():
                    if isinstance(value, str):
                        inputs[name] = value
                    else:
                        inputs[name] = await asyncio.to_thread(files.save, name, value.filename, value.file)
                return inputs
            finally:
                await form.close()
        raw = await request.body()
        try:
            return parse_json(raw, source="body", max_depth=MAX_BODY_DEPTH)
        except FlowValidationError as exc:
            raise FlowValidationError([Problem(f"the request body is not usable JSON: {exc.problems[0].message}", field="body")]) from None

    def run_headers(self, result: RunResult) -> dict[str, str]:
        headers = {"x-run-id": result.run_id} if self.mode == "flow" or self.service.keep_runs > 0 else {}
        if _workers_busy(result):
            headers["retry-after"] = str(WORKERS_BUSY_RETRY_S)
        return headers

    def answer(self, result: RunResult, scrubber: Scrubber) -> tuple[int, Any]:
        """Record a finished run (`record`); the status code and body of its answer."""
        self.record(result, scrubber)
        if not result.ok:
            return self.failure(result, scrubber)
        # outputs whole, as `run` and `batch` write them (`jupyter_flow.values`), up to
        # MAX_ANSWER_VALUES; what JSON cannot hold is converted, and listed for a flow
        try:
            if self.mode == "model":
                (only,) = result.outputs.values()
                return 200, scrubber.value(encode(only, _ANSWER).data)
            outputs, converted = encode(result.outputs, _ANSWER, path="outputs")
            body = {"run_id": result.run_id, "outputs": scrubber.value(outputs)}
            if result.flow_outputs is not None:  # the flow declares what it answers with
                declared, more = encode(result.flow_outputs, _ANSWER, path="result")
                body["result"], converted = scrubber.value(declared), converted + more
        except ValueTooLarge as exc:
            return 500, {"error": scrubber.text(f"the answer is too large to send: {exc}"), "run_id": result.run_id}
        if converted:
            body["converted"] = [c.to_dict() for c in converted]
        return 200, body

    def record(self, result: RunResult, scrubber: Scrubber) -> None:
        """Record a finished run: metrics, shadows (finishing after the answer), history."""
        self.metrics.observe(result, shadows=not result.background)
        if result.background:  # shadows must not delay the answer; their trace fills in later
            task = asyncio.ensure_future(self.finish_shadows(result, scrubber))
            self.background.add(task)
            task.add_done_callback(self.background.discard)
        self.service.remember(result, scrubber)

    def failure(self, result: RunResult, scrubber: Scrubber) -> tuple[int, dict[str, Any]]:
        """The status code and body of a failed run's answer: 504 for a timeout, else 500."""
        failed = result.failed()
        status = 503 if _workers_busy(result) else 504 if result.status == "timeout" else 500
        error = scrubber.text(encode(result.error).data) if result.error else result.error
        return status, {"error": error, "run_id": result.run_id, "node": failed[0].node if failed else None}

    async def finish_shadows(self, result: RunResult, scrubber: Scrubber) -> None:
        await asyncio.gather(*result.background, return_exceptions=True)
        self.metrics.observe_shadows(result)
        self.service.remember(result, scrubber)  # the kept trace again, now with the shadows' results

    # -- routes -----------------------------------------------------------------------
    async def predict(self, request: Any) -> Any:
        return await self.run_request(request, "/predict")

    async def run(self, request: Any) -> Any:
        return await self.run_request(request, "/run")

    async def get_run(self, request: Any) -> Any:
        from starlette.responses import JSONResponse, Response

        kept = self.service.runs.get(request.path_params["run_id"])
        if kept is None:
            return JSONResponse({"error": f"no run {request.path_params['run_id']!r} (the last {self.service.keep_runs} "
                                          "are kept, fewer when their traces are large)"}, status_code=404)
        return Response(kept, media_type="application/json")

    def _trusted(self, request: Any) -> bool:
        if not self.token:
            return True
        given = request.headers.get("authorization", "").encode()
        return hmac.compare_digest(given, f"Bearer {self.token}".encode())

    async def health(self, request: Any) -> Any:
        from starlette.responses import JSONResponse

        from jupyter_flow import __version__

        service = self.service
        status = "degraded" if self.mode == "flow" and service.reload_error else "ok"
        if self.warm_error:
            status = "error"
        code = 200 if status != "error" else 503
        if not self._trusted(request):  # anyone may ask whether it is up, and nothing more
            return JSONResponse({"status": status}, status_code=code)
        scrub = Scrubber(self.files_root)
        body: dict[str, Any] = {"status": status, "version": __version__, "mode": self.mode, "flow": service.flow.name,
                                "server": _server_info(request)}
        if self.mode == "flow":
            body.update(source=service.source.name if service.source else None, loaded_at=service.loaded_at,
                        reload_error=scrub.text(_named(service.reload_error, service.source)) if service.reload_error else None)
        else:
            body.update(_model_health(service.flow))
        if self.warm_error:
            body["error"] = scrub.text(self.warm_error)
        return JSONResponse(body, status_code=code)

    async def metrics_route(self, request: Any) -> Any:
        from starlette.responses import Response

        data, ctype = self.metrics.render()
        return Response(data, media_type=ctype)

    def routes(self) -> list[Any]:
        """Every route of the app, in one list."""
        from starlette.routing import Route

        routes = [Route("/health", self.health, methods=["GET"]), Route("/metrics", self.metrics_route, methods=["GET"])]
        if self.mode == "model":
            routes.append(Route("/predict", self.predict, methods=["POST"]))
            if self.service.keep_runs > 0:
                routes.append(Route("/runs/{run_id}", self.get_run, methods=["GET"]))
        else:
            routes += [Route("/run", self.run, methods=["POST"]), Route("/runs/{run_id}", self.get_run, methods=["GET"])]
        return routes + self.protocol.routes()


class Exchange:
    """What one request to a run route works with (see `ServedApp.exchange`)."""

    __slots__ = ("flow", "files", "status")

    def __init__(self, flow: Flow, files: FileInputs) -> None:
        self.flow = flow
        self.files = files
        self.status = 500  # until the handler says otherwise


#: what a 503 for busy worker threads asks the client to wait, in seconds
WORKERS_BUSY_RETRY_S = 5


#: errors that say the server is busy or short of replicas, not that the request is wrong
_BUSY = frozenset({WorkersBusyError.__name__, ReplicasUnavailableError.__name__})


def _workers_busy(result: RunResult) -> bool:
    """The run failed because every worker thread was busy with work given up on, or no
    replica of a model node's deployment was left to take it (on Ray Serve)."""
    return any(r.error is not None and r.error.type in _BUSY for r in result.failed())


def _named(message: str, source: Path | None) -> str:
    """`message` with the flow file's path shortened to its name."""
    return message.replace(str(source), source.name) if source is not None else message


def _server_info(request: Any) -> dict[str, str]:
    """Which event loop and HTTP parser serve this app (uvloop and httptools when installed)."""
    loop = type(asyncio.get_running_loop())
    return {"loop": loop.__module__.split(".")[0] if loop.__module__ != "asyncio.unix_events" else "asyncio",
            "http": getattr(request.app.state, "http_parser", "unknown")}


def _build_app(service: FlowService, *, mode: str, token: str | None, warm: bool, files_root: Path | None = None,
               max_body: int = DEFAULT_MAX_BODY, mcp: bool = False, body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
               outputs: tuple[v2.TensorSpec, ...] = ()) -> Any:
    from starlette.applications import Starlette
    from starlette.middleware import Middleware

    app = _ServiceApp(service, mode=mode, warm=warm, token=token, files_root=files_root, outputs=outputs)
    middleware = [Middleware(BodyLimit, limit=max_body, body_timeout_s=body_timeout_s), *_auth_middleware(token)]
    served = FlowMcp(app, max_body=max_body) if mcp else None  # the flow as an MCP tool at /mcp, behind the same guards
    routes = app.routes() + (served.routes() if served else [])
    lifespan = served.lifespan(app.lifespan) if served else app.lifespan
    starlette = Starlette(routes=routes, lifespan=lifespan, middleware=middleware)
    starlette.state.service = service  # what a deployment that runs the app sets up (`ray_replicas`)
    return starlette


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


def model_config(config: Mapping[str, Any] | str | Path) -> tuple[Mapping[str, Any], Path | None]:
    """A model service config as a mapping, and the file it came from (None for a mapping)."""
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
    return config, source


def model_flow(config: Mapping[str, Any] | str | Path, *, source: Path | None = None, validate: bool = True) -> Flow:
    """A one-node flow from a model service config (a mapping, read as if from `source`, or
    a YAML file), validated unless told not to. Its `deploy:` becomes the flow's `deploy:`
    for the node; its `outputs:` are the protocol's (`v2.declared_outputs`)."""
    if not isinstance(config, Mapping):
        config, source = model_config(config)
    body = dict(config)
    name = str(body.pop("name", "model"))
    inputs = body.pop("inputs", None)
    if inputs is None:  # `inputs: {}` takes any fields, those its templates read required
        inputs = {"text": {"type": "text"}}
    body.pop("outputs", None)
    deploy = body.pop("deploy", None)
    node = {"id": body.pop("id", "model"), **body}
    data = {"name": name, "inputs": inputs, "nodes": [node], **({"deploy": {node["id"]: deploy}} if deploy is not None else {})}
    spec: FlowSpec = spec_from_dict(data, source=str(source) if source else None)
    # relative model paths are read from the config file's folder
    flow = Flow(spec, source=source)
    return flow.validate() if validate else flow


def model_app(
    config: Mapping[str, Any] | str | Path,
    *,
    token: str | None = None,
    warm: bool = True,
    max_body: int = DEFAULT_MAX_BODY,
    keep_runs: int = 0,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
) -> Any:
    """The Starlette app of a model service. It keeps no run history unless `keep_runs`
    says how many (then `/runs/{id}` serves them and answers carry `x-run-id`)."""
    _deps()
    config, source = model_config(config)
    outputs = v2.declared_outputs(config.get("outputs"), source=str(source) if source else None)
    service = FlowService(model_flow(config, source=source), keep_runs=keep_runs)
    return _build_app(service, mode="model", token=token, warm=warm, max_body=max_body, body_timeout_s=body_timeout_s,
                      outputs=outputs)


def flow_app(
    flow: Flow | str | Path,
    *,
    token: str | None = None,
    warm: bool = True,
    settle_s: float = DEFAULT_SETTLE_S,
    files_root: str | Path | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    keep_runs: int = DEFAULT_KEEP_RUNS,
    keep_bytes: int = DEFAULT_KEEP_BYTES,
    mcp: bool = False,
    body_timeout_s: float = DEFAULT_BODY_TIMEOUT_S,
) -> Any:
    """The Starlette app of a flow service (the file is watched when the flow has one).
    `file` inputs given as paths must lie inside `files_root`; without it, files come only
    as multipart uploads. With `mcp`, `/mcp` offers the flow as an MCP tool."""
    _deps()
    if not isinstance(flow, Flow):
        flow = Flow.load(flow)
    flow.validate()
    root = Path(files_root) if files_root is not None else None
    if root is not None and not root.is_dir():
        raise FlowValidationError([Problem(f"{root} is not a folder", field="--files-root")])
    service = FlowService(flow, keep_runs=keep_runs, keep_bytes=keep_bytes, settle_s=settle_s)
    return _build_app(service, mode="flow", token=token, warm=warm, files_root=root, max_body=max_body, mcp=mcp,
                      body_timeout_s=body_timeout_s)
