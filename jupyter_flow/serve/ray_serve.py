"""``jupyter-flow serve flow|model ... --ray``: a served flow or model on Ray Serve.

The steps, as `RayServer` takes them::

    server = RayServer.for_flow("contract.flow.yaml", port=8000)   # validated; no Ray yet
    server.start()          # Ray (local, or --address), Serve's HTTP proxy, the deployments
    await server.follow(stop)   # edits of the flow file, each one a redeploy
    server.close()          # its applications deleted; a local Ray shut down

On a cluster of its own (``--address``, or ``RAY_ADDRESS``), a server is one user of the
cluster's Serve among others: it deploys nothing when its flow's application name or the
ingress's route (``/``) is already taken there (FlowError naming the application), and
stopping it deletes its own applications only, leaving Serve and the others running.
Only a local Ray this server started is shut down with it.

The deployments are those of `jupyter_flow.serve.ray_deploy` (an ingress with the flow's
routes, one deployment per model node). The routes, limits and answers are those of the
one-process server (`jupyter_flow.serve.app`), which the ingress runs as it is.

Edits: the driver follows the flow file as the one-process server does (an edit is read
once it has settled, and validated in a thread). A valid edit is deployed: the model
nodes it changed get new applications, then the ingress rolls over to the new flow, and
the applications no node uses any more are deleted once their last requests are done. A
broken edit (invalid, or one whose deployments do not start) is not deployed: the last
good flow serves on, and ``/health`` says ``degraded`` with the reason, as in one process.

Ray is an optional extra: ``pip install 'jupyter-flow[ray]'``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import httpx
import ray
from pydantic import ValidationError
from ray import serve
from ray.serve.config import AutoscalingConfig

from jupyter_flow import raylocal
from jupyter_flow.errors import FlowError, FlowValidationError, Problem
from jupyter_flow.flow import Flow
from jupyter_flow.raylocal import error_line, flow_payload
from jupyter_flow.serve.app import model_config, model_flow
from jupyter_flow.serve.ray_deploy import INGRESS_DEPLOYMENT, MODEL_DEPLOYMENT, FlowLayout, layout
from jupyter_flow.serve.ray_replicas import FlowIngress, ModelReplica, StatusBoard
from jupyter_flow.serve.state import DEFAULT_SETTLE_S, FlowService, ReloadStatus

__all__ = ["DEPLOY_TIMEOUT_S", "LOCAL_CPUS", "LOCAL_OBJECT_STORE_BYTES", "RETIRE_AFTER_S", "RayServer", "run_forever", "start_local_ray"]

log = logging.getLogger("jupyter_flow.serve")

#: A local Ray started for serving: 2 CPUs, a small object store (answers pass through
#: it only when large), no dashboard.
LOCAL_CPUS = 2
LOCAL_OBJECT_STORE_BYTES = 200 * 1024**2
#: How long applications no node uses any more are kept after a redeploy, so that the
#: requests the old ingress still serves finish (Serve drains a replica within 20 s).
RETIRE_AFTER_S = 30.0
#: How long one application may take to be running (its replicas started, models loaded).
DEPLOY_TIMEOUT_S = 600.0
#: How long Serve's proxy may take to list its routes.
PROXY_TIMEOUT_S = 10.0


#: autoscaling settings that name code (an import path) for Serve's controller to run
_CODE_SETTINGS = frozenset({"policy"})


def _check_autoscaling(flow: Flow) -> None:
    """Ray Serve's autoscaling settings that `deploy:` passes through: known names and values."""
    problems: list[Problem] = []
    for node_id, spec in flow.spec.deploy.items():
        if spec.autoscaling_config is None:
            continue
        given = spec.autoscaling_config.model_dump(exclude_none=True)
        where = f"deploy.{node_id}.autoscaling_config"
        for name in sorted(set(given) & _CODE_SETTINGS):
            problems.append(Problem("names code for Ray Serve to import and run, which a flow file may not: set a custom "
                                    "autoscaling policy in Python, not in the flow file", node=node_id, field=f"{where}.{name}"))
            del given[name]
        for name in sorted(set(given) - set(AutoscalingConfig.model_fields)):
            known = ", ".join(sorted(n for n in AutoscalingConfig.model_fields if not n.startswith("_")))
            problems.append(Problem(f"unknown setting (Ray Serve's are: {known})", node=node_id, field=f"{where}.{name}"))
        try:
            AutoscalingConfig(**{k: v for k, v in given.items() if k in AutoscalingConfig.model_fields})
        except ValidationError as exc:
            for err in exc.errors():
                field = ".".join(str(p) for p in (where, *err["loc"]))
                problems.append(Problem(err["msg"].removeprefix("Value error, "), node=node_id, field=field))
    if problems:
        raise FlowValidationError(problems, source=str(flow.source) if flow.source else None)


def start_local_ray(*, tries: int = 2) -> None:
    """Start the private local Ray ``serve --ray`` runs on: `LOCAL_CPUS` CPUs, a small
    object store, no dashboard, no token; a start that fails is tried `tries` times in all
    (see `jupyter_flow.raylocal.start_local_ray`)."""
    raylocal.start_local_ray(num_cpus=LOCAL_CPUS, object_store_bytes=LOCAL_OBJECT_STORE_BYTES, tries=tries)


def _check_resources(plan: FlowLayout, total: Mapping[str, float], flow: Flow) -> None:
    """A replica that asks for more than the whole cluster has would wait for ever: refused,
    naming the node and field. (A cluster that adds nodes on demand may have more later.)"""
    problems: list[Problem] = []
    for model in plan.models:
        if model.index:  # a variant asks what its node asks
            continue
        asked = model.options.get("ray_actor_options", {})
        for name, resource, unit in (("num_gpus", "GPU", "GPUs"), ("num_cpus", "CPU", "CPUs"), ("memory", "memory", "bytes")):
            want = float(asked.get(name) or 0)
            have = float(total.get(resource, 0))
            if want > have:
                problems.append(Problem(f"asks for {want:g} {unit} per replica; the Ray cluster has {have:g} in all",
                                        node=model.node, field=f"deploy.{model.node}.ray_actor_options.{name}"))
    if problems:
        raise FlowValidationError(problems, source=str(flow.source) if flow.source else None)


def _delete_app(name: str, *, blocking: bool = True) -> None:
    """Delete the Serve application `name`, while this process is still connected to Ray;
    failures are passed over (the caller is cleaning up). Once Ray is shut down there is
    nothing to delete, and Serve's API would start a new local Ray to look for it, from
    whatever thread called (a timer's: the kernel then ends that Ray when the thread ends,
    and Ray ends this process a minute later for its lost cluster)."""
    if not ray.is_initialized():
        return
    with contextlib.suppress(Exception):
        serve.delete(name, _blocking=blocking)


def _serve_apps(proxy: str) -> dict[str, str | None]:
    """The Serve applications on the cluster now, by name: their route prefix (None: none
    known). The names are `serve.status()`'s; the routes are what Serve's proxy at `proxy`
    lists at `/-/routes` (route prefix -> application), Serve's public list of them."""
    names = list(serve.status().applications)
    routes: dict[str, str] = {}
    with contextlib.suppress(httpx.HTTPError, ValueError, AttributeError):
        reply = httpx.get(f"{proxy}/-/routes", timeout=PROXY_TIMEOUT_S)
        if reply.status_code == 200:
            routes = {str(app): str(prefix) for prefix, app in reply.json().items()}
    return {name: routes.get(name) for name in names}


def _run_app(app: Any, name: str, route_prefix: str | None) -> None:
    """`serve.run` with a deadline: an application not running within `DEPLOY_TIMEOUT_S`
    (replicas waiting for resources, a model that takes for ever to load) is deleted and
    TimeoutError says so."""
    failed: list[BaseException] = []

    def run() -> None:
        try:
            serve.run(app, name=name, route_prefix=route_prefix)
        except BaseException as exc:  # handed to the caller's thread
            failed.append(exc)

    thread = threading.Thread(target=run, name=f"deploy {name}", daemon=True)
    raylocal.calls_ray(thread)  # past the deadline it runs on: Ray is shut down only after it ends
    thread.start()
    thread.join(DEPLOY_TIMEOUT_S)
    if thread.is_alive():
        _delete_app(name, blocking=False)
        raise TimeoutError(f"not running after {DEPLOY_TIMEOUT_S:g} s (its replicas may wait for resources the cluster "
                           "lacks, or take long to start)")
    if failed:
        raise failed[0]


def _check_deploy(flow: Flow) -> None:
    """Every problem of the flow's `deploy:` at once, each naming its node and field."""
    problems: list[Problem] = []
    for check in (layout, _check_autoscaling):
        try:
            check(flow)
        except FlowValidationError as exc:
            problems.extend(exc.problems)
    if problems:
        raise FlowValidationError(problems, source=str(flow.source) if flow.source else None)


class RayServer:
    """A flow or a model served on Ray Serve (see the module docstring)."""

    def __init__(self, mode: str, flow: Flow, target: Any, *, host: str = "127.0.0.1", port: int = 8000,
                 address: str | None = None, options: Mapping[str, Any] | None = None,
                 settle_s: float = DEFAULT_SETTLE_S) -> None:
        self.mode = mode
        self.target = target  # what the ingress builds its app from (see FlowIngress)
        self.host = host
        self.port = port
        self.address = address or os.environ.get("RAY_ADDRESS") or None  # as Ray's own tools read it
        self.options = dict(options or {})
        self.service = FlowService(flow, keep_runs=0, settle_s=settle_s)
        self.layout: FlowLayout | None = None
        self._board: Any = None
        self._owns_ray = False
        self._retiring: dict[str, threading.Timer] = {}
        self._retire_lock = threading.Lock()  # `_retiring` is changed by the deploy thread and the timers
        self._deploy_lock = threading.Lock()  # one deploy at a time
        _check_deploy(flow)  # before any Ray starts

    @classmethod
    def for_flow(cls, flow: Flow | str | Path, **kwargs: Any) -> RayServer:
        """A flow file (or Flow) to serve; `options` are `flow_app`'s."""
        if not isinstance(flow, Flow):
            flow = Flow.load(flow)
        flow.validate()
        return cls("flow", flow, None, **kwargs)

    @classmethod
    def for_model(cls, config: Mapping[str, Any] | str | Path, **kwargs: Any) -> RayServer:
        """A model service config (a YAML file or a mapping); `options` are `model_app`'s."""
        mapping, source = model_config(config)
        flow = model_flow(mapping, source=source)
        return cls("model", flow, str(source.resolve()) if source is not None else dict(mapping), **kwargs)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    # -- starting and stopping ------------------------------------------------------------
    def start(self) -> RayServer:
        """Connect to Ray (the cluster at `address`, else ``RAY_ADDRESS``'s, else a local
        one started now), start Serve's proxy, deploy the flow."""
        if not ray.is_initialized():
            self._connect()
        serve.start(http_options={"host": self.host, "port": self.port})
        self._board = ray.remote(num_cpus=0)(StatusBoard).remote(self.service.status())
        try:
            self._check_free(layout(self.service.flow))
            self.deploy(self.service.flow)
        except BaseException:
            self.close()
            raise
        return self

    def _connect(self) -> None:
        if not self.address:
            start_local_ray()
            self._owns_ray = True  # a private Ray: it goes with this server
            return
        try:
            ray.init(address=self.address, log_to_driver=False, configure_logging=False)
        except Exception as exc:  # Ray raises plain Exception when a node does not come up in time
            raise FlowError(f"cannot connect to the Ray cluster at {self.address!r}: {error_line(exc)}") from exc

    def _check_free(self, plan: FlowLayout) -> None:
        """Refuse to deploy over another server's applications on a shared cluster: the
        flow's application name, or the ingress's route, already taken."""
        host = "127.0.0.1" if self.host in ("0.0.0.0", "::", "") else self.host
        apps = _serve_apps(f"http://{f'[{host}]' if ':' in host else host}:{self.port}")
        where = f"on the Ray cluster at {self.address!r}" if self.address else "on this Ray cluster"
        if plan.ingress_app in apps:
            raise FlowError(f"a Serve application named '{plan.ingress_app}' (the flow's name) already runs {where}, at "
                            f"route {apps[plan.ingress_app] or '(none)'!r}: another server of this flow? Stop it, or "
                            "rename this flow")
        for name, route in sorted(apps.items()):
            if route == "/":
                raise FlowError(f"the route '/' that the flow's ingress ('{plan.ingress_app}') serves at is taken "
                                f"{where} by the Serve application '{name}': stop that application (serve.delete"
                                f"('{name}')) or serve this flow on another cluster")

    def close(self) -> None:
        """Delete this server's applications (only those); shut down a local Ray it started."""
        with self._retire_lock:
            for timer in self._retiring.values():
                timer.cancel()
            apps = [*self._retiring, *(self.layout.apps() if self.layout else [])]
            self._retiring.clear()
            self.layout = None
        self._board = None  # Ray's objects are let go while Ray is up (see raylocal.shutdown_ray)
        if self._owns_ray:  # a Ray of its own goes whole
            with contextlib.suppress(Exception):
                serve.shutdown()
            raylocal.shutdown_ray()
            self._owns_ray = False
            return
        for app in apps:
            _delete_app(app)

    def __enter__(self) -> RayServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # -- deploying -------------------------------------------------------------------------
    def deploy(self, flow: Flow) -> None:
        """Deploy `flow`: new applications for the model nodes it changed, then the ingress;
        the applications left unused are deleted later. Blocking (minutes at worst). Raises
        FlowError naming the node whose deployment did not start; the flow served before
        then serves on, and the applications retiring then are deleted as planned."""
        with self._deploy_lock:
            _check_deploy(flow)
            # the applications keep the name they started with: an edit of the flow's name would
            # otherwise deploy a second ingress at the route '/' the first holds
            new = layout(flow, prefix=self.layout.ingress_app if self.layout else None)
            _check_resources(new, ray.cluster_resources(), flow)
            with self._retire_lock:  # back in use before they were deleted: they still run
                reclaimed = [app for app in new.apps() if app in self._retiring]
                for app in reclaimed:
                    self._retiring.pop(app).cancel()
            try:
                self._deploy(flow, new, reclaimed)
            except BaseException:
                with self._retire_lock:  # not in use after all: deleted later, as they were to be
                    for app in reclaimed:
                        self._retire(app)
                raise

    def _deploy(self, flow: Flow, new: FlowLayout, reclaimed: list[str]) -> None:
        running = set(self.layout.apps()) if self.layout else set()
        payload = flow_payload(flow)
        started: list[str] = []
        for model in new.models:
            if model.app in running or model.app in reclaimed:
                continue
            deployment = serve.deployment(name=MODEL_DEPLOYMENT, **model.options)(ModelReplica)
            try:
                _run_app(deployment.bind(payload, model.node, model.index), model.app, None)
            except Exception as exc:
                for name in [*started, model.app]:
                    _delete_app(name)
                raise FlowError(f"node '{model.node}': its deployment on Ray Serve did not start: {error_line(exc)}") from exc
            started.append(model.app)
        target = payload if self.mode == "flow" else self.target
        ingress = serve.deployment(name=INGRESS_DEPLOYMENT, **new.ingress_options)(FlowIngress)
        try:
            _run_app(ingress.bind(self.mode, target, self.options, list(new.models), self._board), new.ingress_app, "/")
        except Exception as exc:
            for name in started:
                _delete_app(name)
            raise FlowError(f"the flow's ingress on Ray Serve did not start: {error_line(exc)}") from exc
        with self._retire_lock:
            old, self.layout = running, new
            for app in sorted(old - set(new.apps())):
                self._retire(app)

    def _retire(self, app: str) -> None:
        """Delete `app` after `RETIRE_AFTER_S`, unless a deploy takes it back first. The
        caller holds `_retire_lock`."""
        def delete() -> None:
            with self._retire_lock:
                if self._retiring.get(app) is not timer:  # taken back (or closed) meanwhile
                    return
                del self._retiring[app]
                _delete_app(app, blocking=False)

        timer = threading.Timer(RETIRE_AFTER_S, delete)
        timer.daemon = True
        self._retiring[app] = timer
        timer.start()

    # -- following the file ----------------------------------------------------------------
    async def follow(self, stop: asyncio.Event) -> None:
        """Follow the flow file until `stop`: each valid edit deployed, each status published."""
        if self.mode != "flow" or self.service.source is None:
            await stop.wait()
            return

        async def accept(flow: Flow) -> None:
            await asyncio.to_thread(self.deploy, flow)

        await self.service.watch(stop, accept=accept, published=self._publish)

    async def _publish(self, status: ReloadStatus) -> None:
        board = self._board
        if board is not None:  # None once closed
            await board.set.remote(status)

    @property
    def status(self) -> ReloadStatus:
        return self.service.status()


def run_forever(server: RayServer) -> int:
    """Serve until interrupted (the CLI): start, follow the file, close on Ctrl-C."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    t0 = time.perf_counter()
    server.start()
    log.info("serving %s on Ray Serve at %s (deployed in %.1f s)", server.service.flow.name, server.url, time.perf_counter() - t0)

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):  # Ray's driver does not let SIGINT through on its own
            with contextlib.suppress(NotImplementedError, RuntimeError):
                loop.add_signal_handler(sig, stop.set)
        await server.follow(stop)

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        pass
    finally:
        log.info("stopping: deleting the applications")
        server.close()
    return 0
