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

Nothing here draws: `jupyter_flow.workbench.tensors` turns these into widgets.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = [
    "MAX_CELLS",
    "Diff",
    "Downsampled",
    "NonFinite",
    "TokenAxis",
    "as_array",
    "compare",
    "downsample",
    "histogram",
    "nonfinite",
    "plane",
    "token_axis",
]

MAX_CELLS = 256  # at most this many rows and columns go to the browser
PAD = "[PAD]"


def as_array(value: Any) -> Any:
    """A float64 numpy array of a tensor (any device, any dtype), array or nested list."""
    import numpy as np

    if hasattr(value, "detach"):  # torch.Tensor
        t = value.detach()
        if t.is_complex():
            t = t.abs()
        return t.to("cpu").double().numpy()
    a = np.asarray(value)
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
class Diff:
    """This run's tensor against the previous run's, over the shapes' common part."""

    shape: tuple[int, ...]
    previous_shape: tuple[int, ...]
    max_abs: float
    mean_abs: float
    cosine: float | None  # None when either side is all zeros
    changed: int  # values that differ by more than `atol`
    compared: int  # values compared (the common part's size)
    difference: Any  # this - previous, over the common part

    @property
    def same_shape(self) -> bool:
        return self.shape == self.previous_shape


def compare(current: Any, previous: Any, *, atol: float = 0.0) -> Diff:
    """A run-to-run diff of two tensors. Where the shapes differ (a longer text has more
    tokens), the leading corner they share is compared and both shapes are kept."""
    import numpy as np

    a, b = as_array(current), as_array(previous)
    if a.ndim != b.ndim:
        raise ValueError(f"cannot compare a {a.ndim}-D tensor {tuple(a.shape)} with a {b.ndim}-D one {tuple(b.shape)}")
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
        shape=tuple(int(s) for s in a.shape),
        previous_shape=tuple(int(s) for s in b.shape),
        max_abs=float(absd.max()) if absd.size else 0.0,
        mean_abs=float(absd.mean()) if absd.size else 0.0,
        cosine=cosine,
        changed=changed,
        compared=int(diff.size),
        difference=diff,
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
