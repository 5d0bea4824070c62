"""Flow files are written whole or not at all, and never over someone else's edit."""

from __future__ import annotations

import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from jupyter_flow.atomic import FileChangedError, FileStamp, write_atomic
from jupyter_flow.document import FlowDocument
from jupyter_flow.errors import FlowFileError
from jupyter_flow.spec import load_spec

FLOW = """\
# the team's review flow: keep this comment
name: review
nodes:
  - id: a
    type: template
    config: {template: "x"}
  - id: b
    type: template
    config: {template: "{{ a.output.text }} and more text to make the file longer"}
edges:
  - {from: a, to: b}
"""


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A 120 KB tmpfs, to fill up (needs root and mount)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if shutil.which("mount") is None or os.geteuid() != 0:
        pytest.skip("needs root and mount for a small tmpfs")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=120k", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def fill(folder: Path) -> None:
    try:
        with open(folder / f"filler-{uuid.uuid4().hex}", "wb", buffering=0) as fh:
            while True:
                fh.write(b"\0" * 4096)
    except OSError:  # the disk is full
        pass


def test_a_save_on_a_full_disk_leaves_the_old_file_whole(small_disk: Path) -> None:
    # save() wrote in place: on a full disk the file was cut at 4,096 bytes and still validated
    path = small_disk / "review.flow.yaml"
    path.write_text(FLOW)
    spec, doc = FlowDocument.open(path)
    grown = spec.model_copy(update={"description": "x" * 200_000})
    fill(small_disk)
    with pytest.raises(FlowFileError) as info:
        doc.save(grown)
    assert "cannot write" in str(info.value) and "unchanged" in str(info.value)
    assert path.read_text() == FLOW and load_spec(path).edges  # the old flow, edges and all
    assert not [p for p in small_disk.iterdir() if p.name.endswith(".tmp")]


def test_a_file_changed_on_disk_is_not_overwritten_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "review.flow.yaml"
    path.write_text(FLOW)
    spec, doc = FlowDocument.open(path)
    path.write_text(FLOW.replace("more text", "a colleague's edit"))
    with pytest.raises(FileChangedError) as info:
        doc.save(spec)
    assert "changed on disk" in str(info.value) and "review.flow.yaml" in str(info.value)
    assert "a colleague's edit" in path.read_text()
    doc.save(spec, overwrite=True)
    assert "keep this comment" in path.read_text() and "more text" in path.read_text()
    doc.save(spec)  # what this document wrote itself is not someone else's change


def test_the_workbench_save_refuses_the_same_way(tmp_path: Path) -> None:
    from jupyter_flow.workbench.state import WorkbenchState

    path = tmp_path / "review.flow.yaml"
    path.write_text(FLOW)
    state = WorkbenchState(path)
    path.write_text(FLOW + "# edited elsewhere\n")
    with pytest.raises(FileChangedError):
        state.save()
    assert path.read_text().endswith("# edited elsewhere\n")
    state.save(overwrite=True)
    assert "edited elsewhere" not in path.read_text()


def test_write_atomic_keeps_permissions_and_checks_stamps(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    path.write_text("one")
    path.chmod(0o640)
    stamp = FileStamp.of(path)
    write_atomic(path, "two", unchanged_since=stamp)
    assert path.read_text() == "two" and (path.stat().st_mode & 0o777) == 0o640
    with pytest.raises(FileChangedError):
        write_atomic(path, "three", unchanged_since=stamp)
    assert FileStamp.of(tmp_path / "none") == FileStamp(None, None)
    write_atomic(tmp_path / "new.txt", "fresh", unchanged_since=FileStamp.of(tmp_path / "new.txt"))
    assert (tmp_path / "new.txt").read_text() == "fresh"
