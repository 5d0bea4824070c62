"""Flows and models served on Ray Serve (`serve ... --ray`), on a local Ray this module
starts (2 CPUs, a 200 MB object store, no dashboard) and stops, against the one-process
server over the same files. Real torch models made here, a real echo server on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from servers import AsgiServer, LoopbackServer, Reply, free_port
from test_serve import metric, write

ray = pytest.importorskip("ray", reason="serving on Ray Serve needs the ray extra")
serve = pytest.importorskip("ray.serve", reason="serving on Ray Serve needs ray[serve]")

from jupyter_flow.batching import Batched, BatchInfo  # noqa: E402
from jupyter_flow.cli import main  # noqa: E402
from jupyter_flow.errors import FlowError, FlowValidationError  # noqa: E402
from jupyter_flow.nodes.torch_model import TorchNode  # noqa: E402
from jupyter_flow.raylocal import shutdown_ray  # noqa: E402
from jupyter_flow.serve import ray_serve  # noqa: E402
from jupyter_flow.serve.app import flow_app, model_app  # noqa: E402
from jupyter_flow.serve.ray_serve import RayServer, start_local_ray  # noqa: E402
from jupyter_flow_examples.models import make_torchscript_model  # noqa: E402

pytestmark = pytest.mark.timeout(420)

PAIR = """\
spec_version: 1
name: ray-pair
inputs: {x: {type: list}}
nodes:
  - id: embed
    type: torch
    config: {model: embed.pt, inputs: "{{ x }}", device: cpu, batch: {max_size: 16, max_wait_ms: 50}}
  - id: classify
    type: torch
    config: {model: classify.pt, inputs: "{{ embed.output.output }}", device: cpu}
  - id: echo
    type: http
    config: {endpoint: "%s/echo", input_mapping: {scores: "{{ classify.output.output.tolist() }}"}}
edges:
  - {from: start, to: embed}
  - {from: embed, to: classify}
  - {from: classify, to: echo}
deploy:
  embed: {num_replicas: 2}
"""


@pytest.fixture(scope="module")
def ray_port() -> Iterator[int]:
    """One local Ray (and Serve's HTTP proxy on a free port) for the module: it takes
    20-30 s to start on a loaded 2-core machine."""
    t0 = time.perf_counter()
    start_local_ray(tries=3)  # what `serve --ray` starts: 2 CPUs, a 200 MB object store, no dashboard
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    print(f"Ray and Serve started in {time.perf_counter() - t0:.1f} s")
    try:
        yield port
    finally:
        serve.shutdown()
        shutdown_ray()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("served")
    make_torchscript_model(folder / "embed.pt", out_features=8, seed=1)
    make_torchscript_model(folder / "classify.pt", in_features=8, out_features=3, seed=2)
    return folder


@pytest.fixture(scope="module")
def echo() -> Iterator[LoopbackServer]:
    with LoopbackServer({"/echo": lambda req: Reply(200, {"echo": req.body})}) as server:
        yield server


@pytest.fixture(scope="module")
def pair(folder: Path, echo: LoopbackServer) -> Path:
    path = folder / "pair.flow.yaml"
    write(path, PAIR % echo.url)
    return path


@pytest.fixture(scope="class")
def served_pair(ray_port: int, pair: Path) -> Iterator[RayServer]:
    """The pair flow deployed, for the tests of one class (Serve's `/` is then free again)."""
    with RayServer.for_flow(pair, port=ray_port) as server:
        yield server


def inputs(i: int) -> dict[str, Any]:
    return {"x": [math.sin(i + k) for k in range(8)]}


def post_all(url: str, bodies: list[dict[str, Any]], *, workers: int = 16,
             during: Callable[[int], None] | None = None) -> list[httpx.Response | BaseException]:
    """POST each body to `url` from `workers` threads; `during(n)` is called after each answer."""
    done = Counter[str]()
    lock = threading.Lock()
    with httpx.Client(timeout=60) as client:
        def one(body: dict[str, Any]) -> httpx.Response | BaseException:
            try:
                return client.post(url, json=body)
            except httpx.HTTPError as exc:
                return exc
            finally:
                with lock:
                    done["n"] += 1
                    n = done["n"]
                if during is not None:
                    during(n)

        with ThreadPoolExecutor(workers) as pool:
            return list(pool.map(one, bodies))


def close_to(a: Any, b: Any, tol: float = 1e-4) -> bool:
    """Equal JSON, floats within `tol` (a forward pass in a batch of another size may
    round the last digits differently)."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isclose(a, b, abs_tol=tol)
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close_to(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close_to(x, y, tol) for x, y in zip(a, b))
    return bool(a == b)


def replicas_of(metrics: str, node: str) -> dict[str, float]:
    from prometheus_client.parser import text_string_to_metric_families

    found: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics):
        for sample in family.samples:
            if sample.name == "jupyter_flow_replica_runs_total" and sample.labels.get("node") == node:
                found[sample.labels["replica"]] = sample.value
    return found


def serve_replicas(app: str) -> list[tuple[str, str]]:
    """The (name, namespace) of the replica actors of a Serve application."""
    return [(a["name"], a["namespace"]) for a in ray.util.list_named_actors(all_namespaces=True)
            if a["name"].startswith("SERVE_REPLICA::") and f"::{app}#" in a["name"]]


class TestServedPair:
    """The pair flow, two replicas of `embed`, deployed once for these tests."""

    def test_a_flow_on_ray_serve_answers_as_in_one_process_with_both_replicas(self, served_pair: RayServer, pair: Path) -> None:
        bodies = [inputs(i) for i in range(200)]
        with AsgiServer(flow_app(pair)) as one:
            expected = post_all(f"{one.url}/run", bodies)
        answers = post_all(f"{served_pair.url}/run", bodies)
        for body, want, got in zip(bodies, expected, answers):
            assert isinstance(want, httpx.Response) and want.status_code == 200, want
            assert isinstance(got, httpx.Response) and got.status_code == 200, got if isinstance(got, BaseException) else got.text
            assert got.headers["x-run-id"] and got.headers["x-served-by"]
            a, b = want.json(), got.json()
            assert close_to(a["outputs"], b["outputs"]), (body, a, b)
            assert a["converted"] == b["converted"]
        metrics = httpx.get(f"{served_pair.url}/metrics").text
        embed = replicas_of(metrics, "embed")
        assert len(embed) == 2 and all(n > 0 for n in embed.values()), embed  # both replicas answered
        assert sum(embed.values()) == 200 and len(replicas_of(metrics, "classify")) == 1
        assert metric(metrics, "jupyter_flow_requests_total", route="/run", status="200") == 200
        # each run's trace says which replica ran each model node, and how it was batched
        last = answers[-1]
        assert isinstance(last, httpx.Response)
        trace = httpx.get(f"{served_pair.url}/runs/{last.json()['run_id']}").json()
        extra = {n["node"]: n.get("extra", {}) for n in trace["nodes"]}
        assert extra["embed"]["replica"] in embed and extra["embed"]["device"] == "cpu"
        assert 1 <= extra["embed"]["batch_size"] <= 16 and "replica" not in extra["echo"]
        health = httpx.get(f"{served_pair.url}/health").json()
        assert health["status"] == "ok" and health["flow"] == "ray-pair" and health["reload_error"] is None
        # the limits of the one-process server hold: a body over --max-body, a bad input
        assert httpx.post(f"{served_pair.url}/run", content=b"x" * (9 * 2**20)).status_code == 413
        bad = httpx.post(f"{served_pair.url}/run", json={"y": 1})
        assert bad.status_code == 422 and bad.json()["problems"]

    def test_a_killed_replica_is_replaced_and_no_request_is_lost(self, served_pair: RayServer) -> None:
        assert served_pair.layout is not None
        app = next(m.app for m in served_pair.layout.models if m.node == "embed")
        before = serve_replicas(app)
        assert len(before) == 2, before
        killed: list[str] = []

        def kill_one(n: int) -> None:
            if n == 40 and not killed:  # mid-load: 40 answered, 8 in flight (most in
                # embed's 50 ms batch windows), the rest to come; Serve moves a dead replica's requests
                name, namespace = before[0]
                ray.kill(ray.get_actor(name, namespace=namespace), no_restart=True)
                killed.append(name)

        answers = post_all(f"{served_pair.url}/run", [inputs(i) for i in range(200)], workers=8, during=kill_one)
        assert killed
        codes = Counter(a.status_code if isinstance(a, httpx.Response) else type(a).__name__ for a in answers)
        resent = metric(httpx.get(f"{served_pair.url}/metrics").text, "jupyter_flow_replica_resends_total", node="embed")
        print(f"answers around the kill: {dict(codes)}; runs of embed sent again: {resent:g}")
        assert set(codes) <= {200, 503}, codes  # every request answered: its outputs, or a clear 503
        for a in answers:
            assert isinstance(a, httpx.Response)
            if a.status_code == 503:
                assert a.headers["retry-after"] and "replica" in a.json()["error"], a.text
        assert codes[200] >= 190, codes
        # Serve starts a replica in place of the one killed, and it takes requests
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            now = serve_replicas(app)
            if len(now) == 2 and {n for n, _ in now} != {n for n, _ in before}:
                break
            time.sleep(1)
        else:
            pytest.fail(f"no replica replaced the one killed: {serve_replicas(app)}")
        fresh = ({n for n, _ in now} - {n for n, _ in before}).pop().rsplit("#", 1)[-1]
        deadline = time.monotonic() + 60
        while fresh not in replicas_of(httpx.get(f"{served_pair.url}/metrics").text, "embed"):
            assert time.monotonic() < deadline, "the new replica never answered"
            post_all(f"{served_pair.url}/run", [inputs(i) for i in range(16)])


GREET = """\
spec_version: 1
name: ray-reload
inputs: {x: {type: list}}
nodes:
  - id: classify
    type: torch
    config: {model: classify.pt, inputs: "{{ x }}", device: cpu}
  - id: say
    type: template
    config: {template: "%s {{ classify.output.output.argmax().item() }}"}
edges:
  - {from: start, to: classify}
  - {from: classify, to: say}
"""


class Following:
    """`server.follow` on an event loop of its own thread, stopped at the end."""

    def __init__(self, server: RayServer) -> None:
        self.server = server
        self.loop = asyncio.new_event_loop()
        self.stop: asyncio.Event | None = None
        self.thread = threading.Thread(target=self.loop.run_until_complete, args=(self._run(),), daemon=True)

    async def _run(self) -> None:
        self.stop = asyncio.Event()
        await self.server.follow(self.stop)

    def __enter__(self) -> Following:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.stop is not None:
            self.loop.call_soon_threadsafe(self.stop.set)
        self.thread.join(timeout=30)


def until(check: Callable[[], Any], timeout_s: float = 120.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(0.2)


def test_an_edit_redeploys_and_a_broken_edit_keeps_the_last_good_flow(ray_port: int, folder: Path) -> None:
    path = folder / "reload.flow.yaml"
    write(path, GREET % "v1")
    body = {"x": [0.5] * 8}
    with RayServer.for_flow(path, port=ray_port, settle_s=0.1) as server, Following(server), \
            httpx.Client(base_url=server.url, timeout=60) as client:
        def said() -> str:
            r = client.post("/run", json=body)
            assert r.status_code == 200, r.text
            return str(r.json()["outputs"]["say"]["text"])

        assert said().startswith("v1 ")
        assert server.layout is not None
        model_app = server.layout.models[0].app
        write(path, GREET % "v2")
        assert until(lambda: said().startswith("v2 "))
        assert server.layout.models[0].app == model_app  # the model node was not touched: its replicas stay
        # an edit that names a node that does not exist: not deployed, the last good flow serves
        write(path, (GREET % "v3").replace("classify.output.output.argmax()", "ghost.output.argmax()"))
        assert until(lambda: client.get("/health").json()["status"] == "degraded")
        health = client.get("/health").json()
        assert "ghost" in health["reload_error"] and health["reload_error"].startswith("reload.flow.yaml: ")
        assert str(folder) not in health["reload_error"]
        assert all(said().startswith("v2 ") for _ in range(5))
        # a model node changed: a new deployment beside the old, then the ingress moves to it
        write(path, (GREET % "v4").replace("device: cpu}", "device: cpu, batch: {max_size: 4}}"))
        assert until(lambda: said().startswith("v4 "))
        # the status is published when the deploy returns, a moment after the new ingress answers
        assert until(lambda: client.get("/health").json()["status"] == "ok")
        assert server.layout.models[0].app != model_app
        metrics = client.get("/metrics").text
        assert metric(metrics, "jupyter_flow_reloads_total", outcome="ok") == 2
        assert metric(metrics, "jupyter_flow_reloads_total", outcome="rejected") == 1


def test_a_model_service_on_ray_serve_answers_as_in_one_process(ray_port: int, folder: Path) -> None:
    config = folder / "classify.serve.yaml"
    config.write_text("type: torch\nconfig: {model: classify.pt, inputs: '{{ x }}', device: cpu,\n"
                      "         batch: {max_size: 8, max_wait_ms: 5}}\ninputs: {x: {type: list}}\n"
                      "deploy: {num_replicas: 1, ray_actor_options: {num_cpus: 0.2}}\n")
    bodies = [inputs(i) for i in range(40)]
    with AsgiServer(model_app(config)) as one:
        expected = post_all(f"{one.url}/predict", bodies)
    with RayServer.for_model(config, port=ray_port) as server:
        answers = post_all(f"{server.url}/predict", bodies)
        health = httpx.get(f"{server.url}/health").json()
    for want, got in zip(expected, answers):
        assert isinstance(want, httpx.Response) and isinstance(got, httpx.Response)
        assert got.status_code == want.status_code == 200, got.text
        assert close_to(want.json(), got.json())
    assert health["status"] == "ok" and health["mode"] == "model" and health["node"] == "model"


def test_deploy_mistakes_are_named_before_ray_starts(folder: Path, echo: LoopbackServer,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    path = folder / "wrong.flow.yaml"
    # an http node is no deployment; autoscaling settings Ray Serve does not know
    write(path, PAIR % echo.url
          + "  echo: {num_replicas: 3}\n"
          + "  classify: {autoscaling_config: {min_replicas: 1, max_replicas: 2, target_ongoing_request: 4,\n"
          + "                                  policy: {policy_function: 'os:system'}}}\n")
    t0 = time.perf_counter()
    assert main(["serve", "flow", str(path), "--ray", "--port", str(free_port())]) == 2
    err = capsys.readouterr().err
    assert "node 'echo'" in err and "deploy.echo" in err and "runs in the flow's ingress" in err
    assert "deploy.classify.autoscaling_config.target_ongoing_request" in err and "unknown setting" in err
    # a flow file names no code for Serve's controller to import
    assert "deploy.classify.autoscaling_config.policy" in err and "may not" in err
    assert time.perf_counter() - t0 < 20
    # the validator takes the deploy: section as part of the flow
    write(path, PAIR % echo.url)
    assert main(["validate", str(path)]) == 0


def test_a_replica_asking_for_more_than_the_cluster_has_is_refused(ray_port: int, pair: Path) -> None:
    path = pair.with_name("gpu.flow.yaml")
    write(path, pair.read_text().replace("embed: {num_replicas: 2}", "embed: {ray_actor_options: {num_gpus: 1}}"))
    t0 = time.perf_counter()
    with pytest.raises(FlowValidationError) as err:
        RayServer.for_flow(path, port=ray_port).start()
    (problem,) = err.value.problems
    assert problem.node == "embed" and problem.field == "deploy.embed.ray_actor_options.num_gpus"
    assert "1 GPUs per replica" in problem.message and "has 0" in problem.message
    assert time.perf_counter() - t0 < 30  # refused at once, not left waiting for a GPU


def test_layout_has_a_deployment_per_model_node_and_variant_named_after_what_makes_it(folder: Path,
                                                                                      echo: LoopbackServer) -> None:
    from jupyter_flow.flow import Flow
    from jupyter_flow.serve.ray_deploy import DEFAULT_MODEL_CPUS, layout

    text = (PAIR % echo.url).replace(
        "    config: {model: classify.pt,",
        "    variants: [{id: b-side, weight: 1, config: {device: cpu}}]\n    config: {model: classify.pt,")
    text += "  classify: {autoscaling_config: {min_replicas: 1, max_replicas: 3}, ray_actor_options: {num_gpus: 0.5}}\n"
    path = folder / "layout.flow.yaml"
    write(path, text)
    plan = layout(Flow.load(path).validate())
    assert plan.ingress_app == "ray-pair"
    models = {(m.node, m.index): m for m in plan.models}
    assert set(models) == {("embed", 0), ("classify", 0), ("classify", 1)}  # http runs in the ingress
    embed, classify, variant = models["embed", 0], models["classify", 0], models["classify", 1]
    assert embed.options["num_replicas"] == 2 and embed.max_items == 16
    assert embed.options["max_ongoing_requests"] >= 32  # room for a full batch and the next
    assert embed.options["ray_actor_options"] == {"num_cpus": DEFAULT_MODEL_CPUS}
    assert classify.options["autoscaling_config"] == {"min_replicas": 1, "max_replicas": 3}
    assert "num_replicas" not in classify.options and classify.max_items is None
    assert classify.options["ray_actor_options"] == {"num_cpus": DEFAULT_MODEL_CPUS, "num_gpus": 0.5}
    assert variant.app.startswith("ray-pair.classify.b-side-") and variant.options == classify.options
    # an edit of one node gives it a new application; the others keep theirs (and their replicas)
    write(path, text.replace("max_wait_ms: 50", "max_wait_ms: 20"))
    again = {(m.node, m.index): m.app for m in layout(Flow.load(path).validate()).models}
    assert again["embed", 0] != embed.app
    assert again["classify", 0] == classify.app and again["classify", 1] == variant.app


class _StandInHandle:
    """A stand-in for Ray's deployment handle, not Ray: its replicas are gone `lost` times
    before one answers (the retry logic on its own, and the resends counted; with Ray, a
    replica killed mid-load is `test_a_killed_replica_is_replaced_and_no_request_is_lost`,
    a deployment with no replica left
    `test_a_model_node_whose_replicas_are_all_gone_answers_a_503_after_its_retries`)."""

    def __init__(self, lost: int) -> None:
        self.lost = lost
        self.calls = 0
        self.forward = self

    def remote(self, items: list[Any], sent_at: float) -> Any:
        from jupyter_flow.serve.ray_replicas import Reply

        self.calls += 1

        async def answer() -> Reply:
            if self.calls <= self.lost:
                raise ray.exceptions.ActorDiedError()
            return Reply([Batched({"y": item}, BatchInfo(len(items), 0.0, 0.0, 0)) for item in items], "r1", "cpu", "float32")

        return answer()


def test_with_a_stand_in_handle_items_are_sent_again_while_replicas_are_lost_then_a_503(folder: Path) -> None:
    from jupyter_flow.flow import Flow
    from jupyter_flow.nodes.local_model import LocalModelNode
    from jupyter_flow.serve.ray_replicas import SEND_ATTEMPTS, RemoteModel

    spec = {"name": "lost", "inputs": {"x": {"type": "list"}}, "nodes": [
        {"id": "m", "type": "torch", "config": {"model": str(folder / "embed.pt"), "inputs": "{{ x }}", "device": "cpu"}}]}
    for lost, code in ((2, 200), (SEND_ATTEMPTS, 503)):
        flow = Flow.from_dict(spec).validate()
        handle = _StandInHandle(lost)
        (node,) = flow.plan.node_objects()
        assert isinstance(node, LocalModelNode)
        node.forward_through(RemoteModel(handle, "m", None))
        with AsgiServer(flow_app(flow)) as one:
            r = httpx.post(f"{one.url}/run", json={"x": [0.0] * 8}, timeout=30)
            metrics = httpx.get(f"{one.url}/metrics").text
        assert r.status_code == code, r.text
        assert handle.calls == min(lost + 1, SEND_ATTEMPTS)
        if code == 200:
            assert metric(metrics, "jupyter_flow_replica_resends_total", node="m") == 1
            assert metric(metrics, "jupyter_flow_replica_runs_total", node="m", replica="r1") == 1
        else:  # a clear 503: the node, the cause, and when to come back
            assert r.headers["retry-after"] and r.json()["node"] == "m"
            assert "no replica of its deployment took the items" in r.json()["error"]


SHARED = """\
spec_version: 1
name: ray-shared
inputs: {who: {type: text}}
nodes:
  - id: say
    type: template
    config: {template: "hello {{ who }}"}
edges:
  - {from: start, to: say}
"""


def serve_cli(*args: str, log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """`jupyter-flow serve ...` in a process of its own, its output in `log`."""
    with log.open("wb") as out:
        return subprocess.Popen([sys.executable, "-m", "jupyter_flow.cli", "serve", *args], stdout=out,
                                stderr=subprocess.STDOUT,
                                env={**{k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}, **(env or {})})


def serve_apps() -> dict[str, str | None]:
    """The Serve applications on the cluster: their route prefix, by name."""
    from ray.serve.context import _get_global_client

    client = _get_global_client()
    assert client is not None
    return {n: a.get("route_prefix") for n, a in client.get_serve_details()["applications"].items()}


def wait_exit(proc: subprocess.Popen[bytes], log: Path, timeout_s: float) -> int:
    """The exit code of `proc`; a process still running after `timeout_s` is killed and fails the test."""
    try:
        return proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)
        pytest.fail(f"still running after {timeout_s:g} s: {log.read_text()[-2000:]}")


def test_servers_sharing_a_cluster_leave_each_other_alone(ray_port: int, folder: Path, pair: Path,
                                                                     tmp_path: Path) -> None:
    address = ray.get_runtime_context().gcs_address  # the module's Ray, as a cluster others connect to

    class Other:
        async def __call__(self, request: Any) -> str:
            return "other team"

    other = serve.deployment(name="other", ray_actor_options={"num_cpus": 0.05})(Other)
    serve.run(other.bind(), name="other-team", route_prefix="/other")  # another user's application on the cluster
    path = folder / "shared.flow.yaml"
    write(path, SHARED)
    args = ("flow", str(path), "--ray", "--port", str(ray_port))
    # the first server finds the cluster in RAY_ADDRESS (as Ray's own tools do), the second is given --address
    first = serve_cli(*args, log=tmp_path / "first.log", env={"RAY_ADDRESS": address})
    url = f"http://127.0.0.1:{ray_port}"
    try:
        def serving() -> bool:
            assert first.poll() is None, (tmp_path / "first.log").read_text()[-2000:]
            with contextlib.suppress(httpx.HTTPError, ValueError):  # Serve's proxy says 404 in plain text until then
                return bool(httpx.get(f"{url}/health", timeout=5).json().get("flow") == "ray-shared")
            return False

        assert until(serving, 240), (tmp_path / "first.log").read_text()[-2000:]
        # a second server of the same flow on the cluster: refused, naming the application; the first serves on
        second = serve_cli(*args, "--address", address, log=tmp_path / "second.log")
        assert wait_exit(second, tmp_path / "second.log", 180) == 1
        said = (tmp_path / "second.log").read_text()
        assert "Serve application named 'ray-shared'" in said and "already runs on the Ray cluster at" in said, said
        r = httpx.post(f"{url}/run", json={"who": "you"}, timeout=60)
        assert r.status_code == 200 and r.json()["outputs"]["say"]["text"] == "hello you", r.text
        # another flow, whose ingress would take the route '/': refused, naming who holds it
        with pytest.raises(FlowError, match="route '/' .* taken .* Serve application 'ray-shared'"):
            RayServer.for_flow(pair, port=ray_port, address=address).start()
        assert httpx.post(f"{url}/run", json={"who": "me"}, timeout=60).status_code == 200
        # stopping the first deletes its applications only: Serve and the other application run on
        first.send_signal(signal.SIGTERM)
        assert wait_exit(first, tmp_path / "first.log", 120) == 0
        apps = serve_apps()
        assert "ray-shared" not in apps and apps.get("other-team") == "/other", apps
        assert httpx.get(f"{url}/other", timeout=30).text == "other team"
    finally:
        for proc in (first,):
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
        serve.delete("other-team")
        with contextlib.suppress(Exception):
            serve.delete("ray-shared")


TWO = """\
spec_version: 1
name: ray-retire
inputs: {x: {type: list}}
nodes:
  - id: a
    type: torch
    config: {model: embed.pt, inputs: "{{ x }}", device: cpu%s}
%s
edges:
  - {from: start, to: a}
%s
"""
B_NODE = """\
  - id: b
    type: torch
    config: {model: classify.pt, inputs: "{{ a.output.output }}", device: cpu}"""


def test_a_failed_redeploy_keeps_retiring_the_applications_it_took_back(ray_port: int, folder: Path,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    from jupyter_flow.flow import Flow

    path = folder / "retire.flow.yaml"
    write(path, TWO % ("", "", ""))
    body = {"x": [0.5] * 8}
    with RayServer.for_flow(path, port=ray_port) as server:
        assert server.layout is not None
        first = server.layout.models[0].app
        # a's model changed: a new application, the first retiring (for long, here)
        monkeypatch.setattr(ray_serve, "RETIRE_AFTER_S", 600.0)
        write(path, TWO % (", batch: {max_size: 4}", "", ""))
        server.deploy(Flow.load(path).validate())
        second = server.layout.models[0].app
        assert second != first and first in server._retiring
        # back to the first a (its application taken back), with a node b whose replica asks for every CPU of
        # the cluster: b never starts, the redeploy fails, and the first a is still to be deleted
        monkeypatch.setattr(ray_serve, "RETIRE_AFTER_S", 1.0)
        monkeypatch.setattr(ray_serve, "DEPLOY_TIMEOUT_S", 15.0)
        write(path, TWO % ("", B_NODE, "  - {from: a, to: b}\ndeploy:\n  b: {ray_actor_options: {num_cpus: 2}}"))
        with pytest.raises(FlowError, match="node 'b'"):
            server.deploy(Flow.load(path).validate())
        assert [m.app for m in server.layout.models] == [second]  # the flow before serves on
        assert first in server._retiring
        assert until(lambda: first not in serve_apps(), 60), serve_apps()
        assert not any(".b-" in app for app in serve_apps())
        r = httpx.post(f"{server.url}/run", json=body, timeout=60)
        assert r.status_code == 200, r.text
        # an edit of the flow's name is deployed under the applications' first name (one ingress at '/')
        write(path, (TWO % ("", "", "")).replace("name: ray-retire", "name: ray-retired"))
        server.deploy(Flow.load(path).validate())
        assert server.layout.ingress_app == "ray-retire" and server.layout.models[0].app.startswith("ray-retire.a-")
        r = httpx.post(f"{server.url}/run", json=body, timeout=60)
        assert r.status_code == 200, r.text
        assert httpx.get(f"{server.url}/health", timeout=30).json()["flow"] == "ray-retired"


class _PickyTorch(TorchNode):
    """A torch node whose forward pass runs out of memory on any pass holding an item whose
    first input is 99 (as CUDA does when one item is too big), and whose results say how
    many of its forward passes ran at once, at most (``at_once``)."""

    kind = "picky-torch"
    active: list[int] = []  # one entry per pass running (list.append / pop: one step each)
    most = [0]

    def batch_function(self, entry: Any) -> Callable[[list[Any]], list[Any]]:
        import torch

        run = super().batch_function(entry)
        active, most = self.active, self.most

        def picky(items: list[Any]) -> list[Any]:
            active.append(1)
            most[0] = max(most[0], len(active))
            try:
                time.sleep(0.05)
                if any(float(args[0].flatten()[0]) == 99.0 for args, _ in items):
                    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
                return [{**value, "at_once": most[0]} for value in run(items)]
            finally:
                active.pop()

        return picky


def test_a_replica_fails_only_the_request_whose_item_runs_out_of_memory_and_bounds_its_passes(
        ray_port: int, folder: Path) -> None:
    import torch

    from jupyter_flow.flow import Flow
    from jupyter_flow.nodes.registry import NodeRegistry
    from jupyter_flow.raylocal import flow_payload
    from jupyter_flow.serve.ray_replicas import DIRECT_AT_ONCE, ModelReplica

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the node kind above, for the replica
    registry = NodeRegistry(entry_points_group=None)
    registry.register(_PickyTorch)

    handles: list[Any] = []

    def replica(**batch: Any) -> Any:
        """A handle of a model deployment of one replica running the picky node."""
        config = {"model": str(folder / "embed.pt"), "inputs": "{{ x }}", "device": "cpu", **batch}
        flow = Flow.from_dict({"name": "picky", "inputs": {"x": {"type": "list"}},
                               "nodes": [{"id": "m", "type": "picky-torch", "config": config}]},
                              registry=registry).validate()
        deployment = serve.deployment(name="model", max_ongoing_requests=64,
                                      ray_actor_options={"num_cpus": 0.1})(ModelReplica)
        handles.append(serve.run(deployment.bind(flow_payload(flow), "m", 0), name="picky", route_prefix=None))
        return handles[-1]

    def send(handle: Any, firsts: list[list[float]]) -> list[Any]:
        sent = [handle.forward.remote([((torch.tensor([f] + [0.5] * 7),), {}) for f in fs], time.time())
                for fs in firsts]
        return [response.result(timeout_s=120) for response in sent]

    try:
        # batch: eight requests in one forward pass, one of them with an item too big: halved down to that
        # item, which fails its own request; the other seven are answered
        replies = send(replica(batch={"max_size": 16, "max_wait_ms": 500}), [[float(i)] for i in range(7)] + [[99.0]])
        assert [r.error is None for r in replies] == [True] * 7 + [False], replies
        assert replies[-1].error[0] == "OutOfMemoryError" and "CUDA out of memory" in replies[-1].error[1]
        assert all(len(r.results) == 1 and r.results[0].info.splits >= 1 for r in replies[:7]), replies
        serve.delete("picky")
        # without batch: twenty requests at once, at most DIRECT_AT_ONCE forward passes at a time; a request
        # whose item runs out of memory alone fails
        replies = send(replica(), [[float(i), 1.0] for i in range(19)] + [[2.0, 99.0]])
        assert all(r.error is None and len(r.results) == 2 for r in replies[:19]), replies
        assert replies[-1].error is not None and replies[-1].error[0] == "OutOfMemoryError", replies[-1]
        at_once = max(b.value["at_once"] for r in replies[:19] for b in r.results)
        assert 1 <= at_once <= DIRECT_AT_ONCE, at_once
    finally:
        # a handle's router runs on in a thread of this process: stopped here, or it would
        # reach into Ray after the module shuts Ray down, and Ray ends the process for that
        for handle in handles:
            with contextlib.suppress(Exception):
                handle.shutdown()
        with contextlib.suppress(Exception):
            serve.delete("picky")


def test_a_model_node_whose_replicas_are_all_gone_answers_a_503_after_its_retries(ray_port: int, folder: Path) -> None:
    path = folder / "gone.flow.yaml"
    write(path, (GREET % "v1").replace("name: ray-reload", "name: ray-gone"))
    body = {"x": [0.5] * 8}
    with RayServer.for_flow(path, port=ray_port) as server, httpx.Client(base_url=server.url, timeout=60) as client:
        assert client.post("/run", json=body).status_code == 200
        assert server.layout is not None
        app = server.layout.models[0].app
        serve.delete(app)  # every replica of classify stopped, its deployment gone: the ingress still calls it
        assert not serve_replicas(app)
        t0 = time.perf_counter()
        r = client.post("/run", json=body)
        assert r.status_code == 503, r.text
        assert r.headers["retry-after"] and r.json()["node"] == "classify"
        from jupyter_flow.serve.ray_replicas import SEND_ATTEMPTS

        said = r.json()["error"]
        assert f"no replica of its deployment took the items ({SEND_ATTEMPTS} tries; DeploymentUnavailableError" in said
        assert time.perf_counter() - t0 < 30  # the tries are bounded
        assert client.get("/health").json()["status"] == "ok"  # the ingress itself answers
