"""What a tensor view needs, worked out in the kernel: pure functions over arrays.

- `as_array`: a torch tensor, numpy array or nested list as a float64 numpy array.
- `downsample`: a 2-D array cut to at most ``max_rows x max_cols`` cells by averaging
  blocks; the true shape and the first index of each block are kept for labels.
- `plane`: the 2-D slice of the last two axes at given leading indices.
- `histogram`: counts and edges over the finite values.
- `nonfinite`: where the NaN and Inf values are (the first positions, and counts).
- `compare`: a run-to-run diff (max and mean absolute difference, cosine similarity,
  how many values changed) and the difference array over the shapes' common part.
- `token_axis`: labels for a sequence axis from a node's tokens, padding marked apart.
- `align_tokens`: two runs' tokens lined up by text (not by position), which `compare`
  uses for the token axes of tensors from inputs of different texts.
- `axis_names`: what each axis of a tensor is (layer, head, query token, token, ...).
- `thin_labels`: which positions of an axis get a label, so that labels never overlap.
- `attention_links`: the weights a head view draws as lines, within a budget of lines.
- `attention_thumbnail`: one head's map cut to a small image, scaled for the eye.

Nothing here draws: the workbench's tensor views (`jupyter_flow.workbench.tensors`,
`.attention`, `.tensor_diff`, `.plots`) turn these into widgets.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from jupyter_flow.values import is_tensor, to_host

__all__ = [
    "ATTENTION_AXES",
    "MAX_CELLS",
    "Alignment",
    "Diff",
    "Downsampled",
    "Links",
    "NonFinite",
    "TokenAxis",
    "align_tokens",
    "as_array",
    "attention_links",
    "attention_thumbnail",
    "axis_names",
    "compare",
    "downsample",
    "histogram",
    "is_attention",
    "nonfinite",
    "plane",
    "thin_labels",
    "token_axes",
    "token_axis",
]

MAX_CELLS = 256  # at most this many rows and columns go to the browser
PAD = "[PAD]"


def as_array(value: Any) -> Any:
    """A float64 numpy array of a tensor (any device, any dtype), array or nested list;
    complex values by their magnitude."""
    import numpy as np

    a = np.asarray(to_host(value) if is_tensor(value) else value)
    if np.iscomplexobj(a):
        a = np.abs(a)
    return a.astype(np.float64)


@dataclass(frozen=True)
class Downsampled:
    """A 2-D array cut down for drawing. `rows[i]`/`cols[j]` are the first index (in the
    true array) of the block that cell (i, j) averages; `step` is the block size."""

    values: Any
    shape: tuple[int, int]
    rows: list[int]
    cols: list[int]
    step: tuple[int, int]

    @property
    def reduced(self) -> bool:
        return self.step != (1, 1)


def downsample(array: Any, max_rows: int = MAX_CELLS, max_cols: int = MAX_CELLS) -> Downsampled:
    """Average blocks of a 2-D array so that it has at most `max_rows` x `max_cols` cells.
    A block holding a NaN or an Inf is NaN (so the locator's cells stay visible), else
    the mean of its values."""
    import numpy as np

    a = as_array(array)
    if a.ndim != 2:
        raise ValueError(f"downsample takes a 2-D array, not {a.ndim}-D (shape {tuple(a.shape)})")
    n, m = a.shape
    sr, sc = max(1, math.ceil(n / max_rows)), max(1, math.ceil(m / max_cols))
    if (sr, sc) == (1, 1):
        return Downsampled(a, (n, m), list(range(n)), list(range(m)), (1, 1))
    rn, rm = math.ceil(n / sr), math.ceil(m / sc)
    padded = np.full((rn * sr, rm * sc), np.nan)
    padded[:n, :m] = a
    present = np.zeros_like(padded, dtype=bool)
    present[:n, :m] = True
    blocks = padded.reshape(rn, sr, rm, sc)
    inside = present.reshape(rn, sr, rm, sc)
    bad = (~np.isfinite(blocks)) & inside
    finite = np.where(bad | ~inside, 0.0, blocks)
    count = (inside & ~bad).sum(axis=(1, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        values = finite.sum(axis=(1, 3)) / count
    values = np.where(bad.any(axis=(1, 3)), np.nan, values)  # drawn in the highlight colour
    return Downsampled(values, (n, m), list(range(0, n, sr)), list(range(0, m, sc)), (sr, sc))


def plane(array: Any, index: Sequence[int] = ()) -> Any:
    """The 2-D array of the last two axes at `index` for the leading ones (a 1-D array
    is one row; missing indices are 0)."""
    a = as_array(array)
    if a.ndim == 0:
        return a.reshape(1, 1)
    if a.ndim == 1:
        return a.reshape(1, -1)
    lead = list(index)[: a.ndim - 2]
    lead += [0] * (a.ndim - 2 - len(lead))
    for axis, i in enumerate(lead):
        if not 0 <= i < a.shape[axis]:
            raise IndexError(f"index {i} is out of range for axis {axis} of size {a.shape[axis]}")
    return a[tuple(lead)]


def histogram(array: Any, bins: int = 30) -> tuple[list[int], list[float]]:
    """Counts and bin edges over the finite values ([] and [] when there are none)."""
    import numpy as np

    a = as_array(array).ravel()
    a = a[np.isfinite(a)]
    if not a.size:
        return [], []
    lo, hi = float(a.min()), float(a.max())
    counts, edges = np.histogram(a, bins=bins, range=(lo, hi if hi > lo else lo + 1.0))
    return [int(c) for c in counts], [float(e) for e in edges]


@dataclass(frozen=True)
class NonFinite:
    """Where a tensor is NaN or infinite: counts and the first positions (index tuples)."""

    nan: int
    inf: int
    positions: list[tuple[int, ...]] = field(default_factory=list)
    values: list[float] = field(default_factory=list)

    @property
    def any(self) -> bool:
        return bool(self.nan or self.inf)


def nonfinite(array: Any, limit: int = 10) -> NonFinite:
    """Counts of NaN and Inf values and the first `limit` positions, in row-major order."""
    import numpy as np

    a = as_array(array)
    nan, inf = np.isnan(a), np.isinf(a)
    bad = np.argwhere(nan | inf)[:limit]
    positions = [tuple(int(i) for i in p) for p in bad]
    return NonFinite(int(nan.sum()), int(inf.sum()), positions, [float(a[p]) for p in positions])


@dataclass(frozen=True)
class Alignment:
    """Two token lists lined up by text: `pairs` holds (position now, position before) of
    each token found in both, in order; the rest were inserted or deleted."""

    pairs: list[tuple[int, int]]
    now: int  # tokens in this run
    before: int  # tokens in the earlier run

    @property
    def matched(self) -> int:
        return len(self.pairs)

    @property
    def identical(self) -> bool:
        return self.now == self.before == self.matched

    def summary(self) -> str:
        """``"24 tokens vs 19; aligned by text: 17 match"``, or ``"the same 19 tokens"``."""
        if self.identical:
            return f"the same {self.now} tokens"
        return f"{self.now} tokens vs {self.before}; aligned by text: {self.matched} match"


def align_tokens(now: Sequence[str], before: Sequence[str]) -> Alignment:
    """Line up two runs' tokens by their text (the longest matching runs first), so that a
    token added at the start does not shift every later comparison by one."""
    a, b = [str(t) for t in now], [str(t) for t in before]
    matcher = difflib.SequenceMatcher(a=a, b=b, autojunk=False)
    pairs = [(block.a + k, block.b + k) for block in matcher.get_matching_blocks() for k in range(block.size)]
    return Alignment(pairs, len(a), len(b))


@dataclass(frozen=True)
class Diff:
    """This run's tensor against the previous run's. Token axes (when both runs' tokens
    are known) are lined up by text (`alignment`), the other axes over their common part."""

    shape: tuple[int, ...]
    previous_shape: tuple[int, ...]
    max_abs: float
    mean_abs: float
    cosine: float | None  # None when either side is all zeros
    changed: int  # values that differ by more than `atol`
    compared: int  # values compared (the common part's size)
    difference: Any  # this - previous, over the common part (matched tokens only on token axes)
    alignment: Alignment | None = None
    token_axes: tuple[int, ...] = ()  # the axes lined up by `alignment`

    @property
    def same_shape(self) -> bool:
        return self.shape == self.previous_shape


def token_axes(shape: Sequence[int], previous_shape: Sequence[int], tokens: int, previous_tokens: int) -> tuple[int, ...]:
    """The axes of two tensors that run along their inputs' tokens: the last two of an
    attention-like tensor (``..., tokens, tokens``), else the first axis as long as the
    tokens in both runs; () when there is none."""
    if len(shape) != len(previous_shape) or not tokens or not previous_tokens:
        return ()
    n = len(shape)
    if n >= 2 and shape[-1] == shape[-2] == tokens and previous_shape[-1] == previous_shape[-2] == previous_tokens:
        return (n - 2, n - 1)
    for axis, (now, before) in enumerate(zip(shape, previous_shape)):
        if now == tokens and before == previous_tokens:
            return (axis,)
    return ()


def compare(current: Any, previous: Any, *, atol: float = 0.0, tokens: Sequence[str] | None = None,
            previous_tokens: Sequence[str] | None = None) -> Diff:
    """A run-to-run diff of two tensors. With both runs' tokens, the token axes are lined
    up by text (`align_tokens`) and only matched tokens are compared; other axes whose
    sizes differ are compared over the leading corner they share. Both shapes are kept."""
    import numpy as np

    a, b = as_array(current), as_array(previous)
    if a.ndim != b.ndim:
        raise ValueError(f"cannot compare a {a.ndim}-D tensor {tuple(a.shape)} with a {b.ndim}-D one {tuple(b.shape)}")
    shape, previous_shape = tuple(int(s) for s in a.shape), tuple(int(s) for s in b.shape)
    alignment: Alignment | None = None
    axes: tuple[int, ...] = ()
    if tokens is not None and previous_tokens is not None:
        axes = token_axes(shape, previous_shape, len(tokens), len(previous_tokens))
        if axes:
            alignment = align_tokens(tokens, previous_tokens)
            now_at = [i for i, _ in alignment.pairs]
            before_at = [j for _, j in alignment.pairs]
            for axis in axes:
                a, b = np.take(a, now_at, axis=axis), np.take(b, before_at, axis=axis)
    common = tuple(slice(0, min(x, y)) for x, y in zip(a.shape, b.shape))
    ca, cb = a[common], b[common]
    diff = ca - cb
    finite = np.isfinite(diff)
    absd = np.abs(np.where(finite, diff, 0.0))
    changed = int(((absd > atol) | ~finite & ~(np.isnan(ca) & np.isnan(cb))).sum())
    fa, fb = np.where(np.isfinite(ca), ca, 0.0).ravel(), np.where(np.isfinite(cb), cb, 0.0).ravel()
    na, nb = float(np.linalg.norm(fa)), float(np.linalg.norm(fb))
    cosine = float(np.dot(fa, fb) / (na * nb)) if na > 0 and nb > 0 else None
    return Diff(
        shape=shape,
        previous_shape=previous_shape,
        max_abs=float(absd.max()) if absd.size else 0.0,
        mean_abs=float(absd.mean()) if absd.size else 0.0,
        cosine=cosine,
        changed=changed,
        compared=int(diff.size),
        difference=diff,
        alignment=alignment,
        token_axes=axes,
    )


@dataclass(frozen=True)
class TokenAxis:
    """Labels of a sequence axis: ``"position token"``, unique per position; `padding`
    marks the positions past the input's own tokens."""

    tokens: list[str]
    labels: list[str]
    padding: list[bool]


def token_axis(tokens: Sequence[str] | None, length: int, *, pad_token: str = PAD) -> TokenAxis:
    """Labels for an axis of `length` positions from an input's tokens. Positions past
    the tokens (or tokens equal to `pad_token`) are padding; no tokens: positions only."""
    toks = [str(t) for t in (tokens or [])]
    out_tokens, labels, padding = [], [], []
    for i in range(length):
        tok = toks[i] if i < len(toks) else (pad_token if toks else "")
        pad = bool(toks) and (i >= len(toks) or tok == pad_token)
        out_tokens.append(tok)
        padding.append(pad)
        labels.append(f"{i} {tok}".rstrip() if not pad else f"{i} \u00b7{tok}")
    return TokenAxis(out_tokens, labels, padding)


# -- attention and axes ---------------------------------------------------------------------
ATTENTION_AXES = ("layer", "head", "query token", "key token")


def is_attention(value: Any, tokens: Sequence[str] | None = None) -> bool:
    """A ``(layers, heads, n, n)`` tensor (n the token count, when tokens are known)."""
    shape = tuple(getattr(value, "shape", ()))
    return len(shape) == 4 and shape[2] == shape[3] and (tokens is None or shape[2] == len(tokens))


def axis_names(ndim: int, *, tokens: tuple[int, ...] = (), attention: bool = False) -> list[str]:
    """What each axis is called in a view: an attention tensor's four axes by their meaning,
    axes along the tokens "token", the others "axis k"."""
    if attention and ndim == 4:
        return list(ATTENTION_AXES)
    if attention and ndim == 2:
        return list(ATTENTION_AXES[2:])
    return ["token" if axis in tokens else f"axis {axis}" for axis in range(ndim)]


_NICE_STEPS = (1, 2, 3, 4, 5)


def thin_labels(count: int, pixels: float, *, min_px: float = 12.0, start: float | None = None, stop: float | None = None) -> list[int]:
    """The positions of an axis that get a label: of `count` positions, the window from
    `start` to `stop` (positions, default all) is drawn over `pixels`; labels go on every
    k-th position (k 1, 2, 3, 4, 5, 10, 20, ...), k the smallest step that leaves `min_px`
    between two labels."""
    if count <= 0:
        return []
    lo = -0.5 if start is None else float(start)
    hi = count - 0.5 if stop is None else float(stop)
    span = max(hi - lo, 1e-9)
    per_position = max(float(pixels), 1.0) / span
    step, scale = 1, 1
    while step * per_position < min_px:
        for nice in _NICE_STEPS:
            if nice * scale * per_position >= min_px:
                step = nice * scale
                break
        else:
            scale *= 10
            continue
        break
    first = max(0, math.ceil(lo))
    last = min(count - 1, math.floor(hi))
    first = -(-first // step) * step  # round up to a multiple of the step
    return list(range(first, last + 1, step))


@dataclass(frozen=True)
class Links:
    """The lines of a head view: one per (head, source token, target token) drawn, lightest
    first. Weights under `floor` are left out (`hidden` of them), but each source token
    keeps its strongest link in every head."""

    head: list[int]
    source: list[int]
    target: list[int]
    weight: list[float]
    floor: float
    hidden: int

    def __len__(self) -> int:
        return len(self.weight)


def attention_links(weights: Any, heads: Sequence[int] | None = None, *, budget: int = 4000, min_weight: float = 0.0) -> Links:
    """The links to draw of one layer's attention ``(heads, queries, keys)`` (or one head's
    ``(queries, keys)``) for the heads chosen (default all): the heaviest, at most about
    `budget` of them, none under `min_weight`."""
    import numpy as np

    a = as_array(weights)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3:
        raise ValueError(f"attention_links takes (heads, queries, keys) weights, not shape {tuple(a.shape)}")
    chosen = list(range(a.shape[0])) if heads is None else [int(h) for h in heads]
    for h in chosen:
        if not 0 <= h < a.shape[0]:
            raise IndexError(f"head {h} is out of range: the layer has {a.shape[0]} heads")
    if not chosen or not a.size:
        return Links([], [], [], [], float(min_weight), 0)
    sub = np.where(np.isfinite(a[chosen]), a[chosen], 0.0)
    positive = sub[sub > 0]
    floor = float(min_weight)
    if positive.size > budget:
        floor = max(floor, float(np.partition(positive, positive.size - budget)[positive.size - budget]))
    keep = (sub >= floor) & (sub > 0)
    strongest = sub.argmax(axis=2)  # each source token's heaviest link in each head
    h_idx, s_idx = np.meshgrid(np.arange(sub.shape[0]), np.arange(sub.shape[1]), indexing="ij")
    keep[h_idx, s_idx, strongest] |= sub[h_idx, s_idx, strongest] > 0
    hs, ss, ts = np.nonzero(keep)
    ws = sub[hs, ss, ts]
    order = np.argsort(ws, kind="stable")  # the heaviest drawn last, on top
    hidden = int((sub > 0).sum() - keep.sum())
    return Links([chosen[int(h)] for h in hs[order]], [int(s) for s in ss[order]], [int(t) for t in ts[order]],
                 [float(w) for w in ws[order]], floor, hidden)


def attention_thumbnail(weights: Any, size: int = 64) -> Any:
    """One head's ``(queries, keys)`` map as a small image: block means down to at most
    `size` x `size`, scaled to 0..1 by its largest weight, then square-rooted so that
    weak but real patterns stay visible; NaN and Inf show as 0."""
    import numpy as np

    cut = np.asarray(downsample(weights, size, size).values, dtype=float)
    cut = np.where(np.isfinite(cut), np.abs(cut), 0.0)
    top = float(cut.max()) if cut.size else 0.0
    return np.sqrt(cut / top) if top > 0 else cut
