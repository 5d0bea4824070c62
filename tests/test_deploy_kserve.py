"""`jupyter-flow deploy kserve`: KServe manifests for a model service config and a flow.

They are written for a cluster the tests cannot reach, so they are checked three ways:
through the KServe SDK's model classes (a round trip keeps every field, so no field is
misspelt or misplaced), against a schema of what the cluster needs (names, quantities,
the container), and by serving the serve configs they carry with the real server on
loopback, each step given what the step before it answered, as the graph would."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from model_fixtures import model_dir, tiny_bert  # noqa: F401  (session fixtures)
from servers import AsgiServer

from jupyter_flow.serve.app import model_app

kserve = pytest.importorskip("kserve")

DNS = re.compile(r"[a-z]([-a-z0-9]{0,43}[a-z0-9])?")
QUANTITY = re.compile(r"\d+(\.\d+)?(m|Ki|Mi|Gi)?")


def deploy(target: Path, out: Path, *more: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "jupyter_flow.cli", "deploy", "kserve", str(target), "-o", str(out), *more],
                          capture_output=True, text=True, timeout=180)


def model_class(name: str) -> Any:
    import kubernetes.client.models as k8s

    found = getattr(kserve.models, name, None) or getattr(k8s, name, None)
    assert found is not None, f"no model class {name}"
    return found


def build(data: Any, klass: str, where: str) -> Any:
    """`data` as the SDK's model class `klass` (Kubernetes' own for the names the KServe
    models take from it), refusing any key the class does not have."""
    inner = re.fullmatch(r"(?:list|List)\[(.+)\]", klass)
    if inner:
        assert isinstance(data, list), where
        return [build(v, inner.group(1), f"{where}[{i}]") for i, v in enumerate(data)]
    inner = re.fullmatch(r"(?:dict\(str, (.+)\)|Dict\[str, (.+)\])", klass)
    if inner:
        assert isinstance(data, dict), where
        return {k: build(v, inner.group(1) or inner.group(2), f"{where}.{k}") for k, v in data.items()}
    if klass in {"str", "int", "float", "bool", "object"}:
        kinds: dict[str, Any] = {"str": str, "int": int, "float": (int, float), "bool": bool}
        assert klass == "object" or isinstance(data, kinds[klass]), (where, klass, data)
        return data
    cls = model_class(klass)
    by_key = {key: attr for attr, key in cls.attribute_map.items()}
    unknown = set(data) - set(by_key)
    assert not unknown, f"{where}: {klass} has no field {sorted(unknown)}"
    return cls(**{by_key[k]: build(v, cls.openapi_types[by_key[k]], f"{where}.{k}") for k, v in data.items()})


def round_trip(body: dict, klass: str) -> Any:
    """The manifest read by the SDK's model classes, and written back: equal to what was written."""
    obj = build(body, klass, klass)
    assert kserve.ApiClient().sanitize_for_serialization(obj) == body
    return obj


def check_schema(isvc: dict) -> dict:
    """What a cluster needs of an InferenceService this project writes; its one container."""
    assert isvc["apiVersion"] == "serving.kserve.io/v1beta1" and isvc["kind"] == "InferenceService"
    assert DNS.fullmatch(isvc["metadata"]["name"])
    predictor = isvc["spec"]["predictor"]
    assert set(predictor) <= {"containers", "volumes", "minReplicas", "maxReplicas", "scaleMetric", "scaleTarget"}
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container" and container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    assert container["args"][:2] == ["serve", "model"] and container["args"][-4:] == ["--host", "0.0.0.0", "--port", "8080"]
    for kind in container.get("resources", {}).values():
        assert all(QUANTITY.fullmatch(v) for v in kind.values()), kind
    mounted = {m["name"] for m in container["volumeMounts"]}
    assert mounted == {v["name"] for v in predictor["volumes"]}
    return container


def read(out: Path) -> dict[str, dict]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(out.iterdir())}


def served_config(manifests: dict[str, dict], name: str, folder: Path) -> Path:
    """The serve config a ConfigMap carries, as the container reads it from its mount."""
    config = manifests[f"{name}.configmap.yaml"]
    round_trip(config, "V1ConfigMap")
    path = folder / f"{name}.serve.yaml"
    path.write_text(config["data"]["model.serve.yaml"])
    return path


def test_a_model_service_config_becomes_a_configmap_and_an_inference_service(tiny_bert: Path, tmp_path: Path) -> None:  # noqa: F811
    config = tmp_path / "clause-bert.serve.yaml"
    config.write_text(yaml.safe_dump({
        "name": "clause_bert", "type": "transformers",
        "config": {"model": str(tiny_bert), "task": "text-classification", "text": "{{ text }}"},
        "inputs": {"text": {"type": "text"}},
        "deploy": {"autoscaling_config": {"min_replicas": 1, "max_replicas": 4, "target_ongoing_requests": 7.5,
                                          "upscale_delay_s": 30},
                   "ray_actor_options": {"num_gpus": 1, "num_cpus": 0.5, "memory": 4 * 2**30}},
    }))
    out = tmp_path / "manifests"
    done = deploy(config, out, "--namespace", "review", "--models-pvc", "models")
    assert done.returncode == 0, done.stderr
    assert "upscale_delay_s has no KServe counterpart" in done.stderr
    manifests = read(out)
    assert set(manifests) == {"clause-bert.configmap.yaml", "clause-bert.inferenceservice.yaml"}
    isvc = manifests["clause-bert.inferenceservice.yaml"]
    round_trip(isvc, "V1beta1InferenceService")
    container = check_schema(isvc)
    predictor = isvc["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 4)
    assert (predictor["scaleMetric"], predictor["scaleTarget"]) == ("concurrency", 8)
    assert container["resources"] == {"requests": {"nvidia.com/gpu": "1", "cpu": "500m", "memory": "4Gi"},
                                      "limits": {"nvidia.com/gpu": "1", "memory": "4Gi"}}
    assert container["image"] == "jupyter-flow/pytorch-cuda:latest"
    assert isvc["metadata"]["namespace"] == "review"
    assert {"name": "models", "persistentVolumeClaim": {"claimName": "models", "readOnly": True}} in predictor["volumes"]
    # the config the container is given serves as it is, over the protocol the readiness probe asks
    path = served_config(manifests, "clause-bert", tmp_path)
    assert "deploy" not in yaml.safe_load(path.read_text())
    with AsgiServer(model_app(path)) as srv:
        assert httpx.get(srv.url + container["readinessProbe"]["httpGet"]["path"]).status_code == 200
        assert httpx.post(srv.url + "/predict", json={"text": "The buyer pays."}, timeout=60).json()["label"] in {"negative", "positive"}


FLOW = """\
name: review
inputs:
  clause: {type: text}
nodes:
  - id: classify
    type: transformers
    config: {model: MODEL, task: text-classification, text: "{{ clause }}"}
  - id: recheck
    type: transformers
    config: {model: MODEL, task: text-classification, text: "label {{ classify.output.label }}"}
  - id: notify
    type: http
    config: {endpoint: "http://legal-review.example:5000/predict", input_mapping: {label: "{{ recheck.output.label }}"}}
edges:
  - {from: start, to: classify}
  - {from: classify, to: recheck}
  - {from: recheck, to: notify}
deploy:
  classify: {num_replicas: 2, ray_actor_options: {num_gpus: 1}}
"""


def test_a_flow_of_served_models_and_http_calls_becomes_an_inference_graph(tiny_bert: Path, tmp_path: Path) -> None:  # noqa: F811
    flow = tmp_path / "review.flow.yaml"
    flow.write_text(FLOW.replace("MODEL", str(tiny_bert)))
    out = tmp_path / "manifests"
    done = deploy(flow, out)
    assert done.returncode == 0, done.stderr
    manifests = read(out)
    assert set(manifests) == {"review-classify.configmap.yaml", "review-classify.inferenceservice.yaml",
                              "review-recheck.configmap.yaml", "review-recheck.inferenceservice.yaml",
                              "review.inferencegraph.yaml"}
    for name in ("review-classify", "review-recheck"):
        round_trip(manifests[f"{name}.inferenceservice.yaml"], "V1beta1InferenceService")
        check_schema(manifests[f"{name}.inferenceservice.yaml"])
    classify = manifests["review-classify.inferenceservice.yaml"]["spec"]["predictor"]
    assert (classify["minReplicas"], classify["maxReplicas"]) == (2, 2)
    assert classify["containers"][0]["resources"] == {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}}
    assert "minReplicas" not in manifests["review-recheck.inferenceservice.yaml"]["spec"]["predictor"]
    graph = manifests["review.inferencegraph.yaml"]
    round_trip(graph, "V1alpha1InferenceGraph")
    assert graph["spec"]["nodes"]["root"] == {"routerType": "Sequence", "steps": [
        {"name": "classify", "serviceUrl": "http://review-classify.default.svc.cluster.local/predict", "data": "$request"},
        {"name": "recheck", "serviceUrl": "http://review-recheck.default.svc.cluster.local/predict", "data": "$response"},
        {"name": "notify", "serviceUrl": "http://legal-review.example:5000/predict", "data": "$response"}]}
    # each step's config serves on its own, given the request, then the answer before it
    first, second = (served_config(manifests, name, tmp_path) for name in ("review-classify", "review-recheck"))
    with AsgiServer(model_app(first)) as one, AsgiServer(model_app(second)) as two:
        answer = httpx.post(one.url + "/predict", json={"clause": "Either party may terminate."}, timeout=60)
        assert answer.status_code == 200, answer.text
        again = httpx.post(two.url + "/predict", json=answer.json(), timeout=60)
        assert again.status_code == 200, again.text
        assert set(again.json()) >= {"label", "score"}  # what the http step is given: its `label`


REFUSED = """\
name: mixed
inputs:
  clause: {type: text}
nodes:
  - id: classify
    type: transformers
    config: {model: MODEL, task: text-classification, text: "{{ clause }}"}
  - id: shout
    type: python
    config: {function: "builtins:dict", input_mapping: {x: "{{ classify.output.label }}"}}
  - id: note
    type: template
    config: {template: "{{ classify.output.label }} and {{ clause }}"}
  - id: call
    type: http
    config: {endpoint: "${REVIEW_URL}/predict", input_mapping: {verdict: "{{ classify.output.label }}"}}
edges:
  - {from: classify, to: shout}
  - {from: classify, to: note, when: "{{ classify.output.score > 0.5 }}"}
  - {from: classify, to: call}
deploy:
  classify: {ray_actor_options: {num_gpus: 0.5}}
  call: {num_replicas: 2}
"""


def test_what_kserve_cannot_express_is_refused_by_node_with_exit_2_and_nothing_is_written(
        tiny_bert: Path, tmp_path: Path) -> None:  # noqa: F811
    flow = tmp_path / "mixed.flow.yaml"
    flow.write_text(REFUSED.replace("MODEL", str(tiny_bert)))
    out = tmp_path / "manifests"
    done = deploy(flow, out)
    assert done.returncode == 2, done.stderr
    said = done.stderr
    assert "cannot be written as KServe manifests" in said and "Traceback" not in said
    for expected in ("node 'shout', field 'type': python node", "node 'note', field 'type': template node",
                     "node 'classify', field 'deploy.ray_actor_options.num_gpus': transformers node: num_gpus 0.5",
                     "node 'classify'", "goes to 3 nodes", "edges[1]", "condition",
                     "node 'call', field 'config': http node: its endpoint is not a literal",
                     "input_mapping.verdict is not {{ classify.output.verdict }}",
                     "node 'call', field 'deploy.call': http node: deploy: sets a served model's"):
        assert expected in said, (expected, said)
    assert not out.exists()


def test_a_missing_file_and_a_file_for_a_folder_are_usage_errors(tmp_path: Path) -> None:
    done = deploy(tmp_path / "nope.yaml", tmp_path / "out")
    assert done.returncode == 2 and "no such file" in done.stderr
    config = tmp_path / "echo.serve.yaml"
    config.write_text(yaml.safe_dump({"name": "echo", "type": "template", "config": {"template": "{{ text }}"}}))
    (tmp_path / "taken").write_text("")
    done = deploy(config, tmp_path / "taken")
    assert done.returncode == 2 and "is a file" in done.stderr


def test_deploy_sections_are_checked_when_the_flow_is_read(tmp_path: Path) -> None:
    from jupyter_flow.errors import FlowValidationError
    from jupyter_flow.spec import spec_from_dict

    base = {"nodes": [{"id": "a", "type": "template", "config": {"template": "x"}}]}
    accepted = spec_from_dict({**base, "deploy": {"a": {"autoscaling_config": {"min_replicas": 1, "max_replicas": 3,
                                                                                "target_ongoing_requests": 2}}}})
    assert accepted.deploy["a"].autoscaling_config is not None
    for bad, said in (({"b": {}}, "no node 'b'"), ({"a": {"num_replica": 2}}, "deploy.a.num_replica"),
                      ({"a": {"autoscaling_config": {"min_replicas": 3, "max_replicas": 1}}}, "more than max_replicas"),
                      ({"a": {"num_replicas": 1, "autoscaling_config": {}}}, "not both"),
                      ({"a": {"ray_actor_options": {"num_gpu": 1}}}, "ray_actor_options.num_gpu")):
        with pytest.raises(FlowValidationError, match=re.escape(said)):
            spec_from_dict({**base, "deploy": bad})


def test_steps_whose_names_would_be_the_same_are_refused_naming_both_nodes(tmp_path: Path) -> None:
    flow = tmp_path / "calls.flow.yaml"
    flow.write_text("""\
name: calls
inputs:
  text: {type: text}
nodes:
  - id: call_one
    type: http
    config: {endpoint: "http://one.example/predict", input_mapping: {text: "{{ text }}"}}
  - id: call__one
    type: http
    config: {endpoint: "http://two.example/predict", input_mapping: {text: "{{ call_one.output.text }}"}}
edges:
  - {from: start, to: call_one}
  - {from: call_one, to: call__one}
""")
    out = tmp_path / "manifests"
    done = deploy(flow, out)
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "node 'call__one', field 'id'" in done.stderr and "'call-one'" in done.stderr and "'call_one'" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and not out.exists()
    # apart, the same steps make a graph
    flow.write_text(flow.read_text().replace("call__one", "call_two"))
    assert deploy(flow, out).returncode == 0
    steps = read(out)["calls.inferencegraph.yaml"]["spec"]["nodes"]["root"]["steps"]
    assert [step["name"] for step in steps] == ["call-one", "call-two"]
