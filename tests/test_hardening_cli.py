"""Files named on the command line that never end or are too large or too deep: a link
to /dev/zero, a named pipe, a 70 MB flow file, an `--inputs` file nested 100,000 levels
deep or giving a key twice. Each is refused at once with exit 2 and a message naming the
file, where reading it used to fill the memory (4 GB in 20 s), wait forever or end in a
traceback; a served flow whose link is re-pointed at /dev/zero keeps serving."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from servers import AsgiServer

from jupyter_flow.atomic import MAX_FILE_BYTES
from jupyter_flow.serve.app import flow_app

FLOW = """\
name: echo
inputs:
  text: {type: text}
nodes:
  - id: echo
    type: template
    config: {template: "got {{ text }}"}
"""


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("jupyter-flow")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=60, cwd=cwd)


@pytest.fixture
def tmp(tmp_path: Path) -> Path:
    (tmp_path / "echo.flow.yaml").write_text(FLOW, encoding="utf-8")
    return tmp_path


def refused(done: subprocess.CompletedProcess[str], *words: str) -> None:
    assert done.returncode == 2, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    for word in words:
        assert word in done.stderr, done.stderr


@pytest.mark.parametrize("what", ["device", "pipe"])
def test_a_flow_file_that_never_ends_is_refused_at_once(tmp: Path, what: str) -> None:
    path = tmp / "endless.flow.yaml"
    if what == "device":
        path.symlink_to("/dev/zero")
    else:
        os.mkfifo(path)
    for command in (["validate"], ["run"], ["export", "-o", "x.ipynb"]):
        refused(cli(command[0], str(path), *command[1:], cwd=tmp), "endless.flow.yaml", "not a regular file")


def test_a_flow_file_past_the_byte_bound_is_refused_naming_it(tmp: Path) -> None:
    path = tmp / "big.flow.yaml"
    with path.open("w", encoding="utf-8") as fh:
        fh.write("name: big\nnodes: []\ndescription: ")
        fh.write("x" * (MAX_FILE_BYTES + 10))
    refused(cli("validate", str(path), cwd=tmp), "big.flow.yaml", f"{MAX_FILE_BYTES:,} bytes")


@pytest.mark.parametrize(("body", "says"), [
    ("[" * 100_000 + "]" * 100_000, "nested more than 100 levels"),
    ('{"text": "a", "text": "b"}', "key 'text' is given twice"),
    ("", "line 1, column 1"),
])
def test_an_inputs_file_that_cannot_be_used_is_named_without_a_traceback(tmp: Path, body: str, says: str) -> None:
    (tmp / "in.json").write_text(body if body.startswith("{") or not body else '{"text": ' + body + "}", encoding="utf-8")
    refused(cli("run", "echo.flow.yaml", "--inputs", "in.json", cwd=tmp), "--inputs in.json", says)


def test_an_inputs_file_that_never_ends_is_refused(tmp: Path) -> None:
    refused(cli("run", "echo.flow.yaml", "--inputs", "/dev/zero", cwd=tmp), "not a regular file")


def test_a_served_flow_re_pointed_at_dev_zero_keeps_serving_and_says_why(tmp: Path) -> None:
    (tmp / "v1.flow.yaml").write_text(FLOW, encoding="utf-8")
    link = tmp / "current.flow.yaml"
    link.symlink_to("v1.flow.yaml")
    with AsgiServer(flow_app(link)) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        time.sleep(0.5)
        new = tmp / ".current.new"
        new.symlink_to("/dev/zero")
        os.replace(new, link)
        deadline = time.monotonic() + 15
        while client.get("/health").json().get("status") != "degraded" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert client.get("/health").json()["status"] == "degraded"
        reply = client.post("/run", json={"text": "still"})
        assert reply.status_code == 200 and reply.json()["outputs"]["echo"]["text"] == "got still"


@pytest.mark.parametrize("option", ["--trace", "--output"])
def test_a_full_disk_under_an_output_file_is_named(tmp: Path, option: str) -> None:
    # /dev/full: every write fails with "No space left on device", as a full disk does
    done = cli("run", "echo.flow.yaml", "--input", "text=x", option, "/dev/full", cwd=tmp)
    # the run happened: its outputs are printed and the exit is 1 (a failure, not a usage error)
    assert done.returncode == 1, (done.returncode, done.stderr)
    assert "Traceback" not in done.stderr
    for word in (f"{option} /dev/full: cannot write", "No space left on device"):
        assert word in done.stderr, done.stderr
    assert "got x" in done.stdout, done.stdout
