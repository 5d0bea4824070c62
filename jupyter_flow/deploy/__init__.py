"""Deploying served models and flows beyond one machine.

- `kserve`: KServe manifests (`InferenceService` per served model, an `InferenceGraph` for
  a flow) and the `jupyter-flow deploy kserve` command.
"""

from __future__ import annotations

from typing import Any

from jupyter_flow.deploy.kserve import add_to_cli as add_kserve

__all__ = ["add_to_cli"]


def add_to_cli(sub: Any) -> None:
    """`jupyter-flow deploy ...`."""
    p = sub.add_parser("deploy", help="write deployment manifests for a flow or a model service config (KServe)")
    targets = p.add_subparsers(dest="deploy_target", required=True, parser_class=type(p))
    add_kserve(targets)
