"""KServe manifests for a model service config or a flow: `jupyter-flow deploy kserve`.

The manifests are written for a cluster this project cannot reach in its tests: the tests
check them against the KServe SDK's model classes (a round trip through them keeps every
field) and a schema of their own, and never apply them.

What is written into the output folder:

- for each served model, ``NAME.configmap.yaml`` (its serve config, as ``model.serve.yaml``)
  and ``NAME.inferenceservice.yaml``: a custom predictor that runs the project image
  (``images/pytorch-cuda/``) as ``serve model /etc/jupyter-flow/model.serve.yaml --host
  0.0.0.0 --port 8080``, with the config mounted from the ConfigMap, readiness on the Open
  Inference Protocol's ``/v2/health/ready``, and the ``deploy:`` settings of the model
  (a serve config's top-level ``deploy:``, or a flow's ``deploy: {NODE_ID: ...}``):

  ====================================================  ==========================================
  ``deploy:``                                           InferenceService predictor
  ====================================================  ==========================================
  ``num_replicas: N``                                   ``minReplicas`` = ``maxReplicas`` = N
  ``autoscaling_config.min_replicas``, ``max_replicas``  ``minReplicas``, ``maxReplicas``
  ``autoscaling_config.target_ongoing_requests``        ``scaleMetric: concurrency``, ``scaleTarget``
  ``ray_actor_options.num_gpus`` (whole GPUs)           ``nvidia.com/gpu`` request and limit
  ``ray_actor_options.num_cpus``                        ``cpu`` request
  ``ray_actor_options.memory`` (bytes)                  ``memory`` request and limit
  ====================================================  ==========================================

  Other autoscaling settings have no KServe counterpart: they are named in notes.
- for a flow, also ``FLOW.inferencegraph.yaml``: one ``Sequence`` router whose steps are the
  flow's nodes in order, the first given the request, each next one the answer before it.
  A model node is served on its own (its templates over the flow's inputs, or over the
  fields of the answer before it, become the inputs of its serve config) and its step
  calls its ``/predict``; an ``http`` node's step calls its endpoint.

A graph passes each answer on whole, so only what it can carry is written: a chain of
model nodes and ``http`` nodes (a literal endpoint, a POST whose ``input_mapping`` passes
fields on under their own names, no headers), without conditions, error edges, branches,
variants or declared outputs. Anything else is refused, each by node id, kind and reason
(exit 2), and nothing is written.
"""

from __future__ import annotations

import argparse
import graphlib
import math
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from jupyter_flow.atomic import write_atomic
from jupyter_flow.errors import FlowValidationError, Problem
from jupyter_flow.expressions import compile_value
from jupyter_flow.flow import Flow
from jupyter_flow.graph import START
from jupyter_flow.nodes.local_model import LocalModelNode
from jupyter_flow.serve.app import model_config, model_flow
from jupyter_flow.spec import DeploySpec, NodeSpec

__all__ = ["IMAGE", "Deployment", "Manifest", "NotExpressibleError", "add_to_cli", "dns_name", "kserve_manifests"]

#: the project image (images/pytorch-cuda/)
IMAGE = "jupyter-flow/pytorch-cuda:latest"
PORT = 8080
CONFIG_DIR = "/etc/jupyter-flow"
CONFIG_FILE = "model.serve.yaml"
MODELS_DIR = "/models"
#: KServe derives longer names from an InferenceService's (NAME-predictor-...), which
#: must stay within Kubernetes' 63 characters
NAME_MAX = 45
_KNOWN_AUTOSCALING = {"min_replicas", "max_replicas", "target_ongoing_requests"}


class _Dumper(yaml.SafeDumper):
    """YAML with text of several lines (a ConfigMap's file) as a block, as a person writes it."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def dump(body: Mapping[str, Any]) -> str:
    return yaml.dump(dict(body), Dumper=_Dumper, sort_keys=False, allow_unicode=True)


class NotExpressibleError(FlowValidationError):
    """What KServe manifests cannot say: one problem per node (id, kind, reason)."""

    def __str__(self) -> str:
        head = f"{self.source}: " if self.source else ""
        lines = "\n".join(f"  - {p}" for p in self.problems)
        return f"{head}cannot be written as KServe manifests:\n{lines}"


@dataclass(frozen=True)
class Manifest:
    filename: str
    body: dict[str, Any]


@dataclass
class Deployment:
    """The manifests of one flow or model service, and notes on what was left out."""

    manifests: list[Manifest] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def write(self, folder: str | Path) -> list[Path]:
        out = Path(folder)
        if out.exists() and not out.is_dir():
            raise FlowValidationError([Problem(f"{out} is a file; give a folder", field="-o")])
        out.mkdir(parents=True, exist_ok=True)
        return [write_atomic(out / m.filename, dump(m.body)) for m in self.manifests]


@dataclass(frozen=True)
class Options:
    image: str = IMAGE
    namespace: str | None = None
    models_pvc: str | None = None


def dns_name(*parts: str) -> str:
    """A Kubernetes name (lowercase letters, digits, dashes; starting with a letter) of at
    most `NAME_MAX` characters."""
    text = re.sub(r"[^a-z0-9]+", "-", "-".join(parts).lower()).strip("-")
    if not text or not text[0].isalpha():
        text = f"jf-{text}".rstrip("-")
    return text[:NAME_MAX].rstrip("-")


def kserve_manifests(target: str | Path, *, image: str = IMAGE, namespace: str | None = None,
                     models_pvc: str | None = None) -> Deployment:
    """The manifests for a flow file or a model service config (told apart by `nodes:`);
    a `NotExpressibleError` lists every node that cannot be written."""
    options = Options(image, namespace, models_pvc)
    config, source = model_config(target)
    if "nodes" in config:
        return _flow_manifests(_checked(Flow.load(target)), options)
    flow = _checked(model_flow(config, source=source, validate=False))
    (node,) = flow.spec.nodes
    serve_config = {key: value for key, value in config.items() if key != "deploy"}
    deployment = Deployment()
    problems: list[Problem] = []
    _add_model(deployment, dns_name(flow.name), serve_config, node, flow.spec.deploy.get(node.id), options, problems)
    if problems:
        raise NotExpressibleError(problems, source=str(source) if source else None)
    return deployment


def _checked(flow: Flow) -> Flow:
    """`flow` if valid where it will run: every problem counts but what its nodes find
    missing on this machine (a model's folder), which the container reads from its own."""
    here: list[Problem] = []
    base_dir = flow.source.resolve().parent if flow.source else None
    for spec in flow.spec.nodes:
        if spec.type in flow.registry and not flow.registry.get(spec.type).check_config(spec):
            node = flow.registry.get(spec.type)(spec)
            node.base_dir = base_dir
            here.extend(node.problems())
    problems = [p for p in flow.problems() if p not in here]
    if problems:
        raise FlowValidationError(problems, source=str(flow.source) if flow.source else None)
    return flow


# -- one served model ------------------------------------------------------------------------
def _add_model(deployment: Deployment, name: str, serve_config: Mapping[str, Any], node: NodeSpec, deploy: DeploySpec | None,
               options: Options, problems: list[Problem]) -> None:
    predictor, resources = _scaling(node, deploy, problems, deployment.notes)
    model = node.config.get("model")
    if isinstance(model, str) and not model.startswith("/") and "://" not in model:
        deployment.notes.append(f"node '{node.id}': model path {model!r} is relative; in the container it is read from "
                                f"{CONFIG_DIR}: give an absolute path (with --models-pvc, under {MODELS_DIR})")
    mounts = [{"name": "serve-config", "mountPath": CONFIG_DIR, "readOnly": True}]
    volumes: list[dict[str, Any]] = [{"name": "serve-config", "configMap": {"name": f"{name}-config"}}]
    if options.models_pvc:
        mounts.append({"name": "models", "mountPath": MODELS_DIR, "readOnly": True})
        volumes.append({"name": "models", "persistentVolumeClaim": {"claimName": options.models_pvc, "readOnly": True}})
    container: dict[str, Any] = {
        "name": "kserve-container",
        "image": options.image,
        "args": ["serve", "model", f"{CONFIG_DIR}/{CONFIG_FILE}", "--host", "0.0.0.0", "--port", str(PORT)],
        "ports": [{"containerPort": PORT, "protocol": "TCP"}],
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": PORT}, "periodSeconds": 10},
        "volumeMounts": mounts,
    }
    if resources:
        container["resources"] = resources
    deployment.manifests.append(Manifest(f"{name}.configmap.yaml", {
        "apiVersion": "v1", "kind": "ConfigMap", "metadata": _metadata(f"{name}-config", options),
        "data": {CONFIG_FILE: dump(serve_config)},
    }))
    deployment.manifests.append(Manifest(f"{name}.inferenceservice.yaml", {
        "apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService", "metadata": _metadata(name, options),
        "spec": {"predictor": {**predictor, "containers": [container], "volumes": volumes}},
    }))


def _metadata(name: str, options: Options) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "labels": {"app.kubernetes.io/managed-by": "jupyter-flow"}}
    if options.namespace:
        meta["namespace"] = options.namespace
    return meta


def _scaling(node: NodeSpec, deploy: DeploySpec | None, problems: list[Problem],
             notes: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The predictor's replica fields and the container's resources from `deploy`."""
    predictor: dict[str, Any] = {}
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if deploy is None:
        return predictor, {}
    if deploy.num_replicas is not None:
        predictor.update(minReplicas=deploy.num_replicas, maxReplicas=deploy.num_replicas)
    scaling = deploy.autoscaling_config
    if scaling is not None:
        if scaling.min_replicas is not None:
            predictor["minReplicas"] = scaling.min_replicas
        if scaling.max_replicas is not None:
            predictor["maxReplicas"] = scaling.max_replicas
        extra = dict(scaling.model_extra or {})
        target = extra.get("target_ongoing_requests")
        if target is not None:
            if isinstance(target, (int, float)) and not isinstance(target, bool) and target > 0:
                predictor.update(scaleMetric="concurrency", scaleTarget=math.ceil(target))
            else:
                problems.append(Problem(f"{node.type} node: target_ongoing_requests must be a positive number, got {target!r}",
                                        node=node.id, field="deploy.autoscaling_config.target_ongoing_requests"))
        for key in sorted(set(extra) - _KNOWN_AUTOSCALING):
            notes.append(f"node '{node.id}': deploy.autoscaling_config.{key} has no KServe counterpart; left out")
    actor = deploy.ray_actor_options
    if actor is not None:
        if actor.num_gpus:
            if not float(actor.num_gpus).is_integer():
                problems.append(Problem(f"{node.type} node: num_gpus {actor.num_gpus:g} is a share of a GPU; KServe gives "
                                        "whole GPUs (nvidia.com/gpu)", node=node.id, field="deploy.ray_actor_options.num_gpus"))
            else:
                requests["nvidia.com/gpu"] = limits["nvidia.com/gpu"] = str(int(actor.num_gpus))
        if actor.num_cpus:
            requests["cpu"] = _cpu(actor.num_cpus)
        if actor.memory:
            requests["memory"] = limits["memory"] = _memory(actor.memory)
    resources = {key: value for key, value in (("requests", requests), ("limits", limits)) if value}
    return predictor, resources


def _cpu(cores: float) -> str:
    return str(int(cores)) if float(cores).is_integer() else f"{math.ceil(cores * 1000)}m"


def _memory(size: int) -> str:
    for unit, power in (("Gi", 30), ("Mi", 20), ("Ki", 10)):
        if size % 2**power == 0:
            return f"{size >> power}{unit}"
    return str(size)


# -- a flow --------------------------------------------------------------------------------------
_REASONS = {
    "python": "runs a Python function in the flow's process; no InferenceService serves it "
              "(serve it with `serve model` and call it from an http node)",
    "template": "builds text between steps; an InferenceGraph passes each answer on whole",
    "inference": "builds protocol tensors from templates; an InferenceGraph passes each answer on whole "
                 "(call the model's /predict from an http node)",
}


def _flow_manifests(flow: Flow, options: Options) -> Deployment:
    spec = flow.spec
    problems: list[Problem] = []
    if spec.outputs:
        problems.append(Problem("the flow declares outputs:, but an InferenceGraph answers with its last step's answer",
                                field="outputs"))
    order, upstream = _chain(flow, problems)
    deployment = Deployment()
    steps: list[dict[str, Any]] = []
    namespace = options.namespace or "default"
    names: dict[str, str] = {}  # InferenceService names given, to their node ids
    step_names: dict[str, str] = {}  # the graph's step names given, to their node ids
    for i, node in enumerate(order):
        # what the step is given: the answer of the node before it (the request for the first)
        previous = next((n for n in order if n.id in upstream[node.id]), None)
        kind = flow.registry.get(node.type) if node.type in flow.registry else None
        before = len(problems)
        if node.variants or node.shadow:
            problems.append(Problem(f"{node.type} node: canary variants and shadows are not written (KServe rolls out "
                                    "one InferenceService at a time)", node=node.id, field="variants"))
        if kind is not None and issubclass(kind, LocalModelNode):
            name = dns_name(flow.name, node.id)
            if name in names:
                problems.append(Problem(f"{node.type} node: its InferenceService would be named {name!r}, as node "
                                        f"'{names[name]}''s is (rename one)", node=node.id, field="id"))
            names[name] = node.id
            serve_config = _served_node(flow, node, previous, name, problems)
            if serve_config is not None and len(problems) == before:
                _add_model(deployment, name, serve_config, node, spec.deploy.get(node.id), options, problems)
            url = f"http://{name}.{namespace}.svc.cluster.local/predict"
        elif node.type == "http":
            url = _http_step(node, previous, flow, problems)
            if node.id in spec.deploy:
                problems.append(Problem("http node: deploy: sets a served model's replicas and resources; an http step "
                                        "runs where its endpoint is", node=node.id, field=f"deploy.{node.id}"))
        else:
            reason = _REASONS.get(node.type, "is neither a model the project serves nor an http call to one")
            problems.append(Problem(f"{node.type} node: {reason}", node=node.id, field="type"))
            url = ""
        step = dns_name(node.id)
        if step in step_names:
            problems.append(Problem(f"{node.type} node: its InferenceGraph step would be named {step!r}, as node "
                                    f"'{step_names[step]}''s is (rename one)", node=node.id, field="id"))
        step_names[step] = node.id
        steps.append({"name": step, "serviceUrl": url, "data": "$response" if i else "$request"})
    if problems:
        raise NotExpressibleError(problems, source=str(flow.source) if flow.source else None)
    graph = {"apiVersion": "serving.kserve.io/v1alpha1", "kind": "InferenceGraph", "metadata": _metadata(dns_name(flow.name), options),
             "spec": {"nodes": {"root": {"routerType": "Sequence", "steps": steps}}}}
    deployment.manifests.append(Manifest(f"{dns_name(flow.name)}.inferencegraph.yaml", graph))
    return deployment


def _chain(flow: Flow, problems: list[Problem]) -> tuple[list[NodeSpec], dict[str, list[str]]]:
    """The nodes in the order a Sequence runs them, and each node's upstream nodes; a
    problem for each edge or node that makes the flow something other than one chain."""
    spec = flow.spec
    nodes = {n.id: n for n in spec.nodes}
    after: dict[str, list[str]] = {n: [] for n in nodes}
    before: dict[str, list[str]] = {n: [] for n in nodes}
    for i, edge in enumerate(spec.edges):
        if edge.when or edge.on != "success" or edge.branch:
            what = "a condition (when)" if edge.when else "an error edge" if edge.on != "success" else "a branch"
            problems.append(Problem(f"{edge.describe()} has {what}; a Sequence runs every step", edge=i))
        if edge.source == START:
            continue
        after[edge.source].append(edge.target)
        before[edge.target].append(edge.source)
    for node_id, node in nodes.items():
        if len(after[node_id]) > 1:
            problems.append(Problem(f"{node.type} node: its answer goes to {len(after[node_id])} nodes; an InferenceGraph "
                                    "here is one sequence", node=node_id))
        if len(before[node_id]) > 1:
            problems.append(Problem(f"{node.type} node: it waits for {len(before[node_id])} nodes; an InferenceGraph "
                                    "here is one sequence", node=node_id))
    entries = [n for n in nodes if not before[n]]
    if len(entries) > 1:
        problems.append(Problem(f"the flow starts at {len(entries)} nodes ({', '.join(entries)}); an InferenceGraph here "
                                "is one sequence", node=entries[1]))
    order = graphlib.TopologicalSorter({n: before[n] for n in nodes}).static_order()
    return [nodes[n] for n in order], before


_FIELD = r"[A-Za-z_][A-Za-z0-9_]*"


def _served_node(flow: Flow, node: NodeSpec, previous: NodeSpec | None, name: str,
                 problems: list[Problem]) -> dict[str, Any] | None:
    """The serve config of a model node on its own: its templates read the flow's inputs
    (the first step) or the fields of the answer before it, which become its inputs."""
    declared = flow.spec.inputs
    refs = compile_value(node.config, node=node.id, where="config").refs
    inputs: dict[str, Any] = {}
    if previous is None:
        names = {(ref.attr or "inputs") if ref.name == "inputs" else ref.name for ref in refs}
        strays = sorted(n for n in names if n not in declared)
        for n in sorted(names - set(strays)):
            inputs[n] = declared[n].model_dump(exclude_defaults=True) or {"type": "string"}
        config = _map_strings(node.config, lambda text: re.sub(rf"\binputs\.({_FIELD})", r"\1", text))
        said = "the flow's inputs"
    else:
        pattern = rf"\b{previous.id}\.output\.({_FIELD})"
        strays = sorted({ref.name for ref in refs if ref.name != previous.id or ref.attr != "output"})
        texts = _strings(node.config)
        fields = [f for text in texts for f in re.findall(pattern, text)]
        if sum(len(re.findall(rf"\b{previous.id}\b", text)) for text in texts) != len(fields):
            strays.append(f"{previous.id} other than as {previous.id}.output.FIELD")
        config = _map_strings(node.config, lambda text: re.sub(pattern, r"\1", text))
        said = f"the fields of the answer of '{previous.id}'"
    if strays:
        problems.append(Problem(f"{node.type} node: a step of the graph receives only {said}; it reads {', '.join(strays)}",
                                node=node.id, field="config"))
        return None
    # a later step takes the whole answer before it: no declared inputs, so any field is
    # accepted and those its templates read are required
    served: dict[str, Any] = {"name": name, "id": node.id, "type": node.type, "config": config, "inputs": inputs}
    served.update(node.model_dump(include={"retry", "timeout_s", "on_error", "default"}, exclude_defaults=True))
    try:
        _checked(model_flow(served, source=flow.source, validate=False))
    except FlowValidationError as exc:
        problems.append(Problem(f"{node.type} node: served on its own it is not valid: "
                                f"{'; '.join(str(p) for p in exc.problems)}", node=node.id, field="config"))
        return None
    return served


def _http_step(node: NodeSpec, previous: NodeSpec | None, flow: Flow, problems: list[Problem]) -> str:
    config = node.config
    endpoint = config.get("endpoint")
    reasons = []
    if not isinstance(endpoint, str) or "{{" in endpoint or "${" in endpoint or not re.match(r"https?://", endpoint):
        reasons.append("its endpoint is not a literal http(s) URL the graph can call")
    if str(config.get("method", "POST")).upper() != "POST":
        reasons.append("it is not a POST")
    for key in ("headers", "body", "params", "content", "form", "output_key", "output_mapping"):
        if config.get(key):
            reasons.append(f"it sets {key}, which a graph step cannot")
    if config.get("response", "json") != "json":
        reasons.append("it reads the full response")
    mapping = config.get("input_mapping")
    if not isinstance(mapping, Mapping):
        reasons.append("it has no input_mapping naming the fields it passes on")
    else:
        for key, value in mapping.items():
            wanted = f"{previous.id}.output.{key}" if previous is not None else key
            passed = isinstance(value, str) and re.fullmatch(r"\{\{\s*(inputs\.)?(" + re.escape(wanted) + r")\s*\}\}", value)
            if not passed:
                reasons.append(f"input_mapping.{key} is not {{{{ {wanted} }}}} (a step passes fields on under their own names)")
    for reason in reasons:
        problems.append(Problem(f"http node: {reason}", node=node.id, field="config"))
    return endpoint if isinstance(endpoint, str) else ""


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, Mapping):
        return [t for v in value.values() for t in _strings(v)]
    if isinstance(value, list):
        return [t for v in value for t in _strings(v)]
    return []


def _map_strings(value: Any, fn: Callable[[str], str]) -> Any:
    if isinstance(value, str):
        return fn(value) if "{{" in value or "{%" in value else value
    if isinstance(value, Mapping):
        return {k: _map_strings(v, fn) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_strings(v, fn) for v in value]
    return value


# -- the command -----------------------------------------------------------------------------
def _cmd(args: argparse.Namespace) -> int:
    deployment = kserve_manifests(args.target, image=args.image, namespace=args.namespace, models_pvc=args.models_pvc)
    for path in deployment.write(args.out):
        print(path)
    for note in deployment.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def add_to_cli(sub: Any) -> None:
    p = sub.add_parser(
        "kserve", help="KServe manifests: an InferenceService per served model, an InferenceGraph for a flow",
        description="Write KServe manifests for a flow file or a model service config into DIR: per served model a "
        "ConfigMap with its serve config and an InferenceService running the project image, its deploy: settings as "
        "replicas and resources; for a flow an InferenceGraph (one Sequence). What a graph cannot carry is refused "
        "by node (exit 2) and nothing is written.")
    p.add_argument("target", metavar="FLOW|CFG", help="a flow file, or a model service config (as for `serve model`)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="the folder the manifests are written to")
    p.add_argument("--image", default=IMAGE, help=f"the container image (default {IMAGE}, built from images/pytorch-cuda/)")
    p.add_argument("--namespace", metavar="NS", help="the namespace of the manifests (and of the graph's service URLs; "
                   "default: none set, URLs in `default`)")
    p.add_argument("--models-pvc", metavar="CLAIM", help=f"mount this PersistentVolumeClaim read-only at {MODELS_DIR}")
    p.set_defaults(fn=_cmd)
