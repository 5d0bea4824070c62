"""OpenTelemetry traces of runs: a span per run, a span per node, `traceparent` on calls.

Off, and OpenTelemetry not even imported, unless the standard environment turns it on:
``OTEL_EXPORTER_OTLP_ENDPOINT`` (or ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``) set, or
``OTEL_TRACES_EXPORTER`` set to ``otlp`` or ``console`` (``none`` keeps it off whatever
else is set). The OTLP exporter (HTTP, protobuf) reads the other standard variables
itself: headers, timeout, ``OTEL_SERVICE_NAME``, ``OTEL_RESOURCE_ATTRIBUTES``. It needs
the ``otel`` extra; without it a warning says so once and runs go on untraced.

A collector that does not answer costs a run nothing and a process at most
`EXIT_FLUSH_S` at its end: spans are sent in the background, each export gives up after
`DEFAULT_EXPORT_TIMEOUT_S` unless ``OTEL_EXPORTER_OTLP_TRACES_TIMEOUT`` or
``OTEL_EXPORTER_OTLP_TIMEOUT`` says otherwise (the SDK's own default, 10 s with retries,
held every `jupyter-flow run` for 15 s), and what is still unsent when the process ends is
flushed for at most `EXIT_FLUSH_S`.

What a trace holds:

- ``flow NAME``: the run, with its run id, flow name, status and error;
- ``node ID``: one per node that ran, a child of the run's span, with the node's kind,
  status, attempts, variant, batch size and error (the span's status is ERROR then);
- ``http`` and ``inference`` nodes send the W3C ``traceparent`` of their node's span, so
  the model service they call joins the trace;
- a served flow continues the trace of the ``traceparent`` it was called with, and
  answers with the run id in the ``x-run-id`` header.

When a program already set an SDK tracer provider (its own exporter, sampling), runs are
traced through it; otherwise one is made here and set as the global one.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
from collections.abc import Coroutine, Iterator, Mapping, MutableMapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any, TypeVar

from jupyter_flow import environ
from jupyter_flow.version import __version__

if TYPE_CHECKING:
    from jupyter_flow.trace import NodeRecord, RunResult

__all__ = ["continue_trace", "enabled", "end_run", "inject", "start_run", "trace_node"]

log = logging.getLogger("jupyter_flow.telemetry")
T = TypeVar("T")

_ATTR = "jupyter_flow."
#: how long one export to a collector may take when the environment does not say
DEFAULT_EXPORT_TIMEOUT_S = 2.0
#: how long a process waits at its end for spans still unsent
EXIT_FLUSH_S = 2.0
_TIMEOUT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_TIMEOUT", "OTEL_EXPORTER_OTLP_TIMEOUT")


#: the variables that can turn tracing on
_TRACING_VARS = ("OTEL_TRACES_EXPORTER", "OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")


def enabled() -> bool:
    """Whether the environment asks for traces (read on every run: tests and notebooks set
    it after import)."""
    if not environ.any_set(_TRACING_VARS):
        return False
    exporter = (environ.get("OTEL_TRACES_EXPORTER") or "").strip().lower()
    if exporter == "none" or (environ.get("OTEL_SDK_DISABLED") or "").strip().lower() == "true":
        return False
    return bool(exporter or environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))


@lru_cache(maxsize=1)
def _tracer() -> Any:
    """The tracer runs use (None when the `otel` extra is missing), set up on first use."""
    try:
        from opentelemetry import trace
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
    except ImportError:
        from jupyter_flow.errors import MissingDependencyError

        log.warning("%s; runs are not traced", MissingDependencyError("opentelemetry-sdk", "otel", "tracing runs (OTEL_* is set)"))
        return None

    provider = trace.get_tracer_provider()
    if not isinstance(provider, TracerProvider):
        names = [n.strip().lower() for n in os.environ.get("OTEL_TRACES_EXPORTER", "otlp").split(",") if n.strip()]
        exporters: list[SpanExporter] = []
        for name in names or ["otlp"]:
            if name == "console":
                exporters.append(ConsoleSpanExporter())
            elif name == "otlp":
                try:
                    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
                except ImportError:
                    log.warning("OTEL_TRACES_EXPORTER=otlp needs opentelemetry-exporter-otlp-proto-http: pip install 'jupyter-flow[otel]'")
                    continue
                given = any(os.environ.get(name) for name in _TIMEOUT_VARS)
                exporters.append(OTLPSpanExporter() if given else OTLPSpanExporter(timeout=DEFAULT_EXPORT_TIMEOUT_S))
            else:
                log.warning("OTEL_TRACES_EXPORTER=%s is not one jupyter-flow knows (otlp, console, none); ignored", name)
        resource = Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME") or "jupyter-flow"})
        # flushed at exit for at most EXIT_FLUSH_S, not shut down: a shutdown waits for an
        # export in progress, however long the collector takes (the exporter's thread is a daemon)
        provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        for exporter in exporters:
            provider.add_span_processor(BatchSpanProcessor(exporter, export_timeout_millis=DEFAULT_EXPORT_TIMEOUT_S * 1000))
        trace.set_tracer_provider(provider)
        atexit.register(provider.force_flush, int(EXIT_FLUSH_S * 1000))
        provider = trace.get_tracer_provider()  # the one in place, if another was set meanwhile
    return provider.get_tracer("jupyter_flow", __version__)


def _active_tracer() -> Any:
    return _tracer() if enabled() else None


def start_run(flow: str, result: RunResult) -> Any:
    """The span of a run (a child of the current context: a served flow's caller), or None
    when tracing is off. End it with `end_run`."""
    tracer = _active_tracer()
    if tracer is None:
        return None
    return tracer.start_span(f"flow {flow}", attributes={_ATTR + "flow": flow, _ATTR + "run_id": result.run_id})


def end_run(span: Any, result: RunResult) -> None:
    if span is None:
        return
    from opentelemetry.trace import Status, StatusCode

    span.set_attribute(_ATTR + "run.status", result.status)
    if result.status != "ok":
        span.set_status(Status(StatusCode.ERROR, result.error or result.status))
    span.end()


def trace_node(run_span: Any, record: NodeRecord, work: Coroutine[Any, Any, T]) -> Coroutine[Any, Any, T]:
    """`work` (the coroutine that runs one node) inside a span of its own, a child of the
    run's; `work` itself when tracing is off."""
    if run_span is None:
        return work
    return _traced_node(run_span, record, work)


async def _traced_node(run_span: Any, record: NodeRecord, work: Coroutine[Any, Any, T]) -> T:
    from opentelemetry import trace
    from opentelemetry.trace import Status, StatusCode

    tracer = _tracer()
    parent = trace.set_span_in_context(run_span)
    attributes = {_ATTR + "node.id": record.node, _ATTR + "node.kind": record.type}
    with tracer.start_as_current_span(f"node {record.node}", context=parent, attributes=attributes,
                                      record_exception=False, set_status_on_exception=False) as span:
        try:
            return await work
        finally:
            span.set_attribute(_ATTR + "node.status", record.status)
            span.set_attribute(_ATTR + "node.attempts", record.attempts)
            if record.cached:
                span.set_attribute(_ATTR + "node.cached", True)
            if record.variant is not None:
                span.set_attribute(_ATTR + "node.variant", record.variant)
            size = record.extra.get("batch_size")
            if isinstance(size, int):
                span.set_attribute(_ATTR + "node.batch_size", size)
            if record.error is not None:
                span.set_attribute("error.type", record.error.type)
                span.set_attribute(_ATTR + "node.error", record.error.message)
                if record.status == "error":
                    span.set_status(Status(StatusCode.ERROR, record.error.message))


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the `traceparent` (and `tracestate`) of the current span to outgoing headers;
    nothing when tracing is off or the caller set its own `traceparent`."""
    if not enabled() or any(k.lower() == "traceparent" for k in headers):
        return
    if _tracer() is None:
        return
    from opentelemetry.propagate import inject as otel_inject

    otel_inject(headers)


@contextlib.contextmanager
def continue_trace(headers: Mapping[str, str]) -> Iterator[None]:
    """Within the block, runs are children of the trace named by the incoming request's
    `traceparent` (a served flow continuing its caller's trace)."""
    if not enabled() or _tracer() is None or not any(k.lower() == "traceparent" for k in headers):
        yield
        return
    from opentelemetry import context
    from opentelemetry.propagate import extract

    token = context.attach(extract(headers))
    try:
        yield
    finally:
        context.detach(token)
