"""Files people keep, written by jupyter-flow: flow files saved by `Flow.save` and
`dump_spec`, and notebooks written by `jupyter-flow export`.

A kill in the middle of a save leaves the old flow file whole (a watching `serve flow`
never loads half a flow), and an export never replaces a notebook someone edited (or one
it did not write) unless told to."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from jupyter_flow import Flow
from jupyter_flow.atomic import FileChangedError
from jupyter_flow.batch import FlowChangedError, read_results
from jupyter_flow.export import export_notebook
from jupyter_flow.exported import run_exported
from jupyter_flow.spec import dump_spec, load_spec

FLOW = """\
name: echo
inputs:
  text: {type: text, default: hi}
nodes:
  - id: echo
    type: template
    config: {template: "%s {{ text }}"}
"""

OLD = '{"name": "old", "nodes": [{"id": "a", "type": "template", "config": {"template": "x"}}]}\n'

SAVER = """\
import sys
from jupyter_flow import Flow
from jupyter_flow.spec import dump_spec

big = Flow.from_dict({"name": "big", "nodes": [{"id": "a", "type": "template", "config": {"template": "y" * 60_000_000}}]})
print("ready", flush=True)
sys.stdin.readline()
if sys.argv[2] == "save":
    big.save(sys.argv[1])
else:
    dump_spec(big.spec, sys.argv[1])
"""


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("jupyter-flow")
    return subprocess.run([str(exe), *args], capture_output=True, text=True, timeout=120, cwd=cwd)


@pytest.mark.parametrize("how", ["save", "dump_spec"])
def test_a_kill_in_the_middle_of_a_save_leaves_the_old_flow_whole(tmp_path: Path, how: str) -> None:
    folder = tmp_path / "flows"
    folder.mkdir()
    target = folder / "f.flow.json"
    target.write_text(OLD, encoding="utf-8")
    (tmp_path / "saver.py").write_text(SAVER, encoding="utf-8")
    proc = subprocess.Popen([sys.executable, str(tmp_path / "saver.py"), str(target), how],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        assert proc.stdout.readline().strip() == "ready"
        proc.stdin.write("go\n")
        proc.stdin.flush()
        deadline = time.monotonic() + 60
        caught = False
        while time.monotonic() < deadline and proc.poll() is None:
            # the moment any byte of the new flow is on disk, in the target or beside it
            sizes = {p.name: p.stat().st_size for p in folder.iterdir() if p.is_file()}
            if sizes.get(target.name) != len(OLD) or any(size for name, size in sizes.items() if name != target.name):
                os.kill(proc.pid, signal.SIGKILL)
                caught = True
                break
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert caught, "the save ended before it could be interrupted"
    assert target.read_text(encoding="utf-8") == OLD
    assert load_spec(target).name == "old"


def test_save_follows_a_symlinked_flow_file(tmp_path: Path) -> None:
    real = tmp_path / "v1.flow.yaml"
    real.write_text(FLOW % "one", encoding="utf-8")
    link = tmp_path / "current.flow.yaml"
    link.symlink_to(real.name)
    flow = Flow.load(link)
    flow.save()
    assert link.is_symlink() and os.readlink(link) == real.name
    assert dump_spec(load_spec(real)) == dump_spec(flow.spec)


def write_flow(tmp: Path, word: str) -> Path:
    path = tmp / "echo.flow.yaml"
    path.write_text(FLOW % word, encoding="utf-8")
    return path


def test_export_over_a_notebook_edited_by_hand_is_refused_unless_forced(tmp_path: Path) -> None:
    write_flow(tmp_path, "one")
    assert cli("export", "echo.flow.yaml", "-o", "prod.ipynb", cwd=tmp_path).returncode == 0
    nb = nbformat.read(tmp_path / "prod.ipynb", as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell("send_report_to('legal@example.com')  # added by hand"))
    nbformat.write(nb, tmp_path / "prod.ipynb")
    edited = (tmp_path / "prod.ipynb").read_bytes()
    done = cli("export", "echo.flow.yaml", "-o", "prod.ipynb", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "prod.ipynb" in done.stderr and "changed since jupyter-flow exported it" in done.stderr
    assert "--force" in done.stderr and "Traceback" not in done.stderr
    assert "invalid flow" not in done.stderr  # the flow is fine: the notebook is what is kept
    assert (tmp_path / "prod.ipynb").read_bytes() == edited
    forced = cli("export", "echo.flow.yaml", "-o", "prod.ipynb", "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert "added by hand" not in (tmp_path / "prod.ipynb").read_text(encoding="utf-8")


def test_export_replaces_its_own_notebook_even_after_it_ran(tmp_path: Path) -> None:
    flow = write_flow(tmp_path, "one")
    nb_path = export_notebook(flow, tmp_path / "prod.ipynb")
    nb = nbformat.read(nb_path, as_version=4)
    for n, cell in enumerate(c for c in nb.cells if c.cell_type == "code"):  # what running it in Jupyter leaves
        cell.execution_count = n + 1
        cell.outputs = [nbformat.v4.new_output("stream", name="stdout", text="ran\n")]
    nb.metadata["widgets"] = {"state": {}}
    nbformat.write(nb, nb_path)
    write_flow(tmp_path, "two")
    export_notebook(flow, nb_path)
    assert "two {{ text }}" in nb_path.read_text(encoding="utf-8")


@pytest.mark.parametrize("existing", ["workbench", "not-json", "folder"])
def test_export_never_replaces_what_it_did_not_write(tmp_path: Path, existing: str) -> None:
    flow = write_flow(tmp_path, "one")
    target = tmp_path / "echo.ipynb"  # the CLI's default name: the workbench notebook's too
    if existing == "workbench":
        nbformat.write(nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell("Workbench('echo.flow.yaml')")]), target)
    elif existing == "not-json":
        target.write_text("my notes", encoding="utf-8")
    else:
        target.mkdir()
    before = target.read_bytes() if target.is_file() else None
    done = cli("export", "echo.flow.yaml", cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "echo.ipynb" in done.stderr and "not replaced" in done.stderr and "Traceback" not in done.stderr
    if before is not None:
        assert target.read_bytes() == before
    with pytest.raises(FileChangedError):
        export_notebook(flow, target)


def test_export_through_a_symlink_replaces_the_file_it_points_to(tmp_path: Path) -> None:
    flow = write_flow(tmp_path, "one")
    real = export_notebook(flow, tmp_path / "v1.ipynb")
    link = tmp_path / "prod.ipynb"
    link.symlink_to(real.name)
    write_flow(tmp_path, "two")
    export_notebook(Flow.load(flow), link)
    assert link.is_symlink()
    assert "two {{ text }}" in real.read_text(encoding="utf-8")


def test_an_exported_batch_refuses_a_changed_flow_unless_rerun_changed(tmp_path: Path) -> None:
    items = tmp_path / "items.jsonl"
    items.write_text(json.dumps({"id": "a", "text": "x"}) + "\n", encoding="utf-8")
    out = str(tmp_path / "out")
    one, two = (Flow.from_text(FLOW % word).to_dict() for word in ("one", "two"))
    run_exported(one, inputs_path=str(items), output_dir=out)
    with pytest.raises(FlowChangedError):
        run_exported(two, inputs_path=str(items), output_dir=out)
    summary = run_exported(two, inputs_path=str(items), output_dir=out, rerun_changed="true")
    assert summary.ok == 1 and summary.ran == 1
    assert [r["outputs"]["echo"]["text"] for r in read_results(out)] == ["two x"]


def test_export_to_production_notebook_in_jupyterlab_keeps_a_hand_edited_notebook(tmp_path: Path) -> None:
    # the file view's "Export to production notebook" goes through the server extension
    import httpx
    from lab_server import JupyterLab

    write_flow(tmp_path, "one")
    with JupyterLab(tmp_path) as lab, httpx.Client(
        base_url=f"{lab.url}/jupyter-flow/api/", headers={"Authorization": f"token {lab.token}"}, timeout=60
    ) as api:
        first = api.post("export", json={"path": "echo.flow.yaml"})
        assert first.status_code == 200, first.text
        notebook = tmp_path / first.json()["notebook"]
        again = api.post("export", json={"path": "echo.flow.yaml"})  # its own, unedited: replaced
        assert again.status_code == 200, again.text
        nb = nbformat.read(notebook, as_version=4)
        nb.cells[1].source += "\nconcurrency = 32  # tuned by hand for production"
        nbformat.write(nb, notebook)
        edited = notebook.read_bytes()
        refused = api.post("export", json={"path": "echo.flow.yaml"})
    assert refused.status_code == 409, refused.text
    assert refused.json()["message"] == "cannot export 'echo.flow.yaml': 'echo.production.ipynb' was not replaced"
    assert "changed since jupyter-flow exported it" in refused.json()["problems"][0]["message"]
    assert str(tmp_path) not in refused.text  # no server path in the answer
    assert notebook.read_bytes() == edited


def test_the_default_output_folder_of_a_long_flow_name_fits_a_file_system(tmp_path: Path) -> None:
    # the notebook's default output_dir comes from the flow's name; a batch run makes it
    long = Flow.from_text((FLOW % "one").replace("name: echo", "name: " + "contract review " * 30))
    nb = nbformat.read(export_notebook(long, tmp_path / "long.ipynb"), as_version=4)
    (line,) = [ln for ln in nb.cells[1].source.splitlines() if ln.startswith("output_dir = ")]
    folder = line.split("'")[1]
    assert len(folder.encode()) <= 120 and folder.startswith("contract-review-contract-review")
    summary = run_exported(long.to_dict(), output_dir=str(tmp_path / folder))
    assert summary.ok == 1
