from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from servers import LoopbackServer, Route  # noqa: E402

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


@pytest.fixture
def serve() -> Iterator[Callable[[dict[str, Route]], LoopbackServer]]:
    """Start real loopback HTTP servers; all are stopped after the test."""
    started: list[LoopbackServer] = []

    def start(routes: dict[str, Route]) -> LoopbackServer:
        server = LoopbackServer(routes).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def seed_flow_path() -> Path:
    path = SHARED / "examples" / "seed_flow.json"
    if not path.exists():
        pytest.fail(f"{path} is missing: the tests expect ../shared beside the checkout")
    return path
