"""The progress bar of a batch (tqdm), the same for the local and the Ray engine."""

from __future__ import annotations

import sys
from typing import Any

__all__ = ["make_bar"]


def make_bar(progress: Any, total: int, initial: int) -> Any:
    """A tqdm bar over `total` items, `initial` of them already done, or None.

    `progress`: True (tqdm on stderr), "auto" (tqdm.auto: a widget in Jupyter), False or
    None (no bar), or a tqdm-like class called with the same arguments."""
    if progress is False or progress is None:
        return None
    if progress == "auto":
        from tqdm.auto import tqdm as auto_tqdm

        return auto_tqdm(total=total, initial=initial, unit="item", desc="batch")
    if progress is True:
        from tqdm import tqdm

        return tqdm(total=total, initial=initial, unit="item", desc="batch", file=sys.stderr)
    return progress(total=total, initial=initial, unit="item", desc="batch")
