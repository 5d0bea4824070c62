"""How a served flow is laid out on Ray Serve: which deployments, with which options.

- The ingress: one deployment (its own Serve application, at ``/``) that holds the flow
  and its routes, the very app ``jupyter-flow serve`` runs in one process. Every node that
  is not a model of its own (``http``, ``python``, ``template``...) runs there.
- Each model node (a node with a local model: ``torch``, ``transformers``), and each of its
  variants, is one more deployment in a Serve application of its own. Its replicas each
  load the model; Ray Serve's ``@serve.batch`` gathers the items of concurrent runs into
  one forward pass, with the node's ``batch: {max_size, max_wait_ms}``.
- The flow file's ``deploy:`` section, by node id, sets a model node's ``num_replicas`` or
  ``autoscaling_config`` and ``ray_actor_options`` (``num_gpus``, ``num_cpus``,
  ``memory``). Without it a node has one replica. A replica asks for a quarter of a CPU
  unless told otherwise, so that a flow fits a small machine; the ingress a tenth.

A model node's application is named after the node and a digest of everything that makes
its replicas (the node's spec, its ``deploy:``, the flow's folder): an edit that leaves a
node alone keeps its replicas and their loaded models, one that changes it gets new ones
beside the old, and each flow's ingress calls its own nodes' applications, so a request
runs one whole flow, old or new.

This module imports no Ray: it is the plan, `jupyter_flow.serve.ray_replicas` the parts
that run in Ray, `jupyter_flow.serve.ray_serve` the driver.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from jupyter_flow.errors import FlowValidationError, NodeError, Problem
from jupyter_flow.flow import Flow
from jupyter_flow.nodes.local_model import LocalModelNode
from jupyter_flow.nodes.registry import default_registry
from jupyter_flow.spec import DeploySpec

__all__ = [
    "DEFAULT_INGRESS_CPUS",
    "DEFAULT_MODEL_CPUS",
    "FlowLayout",
    "ModelDeployment",
    "ReplicasUnavailableError",
    "layout",
]

#: CPUs a replica asks Ray for unless `deploy:` says otherwise (Ray's own default is one,
#: which leaves a 2-CPU machine room for two replicas in all)
DEFAULT_MODEL_CPUS = 0.25
DEFAULT_INGRESS_CPUS = 0.1
#: requests one replica works on at once: the ingress waits mostly on models and endpoints
INGRESS_MAX_ONGOING = 256
MODEL_MAX_ONGOING = 64
#: the name of the deployment in each model node's application
MODEL_DEPLOYMENT = "model"
INGRESS_DEPLOYMENT = "ingress"
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


class ReplicasUnavailableError(NodeError):
    """No replica of a model node's deployment could take the items (they died, or the
    deployment is gone); the served answer is a 503 with `Retry-After`."""


@dataclass(frozen=True)
class ModelDeployment:
    """One model node (or one of its variants) as a deployment."""

    node: str
    index: int  # 0: the node's own object; 1...: its variants, in the flow file's order
    app: str  # the Serve application's name
    options: dict[str, Any]  # `serve.deployment` options
    max_items: int | None  # the node's `batch.max_size` (items per forward pass); None: no batching


@dataclass(frozen=True)
class FlowLayout:
    """The deployments of a served flow: its ingress, then its model nodes'."""

    ingress_app: str
    ingress_options: dict[str, Any]
    models: tuple[ModelDeployment, ...]

    def apps(self) -> list[str]:
        return [self.ingress_app, *(m.app for m in self.models)]


def app_prefix(flow: Flow) -> str:
    """The flow's name as the start of its Serve applications' names."""
    return (_UNSAFE.sub("-", flow.name).strip("-") or "flow")[:40]


def layout(flow: Flow, *, prefix: str | None = None) -> FlowLayout:
    """The deployments of `flow` (validated), from its `deploy:` section. Raises
    FlowValidationError naming the node and field of every problem of `deploy:`."""
    prefix = prefix or app_prefix(flow)
    problems: list[Problem] = []
    deploy = flow.spec.deploy
    models: list[ModelDeployment] = []
    for node_id, planned in flow.plan.nodes.items():
        own = planned.node
        if not isinstance(own, LocalModelNode):
            if node_id in deploy:
                problems.append(Problem(
                    f"'{node_id}' is a '{planned.spec.type}' node: it runs in the flow's ingress; only nodes with a "
                    "model of their own (torch, transformers) are deployments with replicas", node=node_id,
                    field=f"deploy.{node_id}"))
            continue
        spec = deploy.get(node_id)
        options = _options(spec)
        for index, node in enumerate(planned.node_objects()):
            assert isinstance(node, LocalModelNode)
            batch = node.batching()
            opts = dict(options)
            if batch is not None:  # a full batch and the next one queued, at least
                opts["max_ongoing_requests"] = max(opts["max_ongoing_requests"], 2 * batch.max_size)
            models.append(ModelDeployment(node_id, index, _app_name(prefix, flow, node_id, index, spec), opts,
                                          batch.max_size if batch is not None else None))
    if problems:
        raise FlowValidationError(problems, source=str(flow.source) if flow.source else None)
    ingress = {"num_replicas": 1, "max_ongoing_requests": INGRESS_MAX_ONGOING,
               "ray_actor_options": {"num_cpus": DEFAULT_INGRESS_CPUS}}
    return FlowLayout(prefix, ingress, tuple(models))


def _options(spec: DeploySpec | None) -> dict[str, Any]:
    """`serve.deployment` options from a node's `deploy:` (None: one replica)."""
    actor: dict[str, Any] = {"num_cpus": DEFAULT_MODEL_CPUS}
    options: dict[str, Any] = {"max_ongoing_requests": MODEL_MAX_ONGOING, "ray_actor_options": actor}
    if spec is None:
        options["num_replicas"] = 1
        return options
    if spec.ray_actor_options is not None:
        actor.update(spec.ray_actor_options.model_dump(exclude_none=True))
    if spec.autoscaling_config is not None:
        options["autoscaling_config"] = spec.autoscaling_config.model_dump(exclude_none=True)
    else:
        options["num_replicas"] = spec.num_replicas or 1
    return options


def _app_name(prefix: str, flow: Flow, node_id: str, index: int, spec: DeploySpec | None) -> str:
    """`prefix.node[.variant]-digest`: the digest of what makes the replicas (see above)."""
    planned = flow.plan.nodes[node_id]
    made_of = {
        "node": planned.spec.model_dump(mode="json", exclude={"title", "description"}),
        "index": index,
        "deploy": spec.model_dump(mode="json") if spec is not None else None,
        "folder": str(flow.source.resolve().parent) if flow.source else None,
        "registry": type(flow.registry).__qualname__ if flow.registry is not default_registry() else None,
    }
    digest = hashlib.sha256(json.dumps(made_of, sort_keys=True, default=str).encode()).hexdigest()[:10]
    variant = f".{_UNSAFE.sub('-', planned.spec.variants[index - 1].id)}" if index else ""
    return f"{prefix}.{node_id}{variant}-{digest}"
