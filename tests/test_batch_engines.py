"""The batch engines by name: what `jupyter-flow batch --engine` and an exported notebook's
`engine` parameter pick from, the same registry for both."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_flow import Flow, run_exported
from jupyter_flow.batch import BatchEngine, BatchEngines, BatchInputError, BatchOptions, BatchSummary, batch_engines
from jupyter_flow.batch.local import run_local
from jupyter_flow.cli import main
from jupyter_flow.exported import ParameterError

GREET = {
    "name": "greet",
    "inputs": {"name": {"type": "text"}},
    "nodes": [{"id": "hello", "type": "template", "config": {"template": "Hello {{ name }}"}}],
}


@pytest.fixture
def batch(tmp_path: Path) -> tuple[Path, Path]:
    flow = tmp_path / "greet.flow.json"
    flow.write_text(json.dumps(GREET))
    items = tmp_path / "items.jsonl"
    items.write_text('{"id": "ada", "name": "Ada"}\n{"id": "bo", "name": "Bo"}\n')
    return flow, items


@pytest.fixture
def engines() -> Iterator[BatchEngines]:
    """The process's engines, put back as they were after the test."""
    batch_engines.cache_clear()
    yield batch_engines()
    batch_engines.cache_clear()


def test_an_unknown_engine_is_refused_naming_the_known_ones(batch: tuple[Path, Path], tmp_path: Path, capsys) -> None:
    flow, items = batch
    code = main(["batch", str(flow), "--inputs", str(items), "--out", str(tmp_path / "out"), "--engine", "spark"])
    assert code == 2
    assert "unknown batch engine 'spark' (known: local, ray)" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
    with pytest.raises(ParameterError) as info:
        run_exported(GREET, inputs_path=str(items), output_dir=str(tmp_path / "out"), engine="spark")
    assert "parameter `engine` is 'spark' (str); expected 'local' or 'ray' (str)" in str(info.value)
    with pytest.raises(BatchInputError) as error:
        BatchEngines(entry_points_group=None).get("spark")
    (problem,) = error.value.problems
    assert problem.field == "engine" and problem.message == "unknown batch engine 'spark' (known: local, ray)"


def test_a_registered_engine_runs_the_cli_batch_and_the_exported_notebook(
    batch: tuple[Path, Path], tmp_path: Path, engines: BatchEngines, capsys
) -> None:
    ran: list[tuple[str, dict[str, Any]]] = []

    def inline(flow: Flow, items: Any, out_dir: Any, options: Any, **settings: Any) -> BatchSummary:
        ran.append((flow.name, settings))
        return run_local(flow, items, out_dir, options)

    engines.register("inline", BatchEngine(inline))
    flow, items = batch
    assert main(["batch", str(flow), "--inputs", str(items), "--out", str(tmp_path / "cli"), "--engine", "inline", "-q"]) == 0
    assert ran == [("greet", {})]
    lines = [json.loads(line) for line in (tmp_path / "cli" / "results.jsonl").read_text().splitlines()]
    assert sorted(r["outputs"]["hello"]["text"] for r in lines) == ["Hello Ada", "Hello Bo"]

    summary = run_exported(GREET, inputs_path=str(items), output_dir=str(tmp_path / "nb"), engine="inline")
    assert summary.ok == 2 and len(ran) == 2

    code = main(["batch", str(flow), "--inputs", str(items), "--out", str(tmp_path / "x"), "--engine", "inline",
                 "--address", "127.0.0.1:6379"])
    assert code == 2 and "the inline engine takes no address" in capsys.readouterr().err
    assert len(ran) == 2


def test_a_package_adds_an_engine_through_its_entry_point(batch: tuple[Path, Path], tmp_path: Path, monkeypatch) -> None:
    # an installed distribution, as pip leaves it: its module, and its entry point in its metadata
    site = tmp_path / "site"
    (site / "extra_engine-1.0.dist-info").mkdir(parents=True)
    (site / "extra_engine-1.0.dist-info" / "METADATA").write_text("Metadata-Version: 2.1\nName: extra-engine\nVersion: 1.0\n")
    (site / "extra_engine-1.0.dist-info" / "entry_points.txt").write_text(
        "[jupyter_flow.batch_engines]\nnoted = extra_engine:ENGINE\nbroken = extra_engine:NOT_AN_ENGINE\n")
    (site / "extra_engine.py").write_text(textwrap.dedent("""\
        from jupyter_flow.batch import BatchEngine
        from jupyter_flow.batch.local import run_local

        NOTED = []
        NOT_AN_ENGINE = "local"

        def _run(flow, items, out_dir, options, **settings):
            NOTED.append(flow.name)
            return run_local(flow, items, out_dir, options)

        ENGINE = BatchEngine(_run)
    """))
    monkeypatch.syspath_prepend(str(site))
    engines = BatchEngines()
    assert {"local", "ray", "noted", "broken"} <= set(engines.names()) and "noted" in engines
    flow, items = batch
    summary = engines.get("noted").run(Flow.load(flow), str(items), tmp_path / "out", BatchOptions(progress=False))
    assert summary.ok == 2
    import extra_engine  # type: ignore[import-not-found]

    assert extra_engine.NOTED == ["greet"]
    with pytest.raises(BatchInputError, match="batch engine 'broken' .* is a str, not a BatchEngine"):
        engines.get("broken")
