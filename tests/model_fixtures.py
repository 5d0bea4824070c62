"""Real local models for tests, made on the spot (no downloads), and pytest fixtures for them.

Importable helpers (tests/ is on sys.path through conftest.py)::

    from model_fixtures import make_tiny_bert, make_torchscript_model
    path = make_tiny_bert(tmp_path / "bert", labels=["payment", "other"])

The builders live in `jupyter_flow_examples.models` so that notebooks can make the same
models; the fixtures here build each model once per test session.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from jupyter_flow_examples.models import (
    CLAUSE_LABELS,
    make_clause_classifier,
    make_exported_model,
    make_factory_weights,
    make_tiny_bert,
    make_torchscript_model,
    tiny_mlp,
)

__all__ = [
    "CLAUSE_LABELS",
    "TOKEN_LABELS",
    "cuda_available",
    "gpu",
    "make_clause_classifier",
    "make_exported_model",
    "make_factory_weights",
    "make_state_dict_weights",
    "make_tiny_bert",
    "make_torchscript_model",
    "model_flow",
    "tiny_mlp",
]

TOKEN_LABELS = ["O", "B-ORG", "I-ORG", "B-MONEY", "I-MONEY"]


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


gpu = [pytest.mark.gpu, pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA device")]


def make_state_dict_weights(path: str | Path, **kwargs: Any) -> Path:
    """`tiny_mlp`'s weights as a plain ``torch.save`` state dict (.pt)."""
    import torch

    path = Path(path)
    torch.save(tiny_mlp(**kwargs).state_dict(), str(path))
    return path


def model_flow(node_type: str, config: dict[str, Any], *, node_id: str = "model", inputs: dict[str, Any] | None = None,
               extra_nodes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """A one-model flow (optionally after other nodes) as a dict for `Flow.from_dict`."""
    nodes = [*(extra_nodes or []), {"id": node_id, "type": node_type, "config": config}]
    edges = [{"from": "start", "to": nodes[0]["id"]}]
    edges += [{"from": a["id"], "to": b["id"]} for a, b in zip(nodes, nodes[1:])]
    return {"spec_version": 1, "name": f"{node_type}-test", "inputs": inputs or {}, "nodes": nodes, "edges": edges}


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(scope="session")
def tiny_bert(model_dir: Path) -> Path:
    return make_tiny_bert(model_dir / "bert-cls", labels=["negative", "positive"])


@pytest.fixture(scope="session")
def tiny_ner(model_dir: Path) -> Path:
    return make_tiny_bert(model_dir / "bert-ner", labels=TOKEN_LABELS, task="token-classification")


@pytest.fixture(scope="session")
def tiny_encoder(model_dir: Path) -> Path:
    return make_tiny_bert(model_dir / "bert-base", task="feature-extraction")


@pytest.fixture(scope="session")
def torchscript_model(model_dir: Path) -> Path:
    return make_torchscript_model(model_dir / "mlp.pt")


@pytest.fixture(scope="session")
def exported_model(model_dir: Path) -> Path:
    return make_exported_model(model_dir / "mlp.pt2")


@pytest.fixture(scope="session")
def safetensors_weights(model_dir: Path) -> Path:
    return make_factory_weights(model_dir / "mlp.safetensors")


@pytest.fixture(autouse=True)
def _fresh_models() -> Iterator[None]:
    """Each test starts and ends with an empty model cache (released, batchers stopped)."""
    from jupyter_flow.models import release_models

    release_models()
    yield
    release_models()
