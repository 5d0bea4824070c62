"""Every error jupyter-flow raises on purpose.

The hierarchy::

    FlowError
    ├── FlowValidationError      the flow file or spec is wrong (CLI exit code 2)
    │   └── FlowFileError        the file cannot be read or parsed (names line and column)
    ├── TemplateError            a {{ }} template or `when` condition cannot be evaluated
    ├── NodeError                a node failed while running (names the node)
    │   ├── NodeTimeoutError     a node attempt ran past its `timeout_s`
    │   ├── WorkersBusyError     every worker thread is still busy with work given up on
    │   └── RemoteError          an HTTP endpoint refused, stalled, failed or answered garbage
    ├── StoreError               a node cache or run history file cannot be used (CLI exit code 2)
    ├── FlowRunError             the flow ran and failed (CLI exit code 1); carries the RunResult
    │   └── FlowTimeoutError     the flow's `timeout_s` deadline cancelled what was running
    └── MissingDependencyError   an optional extra is not installed (says which one)

Third-party exceptions are translated where they enter (`raise NodeError(...) from exc`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jupyter_flow.trace import RunResult

__all__ = [
    "FlowError",
    "FlowFileError",
    "FlowRunError",
    "FlowTimeoutError",
    "FlowValidationError",
    "MissingDependencyError",
    "NodeError",
    "NodeTimeoutError",
    "Problem",
    "RemoteError",
    "StoreError",
    "TemplateError",
    "WorkersBusyError",
]


class FlowError(Exception):
    """Base class of every error jupyter-flow raises on purpose."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a flow, and where: `node` (an id), `edge` (an index into the
    flow's `edges`) and `field` (a config path such as ``config.text``, or for an edge one
    of ``from``, ``to``, ``when``, ``branch``, ``on``). Layers pass these fields on as they
    are; nothing parses the text back."""

    message: str
    node: str | None = None
    field: str | None = None
    edge: int | None = None

    def __str__(self) -> str:
        where = []
        if self.node is not None:
            where.append(f"node '{self.node}'")
        if self.edge is not None:
            where.append(f"edges[{self.edge}]")
        if self.field:
            where.append(f"field '{self.field}'")
        return f"{', '.join(where)}: {self.message}" if where else self.message

    def to_dict(self) -> dict[str, Any]:
        return {"node": self.node, "edge": self.edge, "field": self.field, "message": self.message}


class FlowValidationError(FlowError):
    """The flow is invalid; `problems` lists every problem found, each naming node and field."""

    def __init__(self, problems: list[Problem] | str, *, source: str | None = None) -> None:
        if isinstance(problems, str):
            problems = [Problem(problems)]
        self.problems = list(problems)
        self.source = source
        head = f"{source}: " if source else ""
        if len(self.problems) == 1:
            text = f"{head}invalid flow: {self.problems[0]}"
        else:
            lines = "\n".join(f"  - {p}" for p in self.problems)
            text = f"{head}invalid flow ({len(self.problems)} problems):\n{lines}"
        super().__init__(text)


class FlowFileError(FlowValidationError):
    """The flow file cannot be read or parsed; names the file, line and column."""

    def __init__(self, message: str, *, source: str, line: int | None = None, column: int | None = None) -> None:
        self.line = line
        self.column = column
        where = f"line {line}, column {column}: " if line is not None else ""
        super().__init__([Problem(f"{where}{message}")], source=source)


class TemplateError(FlowError):
    """A template or condition failed to compile or evaluate."""

    def __init__(self, message: str, *, node: str | None = None, field: str | None = None) -> None:
        self.node = node
        self.field = field
        self.problem = Problem(message, node=node, field=field)
        super().__init__(str(self.problem))


class NodeError(FlowError):
    """A node failed. `retryable` tells the engine whether another attempt may help."""

    retryable: bool = True

    def __init__(self, message: str, *, node: str | None = None, retryable: bool | None = None) -> None:
        self.node = node
        self.message = message
        if retryable is not None:
            self.retryable = retryable
        super().__init__(f"node '{node}': {message}" if node else message)

    @classmethod
    def from_exception(cls, node: str, exc: BaseException) -> NodeError:
        if isinstance(exc, NodeError):
            if exc.node is None:
                err = type(exc).__new__(type(exc))
                err.__dict__.update(exc.__dict__)
                NodeError.__init__(err, exc.message, node=node, retryable=exc.retryable)
                return err
            return exc
        return cls(f"{type(exc).__name__}: {exc}", node=node)


class NodeTimeoutError(NodeError):
    """A node attempt ran past its `timeout_s`."""


class StoreError(FlowError):
    """A node cache or run history file (or a run asked of it) cannot be used: the file
    named on the command line is wrong, so the CLI exits with 2."""


class WorkersBusyError(NodeError):
    """Every thread of the engine's pool is still busy with work whose node gave up on it
    (a timeout): new blocking work would only wait in the queue and time out in turn."""

    retryable = False


class RemoteError(NodeError):
    """An HTTP endpoint refused the connection, stalled, answered an error or not JSON."""

    def __init__(
        self,
        message: str,
        *,
        node: str | None = None,
        retryable: bool | None = None,
        status_code: int | None = None,
    ) -> None:
        self.status_code = status_code
        super().__init__(message, node=node, retryable=retryable)


class FlowRunError(FlowError):
    """The flow ran and failed. `result` holds everything that did finish."""

    def __init__(self, message: str, result: RunResult | None = None) -> None:
        self.result = result
        super().__init__(message)


class FlowTimeoutError(FlowRunError):
    """The flow-level `timeout_s` deadline passed; running nodes were cancelled."""


class MissingDependencyError(FlowError, ImportError):
    """An optional dependency is missing; the message names the extra to install."""

    def __init__(self, package: str, extra: str, feature: str) -> None:
        super().__init__(
            f"{feature} needs the '{package}' package: pip install 'jupyter-flow[{extra}]'"
        )
