"""The GPU image: what can be checked without Docker or a GPU, checked for real.

The doctor runs on this machine; the entrypoint runs with a stand-in `jupyter` program
on PATH that records its arguments; the health check probes a real loopback server; the
compose file and Dockerfile are parsed and held against the README's set-up.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from servers import Reply

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "images" / "pytorch-cuda"


def cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def run(*args: str, env: dict[str, str] | None = None, timeout: int = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(list(args), capture_output=True, text=True, timeout=timeout, env=env)


@pytest.mark.skipif(cuda(), reason="checks the report of a machine without a GPU")
def test_doctor_on_a_cpu_machine_reports_no_gpu_and_exits_0() -> None:
    proc = run(sys.executable, "-m", "jupyter_flow.cli", "doctor")
    assert proc.returncode == 0, proc.stderr
    assert "CUDA usable   False" in proc.stdout
    assert "torch" in proc.stdout and "--gpus" in proc.stdout
    report = json.loads(run(sys.executable, "-m", "jupyter_flow.cli", "doctor", "--json").stdout)
    assert report["cuda_available"] is False and report["devices"] == []
    assert report["torch"]


@pytest.mark.skipif(cuda(), reason="checks the report of a machine without a GPU")
def test_require_gpu_fails_with_the_reason() -> None:
    for cmd in ([sys.executable, "-m", "jupyter_flow.cli", "doctor", "--require-gpu"],
                [sys.executable, str(IMAGE / "gpu_check.py"), "--require-gpu"]):
        proc = run(*cmd)
        assert proc.returncode == 1
        assert "a GPU is required" in proc.stdout and "Traceback" not in proc.stderr


@pytest.mark.gpu
@pytest.mark.skipif(not cuda(), reason="needs CUDA")
def test_doctor_requires_and_finds_the_gpu() -> None:
    proc = run(sys.executable, "-m", "jupyter_flow.cli", "doctor", "--require-gpu", "--json")
    assert proc.returncode == 0, proc.stdout
    report = json.loads(proc.stdout)
    assert report["devices"] and all(d["matmul_ok"] for d in report["devices"])


def _fake_jupyter(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "argv.txt"
    fake = bin_dir / "jupyter"
    fake.write_text(f"#!/usr/bin/env bash\nprintf '%s\\n' \"$@\" > {log}\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "PATH": f"{bin_dir}:{Path(sys.executable).parent}:{os.environ['PATH']}"}
    env.pop("JUPYTER_TOKEN", None)
    return env


def test_entrypoint_never_starts_jupyterlab_without_a_token(tmp_path: Path) -> None:
    env = _fake_jupyter(tmp_path)
    env["JUPYTER_ROOT"] = str(tmp_path)
    proc = run("bash", str(IMAGE / "entrypoint.sh"), "lab", env=env)
    assert proc.returncode == 0, proc.stderr
    argv = (tmp_path / "argv.txt").read_text().split("\n")
    token = next(a.split("=", 1)[1] for a in argv if a.startswith("--IdentityProvider.token="))
    assert len(token) >= 32 and token in proc.stdout  # generated and shown to the user
    assert "--ip=0.0.0.0" in argv and "--port=8888" in argv
    env["JUPYTER_TOKEN"] = "chosen-token-0123456789abcdef"
    run("bash", str(IMAGE / "entrypoint.sh"), env=env)
    assert "--IdentityProvider.token=chosen-token-0123456789abcdef" in (tmp_path / "argv.txt").read_text()


def test_entrypoint_passes_commands_to_jupyter_flow(tmp_path: Path) -> None:
    env = _fake_jupyter(tmp_path)
    proc = run("bash", str(IMAGE / "entrypoint.sh"), "doctor", "--json", env=env)
    assert proc.returncode == 0 and "cuda_available" in proc.stdout


def test_healthcheck_probes_a_real_service(serve) -> None:
    server = serve({"/health": lambda req: Reply(200, {"status": "ok"})})
    port = server.url.rsplit(":", 1)[1]
    env = {**os.environ, "HEALTH_PORT": port, "HEALTH_PATH": "/health"}
    ok = run(sys.executable, str(IMAGE / "healthcheck.py"), env=env)
    assert ok.returncode == 0, ok.stdout
    down = serve({"/health": lambda req: Reply(200, {"status": "error"})})
    env["HEALTH_PORT"] = down.url.rsplit(":", 1)[1]
    assert run(sys.executable, str(IMAGE / "healthcheck.py"), env=env).returncode == 1
    server.stop()
    env["HEALTH_PORT"] = port
    gone = run(sys.executable, str(IMAGE / "healthcheck.py"), env=env)
    assert gone.returncode == 1 and "unhealthy" in gone.stdout


def _setup_steps_in_makefile() -> list[str]:
    text = (ROOT / "Makefile").read_text()
    recipe = re.search(r"^setup:.*\n((?:\t.*\n)+)", text, re.M)
    assert recipe, "the Makefile has no setup target"
    return re.findall(r"bash (scripts/\S+\.sh)", recipe.group(1))


def test_dockerfile_installs_with_the_readme_setup_steps() -> None:
    readme = (ROOT / "README.md").read_text()
    assert "make lab" in readme and "make test" in readme
    for target in ("lab", "test"):
        assert re.search(rf"^{target}:.*\bsetup\b", (ROOT / "Makefile").read_text(), re.M), target
    docker = (IMAGE / "Dockerfile").read_text().replace("\\\n", " ")
    runs = " ".join(re.findall(r"^RUN (.*)$", docker, re.M))
    assert re.findall(r"bash (scripts/\S+\.sh)", runs) == _setup_steps_in_makefile() == ["scripts/system-deps.sh", "scripts/setup.sh"]


def test_dockerfile_shape() -> None:
    docker = (IMAGE / "Dockerfile").read_text()
    assert re.search(r"^FROM pytorch/pytorch:\$\{PYTORCH_VERSION\}-cuda\$\{CUDA_VERSION\}-cudnn\$\{CUDNN_VERSION\}-runtime", docker, re.M)
    for arg in ("PYTORCH_VERSION=2.6", "CUDA_VERSION=12", "CUDNN_VERSION="):
        assert f"ARG {arg}" in docker, arg
    assert re.search(r"^USER flow$", docker, re.M)
    assert "EXPOSE 8888" in docker and "HEALTHCHECK" in docker
    assert "rm -rf /var/lib/apt/lists/*" in docker and "PIP_NO_CACHE_DIR=1" in docker


def _compose() -> dict:
    return yaml.safe_load((IMAGE / "compose.yaml").read_text())


def test_compose_file_parses_and_holds_together() -> None:
    for tool in (["docker", "compose"], ["docker-compose"]):
        if shutil.which(tool[0]) and run(*tool, "version").returncode == 0:
            env = {**os.environ, "JUPYTER_TOKEN": "x" * 32}
            proc = subprocess.run([*tool, "-f", str(IMAGE / "compose.yaml"), "config", "-q"], capture_output=True, text=True, env=env, timeout=60)
            assert proc.returncode == 0, proc.stderr
            break
    compose = _compose()
    services = compose["services"]
    assert {"models", "clause-classifier", "workbench"} <= set(services)
    for name, svc in services.items():
        assert svc["image"] == "jupyter-flow/pytorch-cuda:latest" and svc["build"]["dockerfile"] == "images/pytorch-cuda/Dockerfile", name
        for dep, cond in (svc.get("depends_on") or {}).items():
            assert dep in services, (name, dep)
            if cond["condition"] == "service_healthy":
                assert "healthcheck" in services[dep], dep
    for name in ("clause-classifier", "workbench"):
        svc = services[name]
        devices = svc["deploy"]["resources"]["reservations"]["devices"]
        assert devices[0]["driver"] == "nvidia" and "gpu" in devices[0]["capabilities"]
        assert "models:/models:ro" in svc["volumes"]
        assert svc["healthcheck"]["test"][0] == "CMD"
    assert services["workbench"]["depends_on"]["clause-classifier"]["condition"] == "service_healthy"
    assert all(p.startswith("127.0.0.1:") for p in services["workbench"]["ports"])
    assert "models" in compose["volumes"]


def test_deployment_flow_points_at_the_compose_services() -> None:
    from jupyter_flow import Flow

    flow = Flow.load(IMAGE / "contract-review.flow.yaml")
    flow.validate()
    services = _compose()["services"]
    env = services["workbench"]["environment"]
    hosts = set()
    for node in flow.spec.nodes:
        if node.type == "http":
            endpoint = re.sub(r"\$\{(\w+)\}", lambda m: env[m.group(1)], node.config["endpoint"])
            match = re.match(r"http://([\w-]+):(\d+)/", endpoint)
            assert match, endpoint
            host, port = match.groups()
            assert host in services and port in [str(p) for p in services[host].get("expose", [])], endpoint
            assert "healthcheck" in services[host]
            hosts.add(host)
    assert hosts == {"clause-classifier"}
