"""`switch` routes by condition along `branch` edges; `vote` combines classifiers served by
real loopback endpoints, by majority or by mean score."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from servers import LoopbackServer, Reply, Request

from jupyter_flow import Flow, FlowRunError

Serve = Callable[[dict[str, Any]], LoopbackServer]


def routed_flow(url: str) -> Flow:
    def clf(node_id: str) -> dict[str, Any]:
        return {"id": node_id, "type": "http", "config": {"endpoint": f"{url}/{node_id}", "input_mapping": {"text": "{{ text }}"}}}

    return Flow.from_dict({
        "inputs": {"text": {"type": "string"}},
        "nodes": [
            {"id": "risk", "type": "http", "config": {"endpoint": f"{url}/risk", "input_mapping": {"text": "{{ text }}"}}},
            {"id": "route", "type": "switch", "config": {
                "cases": {"high": "{{ risk.output.score > 0.8 }}", "medium": "{{ risk.output.score > 0.4 }}"},
                "default": "low"}},
            clf("legal"), clf("review"), clf("archive"),
            {"id": "summary", "type": "template", "config": {"template": "{{ route.output.branch }}"}},
        ],
        "edges": [
            {"from": "risk", "to": "route"},
            {"from": "route", "to": "legal", "branch": "high"},
            {"from": "route", "to": "review", "branch": "medium"},
            {"from": "route", "to": "archive", "branch": "low"},
            {"from": "legal", "to": "summary"}, {"from": "review", "to": "summary"}, {"from": "archive", "to": "summary"},
        ],
    })


@pytest.mark.parametrize(("score", "branch", "matched"), [(0.9, "high", ["high", "medium"]), (0.5, "medium", ["medium"]), (0.1, "low", [])])
def test_switch_follows_the_chosen_branch(serve: Serve, score: float, branch: str, matched: list[str]) -> None:
    def answer(req: Request) -> Reply:
        if req.path == "/risk":
            return Reply(200, {"score": score})
        return Reply(200, {"handled_by": req.path.strip("/"), "text": req.body["text"]})

    server = serve({p: answer for p in ("/risk", "/legal", "/review", "/archive")})
    result = routed_flow(server.url).run({"text": "clause 7"})
    assert result.outputs["route"] == {"branch": branch, "matched": matched}
    target = {"high": "legal", "medium": "review", "low": "archive"}[branch]
    statuses = {nid: result[nid].status for nid in ("legal", "review", "archive")}
    assert statuses == {nid: "ok" if nid == target else "skipped" for nid in statuses}
    assert [r.path for r in server.requests] == ["/risk", f"/{target}"]
    assert result.outputs["summary"] == {"text": branch}  # one active branch is enough to run the join


def test_branch_must_exist_on_the_switch() -> None:
    flow = Flow.from_dict({
        "nodes": [{"id": "route", "type": "switch", "config": {"cases": {"yes": "{{ true }}"}}},
                  {"id": "a", "type": "template", "config": {"template": "x"}},
                  {"id": "b", "type": "template", "config": {"template": "x"}}],
        "edges": [{"from": "route", "to": "a", "branch": "maybe"}, {"from": "a", "to": "b", "branch": "yes"}],
    })
    problems = {(p.edge, p.field): p.message for p in flow.problems()}
    assert "no branch 'maybe'" in problems[(0, "branch")] and "yes, default" in problems[(0, "branch")]
    assert "needs a node that branches (a switch)" in problems[(1, "branch")]


def test_switch_cases_must_be_conditions() -> None:
    (problem,) = Flow.from_dict({"nodes": [{"id": "route", "type": "switch", "config": {"cases": {"high": "score > 1"}}}]}).problems()
    assert problem.node == "route" and problem.field == "config.cases" and "braces" in problem.message


def classifiers(serve: Serve, answers: dict[str, Any]) -> LoopbackServer:
    return serve({f"/{name}": (lambda a: lambda req: Reply(200, a))(answer) for name, answer in answers.items()})


def voting_flow(url: str, names: list[str], **vote_config: Any) -> Flow:
    nodes = [{"id": n, "type": "http", "config": {"endpoint": f"{url}/{n}", "input_mapping": {"text": "{{ text }}"}}} for n in names]
    vote = {"id": "vote", "type": "vote", "config": {"inputs": [f"{{{{ {n}.output }}}}" for n in names], **vote_config}}
    return Flow.from_dict({"nodes": [*nodes, vote], "edges": [{"from": n, "to": "vote"} for n in names]})


def test_vote_majority(serve: Serve) -> None:
    server = classifiers(serve, {"bert": {"label": "risky"}, "rules": {"label": "safe"}, "llm": {"label": "risky"}})
    result = voting_flow(server.url, ["bert", "rules", "llm"]).run({"text": "x"})
    assert result.outputs["vote"] == {"label": "risky", "votes": {"risky": 2.0, "safe": 1.0}, "agreement": pytest.approx(2 / 3), "voters": 3}
    assert {r.body["text"] for r in server.requests} == {"x"}


def test_vote_majority_with_weights_and_ties(serve: Serve) -> None:
    server = classifiers(serve, {"bert": {"label": "risky"}, "rules": {"label": "safe"}, "llm": {"label": "risky"}})
    weighted = voting_flow(server.url, ["bert", "rules", "llm"], weights=[1, 3, 1]).run({"text": "x"})
    assert weighted.outputs["vote"]["label"] == "safe" and weighted.outputs["vote"]["agreement"] == pytest.approx(0.6)
    tie = voting_flow(server.url, ["rules", "bert"]).run({"text": "x"})
    assert tie.outputs["vote"]["label"] == "safe"  # ties go to the first voter


def test_vote_mean(serve: Serve) -> None:
    server = classifiers(serve, {
        "a": {"label": "safe", "scores": {"safe": 0.6, "risky": 0.4}},
        "b": {"label": "safe", "scores": {"safe": 0.55, "risky": 0.45}},
        "c": {"label": "risky", "scores": {"safe": 0.05, "risky": 0.95}},
    })
    result = voting_flow(server.url, ["a", "b", "c"], method="mean").run({"text": "x"})
    vote = result.outputs["vote"]
    # majority would say "safe"; the mean of the scores says "risky"
    assert vote["label"] == "risky" and vote["score"] == pytest.approx(0.6)
    assert vote["scores"] == {"safe": pytest.approx(0.4), "risky": pytest.approx(0.6)}
    assert vote["agreement"] == pytest.approx(1 / 3) and vote["voters"] == 3


def test_vote_mean_needs_scores(serve: Serve) -> None:
    server = classifiers(serve, {"a": {"label": "safe"}, "b": {"label": "risky", "scores": {"risky": 1.0}}})
    with pytest.raises(FlowRunError) as info:
        voting_flow(server.url, ["a", "b"], method="mean").run({"text": "x"})
    assert "node 'vote'" in str(info.value) and "'scores'" in str(info.value) and "#1" in str(info.value)


def test_vote_over_a_list_from_one_template_and_bad_weights(serve: Serve) -> None:
    server = classifiers(serve, {"ensemble": {"labels": ["b", "a", "b"]}})
    flow = Flow.from_dict({
        "nodes": [{"id": "ensemble", "type": "http", "config": {"endpoint": f"{server.url}/ensemble"}},
                  {"id": "vote", "type": "vote", "config": {"inputs": "{{ ensemble.output.labels }}"}},
                  {"id": "bad", "type": "vote", "config": {"inputs": "{{ ensemble.output.labels }}", "weights": [1, 2]}}],
        "edges": [{"from": "ensemble", "to": "vote"}, {"from": "ensemble", "to": "bad"}],
    })
    result = flow.run(raise_on_error=False)
    assert result.outputs["vote"]["label"] == "b"
    assert result["bad"].status == "error" and "2 entries for 3 inputs" in result["bad"].error.message  # type: ignore[union-attr]
