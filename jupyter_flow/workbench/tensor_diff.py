"""A tensor of this run against the same tensor of an earlier run, as a widget.

The numbers first (max and mean absolute difference, cosine similarity, how many values
changed), then the difference drawn with the tensor's own view. When both runs' tokens
are known, the token axes are lined up by text (`jupyter_flow.tensorview.align_tokens`),
not by position, and the view says so: "24 tokens vs 19; aligned by text: 17 match".
Axes are named by what they are (layer, head, query token, key token, token).
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from jupyter_flow.tensorview import Diff, axis_names, compare, is_attention, token_axis
from jupyter_flow.workbench.tensors import TensorView

__all__ = ["DiffView"]


def _esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _shapes(d: Diff) -> str:
    if d.same_shape:
        return "same shape " + "\u00d7".join(map(str, d.shape))
    return f"shapes differ: now {d.shape}, before {d.previous_shape}"


class DiffView:
    """This run's tensor against the previous run's: numbers first, then the difference
    (this run minus the previous one) drawn with the tensor's own view. `tokens` and
    `previous_tokens` are the two runs' tokens; with both, token axes are lined up by text."""

    def __init__(self, current: Any, previous: Any, *, name: str = "tensor", tokens: Sequence[str] | None = None,
                 previous_tokens: Sequence[str] | None = None, index: Sequence[int] = ()) -> None:
        import ipywidgets as w

        self.diff = d = compare(current, previous, tokens=tokens, previous_tokens=previous_tokens)
        self.alignment = d.alignment
        lines = [f"<b>{_esc(name)}: this run vs the previous run</b> ({_esc(_shapes(d))})"]
        if d.alignment is not None:
            how = "" if d.alignment.identical else " (tokens in one run only are left out; positions are this run's)"
            lines.append(f"<span class='jf-alignment'>{_esc(d.alignment.summary())}{_esc(how)}</span>")
        elif not d.same_shape:
            lines.append("<span class='jf-alignment'>the leading part both shapes share is compared, by position</span>")
        lines.append(
            f"<span class='jf-stat'><i>max |diff|</i> {_fmt(d.max_abs)}</span> &nbsp; "
            f"<span class='jf-stat'><i>mean |diff|</i> {_fmt(d.mean_abs)}</span> &nbsp; "
            f"<span class='jf-stat'><i>cosine similarity</i> {'n/a' if d.cosine is None else f'{d.cosine:.6f}'}</span> &nbsp; "
            f"<span class='jf-stat'><i>changed</i> {d.changed} of {d.compared}</span>")
        parts: list[Any] = [w.HTML(f"<div class='jf-diff'>{'<br>'.join(lines)}</div>")]
        if d.changed:
            ndim = d.difference.ndim
            attention = is_attention(current) and is_attention(previous)
            names = axis_names(ndim, tokens=d.token_axes, attention=attention)
            labels = {}
            if d.alignment is not None and tokens is not None:
                own = token_axis(tokens, len(tokens)).labels
                labels = {axis: [own[i] for i, _ in d.alignment.pairs] for axis in d.token_axes}
            elif tokens is not None and d.same_shape:
                labels = {axis: token_axis(tokens, len(tokens)).labels for axis in range(ndim) if d.shape[axis] == len(tokens)}
            self.view: TensorView | None = TensorView(d.difference, name=f"{name} (now - before)", index=index, diverging=True,
                                                      axis_names=names, axis_labels=labels)
            parts.append(self.view.widget)
        else:
            self.view = None
            parts.append(w.HTML("<i>identical to the previous run</i>"))
        self.widget = w.VBox(parts)
        self.widget.add_class("jf-diff-view")

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
