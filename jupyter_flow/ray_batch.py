"""Where `run_batch_ray` lived before batch runs became a package; notebooks exported
then import it from here, and keep working. New code: `jupyter_flow.batch.ray`."""

from __future__ import annotations

from jupyter_flow.batch.ray import run_batch_ray

__all__ = ["run_batch_ray"]
