from __future__ import annotations

import os
import signal
import sys
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from servers import LoopbackServer, Route  # noqa: E402

FIXTURES = Path(__file__).resolve().parent / "fixtures"

# No Ray call starts a Ray by itself in the test process. Once a test module has shut its
# Ray down, a thread Ray Serve left behind (a handle's router) would otherwise start a new
# local Ray from that thread; Ray ties the processes it starts to the thread that starts
# them, so that Ray dies when the thread ends, and a minute later Ray ends this process for
# the cluster it lost: exit 1, the rest of the suite not run and no summary. Read when
# Ray is imported, so it is set before any test imports it.
os.environ.setdefault("RAY_ENABLE_AUTO_CONNECT", "0")


def _sigint_state() -> tuple[bool, bool]:
    """(ignored, blocked) of SIGINT in this thread: both are passed on to the processes a test starts."""
    return signal.getsignal(signal.SIGINT) is signal.SIG_IGN, signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, ())


@pytest.fixture(autouse=True)
def _sigint_left_as_found(request: pytest.FixtureRequest) -> Iterator[None]:
    """Ctrl-C reaches the CLI processes tests start: a part that leaves SIGINT ignored or
    blocked in the test process (children inherit both) is named and undone after its test."""
    before = _sigint_state()
    yield
    ignored, blocked = _sigint_state()
    if ignored and not before[0]:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        warnings.warn(f"{request.node.nodeid} left SIGINT ignored in the test process; undone", stacklevel=1)
    if blocked and not before[1]:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        warnings.warn(f"{request.node.nodeid} left SIGINT blocked in the test process; undone", stacklevel=1)


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


@pytest.fixture(scope="session")
def openai_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    """A real OpenAI-compatible server (`transformers serve`) with a tiny GPT-2 made here,
    shared by the tests of one session (it takes some 30 s to start)."""
    from openai_server import make_tiny_gpt2, transformers_serve

    folder = tmp_path_factory.mktemp("tiny-gpt2")
    with transformers_serve(make_tiny_gpt2(folder / "model"), folder / "serve.log") as server:
        yield server


@pytest.fixture
def seed_flow_path() -> Path:
    """The seed flow file (the Dify-style JSON teams already write), kept in tests/fixtures."""
    return FIXTURES / "seed_flow.json"


def _skip_reason(report: pytest.CollectReport | pytest.TestReport) -> str:
    longrepr = report.longrepr
    if isinstance(longrepr, tuple) and len(longrepr) == 3:
        return str(longrepr[2])
    return str(longrepr)


def _allowed_in_ci(reason: str) -> bool:
    # CI machines have no GPU; every other part (browser, Tesseract, Ray, ...) must be there
    return any(word in reason for word in ("CUDA", "cuda", "GPU"))


def _fail_skip_in_ci(report: pytest.CollectReport | pytest.TestReport) -> None:
    if report.skipped and os.environ.get("CI") and not _allowed_in_ci(reason := _skip_reason(report)):
        report.outcome = "failed"
        report.longrepr = f"skipped in CI, where every part the tests use must be installed: {reason}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    outcome = yield
    _fail_skip_in_ci(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector: pytest.Collector):  # type: ignore[no-untyped-def]
    outcome = yield
    _fail_skip_in_ci(outcome.get_result())
