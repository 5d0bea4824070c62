"""`vote`: combine several classifiers' outputs by majority or by mean score."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from jupyter_flow.errors import NodeError
from jupyter_flow.nodes.base import Node, NodeConfig, NodeContext

__all__ = ["VoteNode"]


class VoteConfig(NodeConfig):
    inputs: Any  # a list of classifier outputs (templates), or one template giving the list
    method: Literal["majority", "mean"] = "majority"
    weights: list[float] | None = None
    label_key: str = "label"
    scores_key: str = "scores"


class VoteNode(Node):
    """Each input is a classifier output: a label string, or a dict with `label` (and for
    `mean`, `scores`: label -> probability). Majority counts (weighted) labels and breaks
    ties by the first voter; mean averages the score dicts and takes the best label.
    Output: `{"label", "votes" | "scores", "agreement", "voters"}`."""

    kind = "vote"
    Config = VoteConfig
    config: VoteConfig

    async def run(self, inputs: dict[str, Any], ctx: NodeContext) -> Any:
        voters = inputs["inputs"]
        if not isinstance(voters, list) or not voters:
            raise NodeError("config.inputs must resolve to a non-empty list of classifier outputs", node=self.id, retryable=False)
        weights = self.config.weights or [1.0] * len(voters)
        if len(weights) != len(voters):
            raise NodeError(
                f"config.weights has {len(weights)} entries for {len(voters)} inputs", node=self.id, retryable=False
            )
        if self.config.method == "mean":
            return self._mean(voters, weights)
        tally: dict[str, float] = {}
        for i, (voter, w) in enumerate(zip(voters, weights)):
            label = self._label(voter, i)
            tally[label] = tally.get(label, 0.0) + w
        best = max(tally.values())
        label = next(lbl for lbl, v in tally.items() if v == best)
        return {"label": label, "votes": tally, "agreement": best / sum(weights), "voters": len(voters)}

    def _label(self, voter: Any, i: int) -> str:
        if isinstance(voter, str):
            return voter
        if isinstance(voter, Mapping) and self.config.label_key in voter:
            return str(voter[self.config.label_key])
        raise NodeError(
            f"input #{i + 1} has no {self.config.label_key!r} (got {type(voter).__name__})", node=self.id, retryable=False
        )

    def _mean(self, voters: list[Any], weights: list[float]) -> dict[str, Any]:
        sums: dict[str, float] = {}
        for i, (voter, w) in enumerate(zip(voters, weights)):
            scores = voter.get(self.config.scores_key) if isinstance(voter, Mapping) else None
            if not isinstance(scores, Mapping):
                raise NodeError(
                    f"input #{i + 1} has no {self.config.scores_key!r} mapping of label to score, needed for method 'mean'",
                    node=self.id,
                    retryable=False,
                )
            for label, score in scores.items():
                sums[str(label)] = sums.get(str(label), 0.0) + w * float(score)
        total = sum(weights)
        mean = {label: s / total for label, s in sums.items()}
        label = max(mean, key=mean.__getitem__)
        labels = [self._label(v, i) for i, v in enumerate(voters) if isinstance(v, Mapping) and self.config.label_key in v]
        agreement = labels.count(label) / len(voters) if labels else None
        return {"label": label, "score": mean[label], "scores": mean, "agreement": agreement, "voters": len(voters)}
