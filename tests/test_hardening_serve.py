"""A served flow follows its file through symbolic links: a deployment that switches
versions by re-pointing a link (`ln -sfn v2/flow.yaml current.flow.yaml`) is served the
new version, whether the link sits beside the versions or in a folder of its own."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest
from servers import AsgiServer

from jupyter_flow.serve.app import flow_app
from jupyter_flow.serve.filewatch import MAX_LINKS, link_chain

GREET = """\
name: greet
inputs: {name: {type: text}}
nodes:
  - id: hello
    type: template
    config: {template: "%s {{ name }}"}
"""


def repoint(link: Path, target: str) -> None:
    """What `ln -sfn` does: a new link renamed over the old one."""
    tmp = link.with_name(f".{link.name}.new")
    tmp.symlink_to(target)
    os.replace(tmp, link)


def answer(client: httpx.Client) -> str:
    reply = client.post("/run", json={"name": "Ada"})
    assert reply.status_code == 200, reply.text
    return str(reply.json()["outputs"]["hello"]["text"])


def wait_for(client: httpx.Client, expected: str, timeout_s: float = 15) -> str:
    deadline = time.monotonic() + timeout_s
    while (got := answer(client)) != expected and time.monotonic() < deadline:
        time.sleep(0.1)
    return got


@pytest.mark.parametrize("layout", ["link-in-its-own-folder", "link-beside-the-versions"])
def test_a_re_pointed_symlink_is_served_and_then_followed(tmp_path: Path, layout: str) -> None:
    for version, word in (("v1", "Hello"), ("v2", "Bonjour")):
        (tmp_path / version).mkdir()
        (tmp_path / version / "greet.flow.yaml").write_text(GREET % word, encoding="utf-8")
    if layout == "link-in-its-own-folder":
        (tmp_path / "live").mkdir()
        link, first, second = tmp_path / "live" / "current.flow.yaml", "../v1/greet.flow.yaml", "../v2/greet.flow.yaml"
    else:
        link, first, second = tmp_path / "current.flow.yaml", "v1/greet.flow.yaml", "v2/greet.flow.yaml"
    link.symlink_to(first)
    with AsgiServer(flow_app(link)) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        assert answer(client) == "Hello Ada"
        time.sleep(0.5)  # the watcher is up
        repoint(link, second)
        assert wait_for(client, "Bonjour Ada") == "Bonjour Ada"
        # the watch moved with the link: an edit of the new file is served, one of the old is not
        (tmp_path / "v2" / "greet.flow.yaml").write_text(GREET % "Salut", encoding="utf-8")
        assert wait_for(client, "Salut Ada") == "Salut Ada"
        (tmp_path / "v1" / "greet.flow.yaml").write_text(GREET % "Stale", encoding="utf-8")
        time.sleep(1.5)
        assert answer(client) == "Salut Ada"


def test_a_chain_of_links_is_watched_link_by_link_and_a_loop_ends(tmp_path: Path) -> None:
    (tmp_path / "real.flow.yaml").write_text(GREET % "Hi", encoding="utf-8")
    (tmp_path / "b.flow.yaml").symlink_to("real.flow.yaml")
    (tmp_path / "a.flow.yaml").symlink_to("b.flow.yaml")
    real = tmp_path.resolve()
    assert link_chain(tmp_path / "a.flow.yaml") == (real / "a.flow.yaml", real / "b.flow.yaml", real / "real.flow.yaml")
    (tmp_path / "x").symlink_to("y")
    (tmp_path / "y").symlink_to("x")
    assert len(link_chain(tmp_path / "x")) == MAX_LINKS + 1


def test_a_re_pointed_folder_link_on_the_way_is_served(tmp_path: Path) -> None:
    # release tools switch versions with a folder link: current -> releases/42
    for release, word in (("41", "Hello"), ("42", "Bonjour")):
        (tmp_path / "releases" / release).mkdir(parents=True)
        (tmp_path / "releases" / release / "greet.flow.yaml").write_text(GREET % word, encoding="utf-8")
    current = tmp_path / "current"
    current.symlink_to("releases/41")
    assert link_chain(current / "greet.flow.yaml") == (
        tmp_path.resolve() / "current", tmp_path.resolve() / "releases" / "41" / "greet.flow.yaml")
    with AsgiServer(flow_app(current / "greet.flow.yaml")) as srv, httpx.Client(base_url=srv.url, timeout=30) as client:
        assert answer(client) == "Hello Ada"
        time.sleep(0.5)
        repoint(current, "releases/42")
        assert wait_for(client, "Bonjour Ada") == "Bonjour Ada"
