"""Schedule… from a flow file's view, in a real JupyterLab in real Chromium with
jupyter-scheduler: the dialog takes the flow's inputs and a job name, the flow is exported
to its production notebook, a jupyter-scheduler job is made of it and shows in the
scheduler's own list of jobs, and the job runs once to completion with the inputs given
(its output notebook holds the flow's answer to them)."""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).parent))

from harness import (  # noqa: E402
    FLOW_VIEW,
    Browser,
    JupyterLab,
    browser_fixture,
    lab_serving,
    open_flow,
)
from lab_server import FLOWS  # noqa: E402

pytestmark = [pytest.mark.browser, pytest.mark.timeout(420)]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[JupyterLab]:
    pytest.importorskip("jupyter_scheduler", reason="Schedule needs jupyter-scheduler (the workbench extra)")
    with lab_serving(tmp_path_factory.mktemp("lab"), {"greet.flow.yaml": FLOWS / "greet_chain.flow.yaml"}) as server:
        yield server


browser = browser_fixture("schedule", per_test=True)


def scheduler_job(api: httpx.Client, name: str) -> dict[str, Any] | None:
    jobs = api.get("scheduler/jobs").json()["jobs"]
    return next((job for job in jobs if job["name"] == name), None)


def test_schedule_makes_a_scheduler_job_that_runs_once(lab: JupyterLab, browser: Browser) -> None:
    page = browser.page
    browser.screenshot_at_end("final")
    api = httpx.Client(base_url=lab.url, headers={"Authorization": f"token {lab.token}"}, timeout=30)
    open_flow(page, lab, "greet.flow.yaml", 3)

    # 1. the dialog: the flow's inputs (defaults filled in), a job name, no cron: run once now
    page.locator(f"{FLOW_VIEW} .jp-FlowGraph-schedule").first.click()
    dialog = page.locator(".jp-Dialog")
    dialog.wait_for(timeout=10_000)
    assert dialog.locator("[data-input='text']").input_value() == "hi"
    assert dialog.locator("[data-option='name']").input_value() == "greet"
    dialog.locator("[data-input='text']").fill("scheduled")
    dialog.locator("[data-option='name']").fill("greet-once")
    browser.screenshot("dialog")
    dialog.locator(".jp-mod-accept").click()

    # 2. the production notebook is exported and the job shows in jupyter-scheduler's list
    page.get_by_text("greet-once").first.wait_for(timeout=60_000)
    assert (lab.root_dir / "greet.production.ipynb").is_file()
    browser.screenshot("job-listed")
    job = scheduler_job(api, "greet-once")
    assert job is not None and job["input_filename"] == "greet.production.ipynb"
    assert job["parameters"] == {"inputs": '{"text": "scheduled"}'}

    # 3. it runs once, to completion
    deadline = time.monotonic() + 240
    while job["status"] not in ("COMPLETED", "FAILED") and not (job["status"] == "STOPPED" and job.get("start_time")):
        assert time.monotonic() < deadline, job
        time.sleep(2)
        job = scheduler_job(api, "greet-once") or job
    assert job["status"] == "COMPLETED", job
    page.get_by_role("button", name="Reload").click()  # the scheduler's list reads its jobs again
    page.locator("tr", has_text="greet-once").get_by_text(re.compile("Completed", re.I)).first.wait_for(timeout=60_000)
    browser.screenshot("job-completed")

    # 4. it ran on a copy of the flow's folder, with the inputs given: its results (new
    # files of that folder) come back with its output notebook
    files = api.get(f"scheduler/jobs/{job['job_id']}/download_files", params={"redownload": "true"})
    assert files.status_code in (200, 204), files.text
    assert "greet-output/results.jsonl" in job["packaged_files"], job
    results: list[Path] = []
    deadline = time.monotonic() + 60
    while not results:  # the scheduler copies the files in a process of its own
        assert time.monotonic() < deadline, sorted(str(p) for p in lab.root_dir.rglob("*"))
        time.sleep(1)
        results = [p for p in lab.root_dir.glob("jobs/*/greet-output/results.jsonl") if p.stat().st_size > 0]
    answer = json.loads(results[0].read_text().splitlines()[0])
    assert answer["status"] == "ok" and answer["outputs"]["echo"] == {"text": "SCHEDULED!"}, answer
    notebook = nbformat.read(str(next(results[0].parent.parent.glob("greet.production-*.ipynb"))), as_version=4)
    injected = [c.source for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected == ['inputs = {"text": "scheduled"}'], injected
    api.close()
