"""A local Ray for this process, and a flow as it travels to Ray's workers.

Both ways of running on Ray use this module: ``serve --ray``
(`jupyter_flow.serve.ray_serve`) and ``batch --engine ray`` (`jupyter_flow.batch.ray`).

- `start_local_ray`: a private Ray on this machine with the CPUs and object store its
  caller bounds it to, no dashboard, no token. Ray gives its node 30 s to come up, which a
  loaded machine can miss: the start is tried again, `tries` times in all, before a
  FlowError says why.
- `flow_payload` / `flow_from_payload`: what a worker (a Serve replica, a batch actor)
  needs to build the same flow as the driver, and that flow built and validated again.
- `shutdown_ray`: Ray shut down once nothing holds its objects any more, and the threads
  that call into Ray in the background (`calls_ray`) have ended.
- `error_line`: Ray's errors run to many lines, the cause at the end; the line a message
  quotes.

Ray is an optional extra, and only `start_local_ray` needs it: it imports Ray when called,
so that this module imports without it.
"""

from __future__ import annotations

import contextlib
import gc
import logging
import os
import threading
import time
import weakref
from collections.abc import Mapping
from typing import Any

from jupyter_flow.errors import FlowError
from jupyter_flow.flow import Flow
from jupyter_flow.nodes.registry import default_registry

__all__ = ["calls_ray", "error_line", "flow_from_payload", "flow_payload", "shutdown_ray", "start_local_ray"]

log = logging.getLogger("jupyter_flow.ray")

#: The most characters of a Ray error a message quotes.
ERROR_LINE_CHARS = 600


def error_line(exc: BaseException) -> str:
    """The type and the last non-empty line of `exc` (where Ray puts the cause), bounded."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return f"{type(exc).__name__}: {lines[-1] if lines else ''}"[:ERROR_LINE_CHARS]


def start_local_ray(*, num_cpus: int | None, object_store_bytes: int, tries: int = 2) -> None:
    """Start a private Ray on this machine for this process: `num_cpus` CPUs (None: Ray
    counts the machine's), an object store of `object_store_bytes`, no dashboard, no token,
    Ray's logs kept off the driver's. A start that fails is tried again, `tries` times in
    all; then FlowError quotes Ray's reason."""
    import ray  # the optional extra: its callers say which to install when it is missing

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    for attempt in range(1, max(1, tries) + 1):
        try:
            ray.init(num_cpus=num_cpus, object_store_memory=object_store_bytes, include_dashboard=False,
                     log_to_driver=False, configure_logging=False)
            return
        except Exception as exc:  # Ray raises plain Exception when its node does not come up in time
            with contextlib.suppress(Exception):
                ray.shutdown()
            if attempt >= tries:
                raise FlowError(f"cannot start a local Ray cluster: {error_line(exc)}") from exc
            log.warning("a local Ray did not start (%s); trying again", error_line(exc))


#: the longest `shutdown_ray` waits for the threads `calls_ray` names to end
RAY_CALLERS_WAIT_S = 30.0

#: threads of this process that call into Ray in the background
_RAY_CALLERS: weakref.WeakSet[threading.Thread] = weakref.WeakSet()


def calls_ray(thread: threading.Thread) -> None:
    """`thread` calls into Ray in the background (a deployment left to finish past its
    deadline): `shutdown_ray` waits for it to end first."""
    _RAY_CALLERS.add(thread)


def shutdown_ray() -> None:
    """Shut down this process's Ray, its objects let go first and its background callers
    (`calls_ray`) ended, for at most `RAY_CALLERS_WAIT_S`: a Ray object (an actor handle,
    an object ref) freed after `ray.shutdown()`, by a garbage collection in any thread at
    any time later, or a call into Ray from a thread after it, makes Ray end the process."""
    import ray

    deadline = time.monotonic() + RAY_CALLERS_WAIT_S
    for thread in list(_RAY_CALLERS):
        thread.join(max(0.0, deadline - time.monotonic()))
        if thread.is_alive():
            log.warning("shutting Ray down while the thread %r still calls into it", thread.name)
    gc.collect()
    ray.shutdown()


def flow_payload(flow: Flow) -> dict[str, Any]:
    """What a worker needs to build the same flow: the spec, where relative paths are read
    from, a custom node registry, and functions registered from a notebook."""
    return {
        "spec": flow.to_dict(),
        "source": str(flow.source.resolve()) if flow.source else None,
        "registry": None if flow.registry is default_registry() else flow.registry,
        "functions": dict(flow.functions),
    }


def flow_from_payload(payload: Mapping[str, Any]) -> Flow:
    """The flow `flow_payload` describes, validated (on the worker)."""
    return Flow.from_dict(payload["spec"], source=payload["source"], registry=payload["registry"],
                          functions=payload["functions"]).validate()
