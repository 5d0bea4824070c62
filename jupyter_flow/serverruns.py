"""The routes of the file view's runs: start one, read its events, cancel it, and the last
run of a flow file in the run history. The runs themselves are `jupyter_flow.viewruns`'
(a process each); this module only reads requests and writes replies."""

from __future__ import annotations

import asyncio
import math

import tornado.web

from jupyter_flow.atomic import read_bounded
from jupyter_flow.errors import FlowValidationError, StoreError
from jupyter_flow.protocol import CancelRequest, RunRequest
from jupyter_flow.replies import ErrorReply, LastRunReply
from jupyter_flow.serverbase import FlowHandler
from jupyter_flow.spec import parse_spec_text
from jupyter_flow.viewruns import MAX_WAIT_S, RunRefusedError, ViewRuns, last_run

__all__ = ["RUNS_SETTING", "CancelHandler", "LastRunHandler", "RunHandler", "RunStateHandler"]

#: where the server's `ViewRuns` is kept in the web app's settings
RUNS_SETTING = "jupyter_flow_runs"
#: how long a poll waits for news unless it asks for less
_DEFAULT_WAIT_S = 10.0


class _RunsHandler(FlowHandler):
    @property
    def runs(self) -> ViewRuns:
        runs = self.settings.get(RUNS_SETTING)
        assert isinstance(runs, ViewRuns), "the jupyter-flow server extension did not start its runs"
        return runs

    def no_run(self, exc: RunRefusedError, status: int) -> None:
        self.reply(ErrorReply(message=str(exc)), status=status)

    def number(self, name: str, default: float, low: float, high: float) -> float:
        text = self.get_query_argument(name, None)
        if text is None:
            return default
        try:
            value = float(text)
        except ValueError:
            raise tornado.web.HTTPError(400, f"'{name}' must be a number, not {text[:50]!r}") from None
        if not math.isfinite(value) or not low <= value <= high:
            raise tornado.web.HTTPError(400, f"'{name}' must be between {low:g} and {high:g}")
        return value


class RunHandler(_RunsHandler):
    """`POST run`: start a run of the saved flow file with the inputs given."""

    @tornado.web.authenticated
    async def post(self) -> None:
        request = self.read(RunRequest)
        path = self.flow_file(request.path)
        try:
            run = await self.runs.start(path, self.api_path(path), dict(request.inputs), cache=request.cache,
                                        timeout_s=request.timeout_s)
        except RunRefusedError as exc:
            return self.no_run(exc, 429)
        self.reply(run.reply(0), status=201)


class RunStateHandler(_RunsHandler):
    """`GET runstate?run=ID&after=N&wait=S`: the run's events from the N-th on, once there
    is one, the run ended, or S seconds passed (default 10, at most 20)."""

    @tornado.web.authenticated
    async def get(self) -> None:
        run_id = self.get_query_argument("run", "")
        after = int(self.number("after", 0, 0, 1e12))
        wait = self.number("wait", _DEFAULT_WAIT_S, 0, MAX_WAIT_S)
        try:
            run = self.runs.get(run_id)
        except RunRefusedError as exc:
            return self.no_run(exc, 404)
        self.reply(await run.wait(after, wait))


class CancelHandler(_RunsHandler):
    """`POST cancel`: stop a run; it ends `cancelled` (its events say when)."""

    @tornado.web.authenticated
    async def post(self) -> None:
        request = self.read(CancelRequest)
        try:
            run = await self.runs.cancel(request.run)
        except RunRefusedError as exc:
            return self.no_run(exc, 404)
        self.reply(run.reply(len(run.events)))


class LastRunHandler(_RunsHandler):
    """`GET lastrun?path=P`: the newest run of the flow file in the run history (its
    default file), or null: no history, no run of it, or a file that is not a flow; and
    the run of it going on in this server, if any."""

    @tornado.web.authenticated
    async def get(self) -> None:
        path = self.flow_file(self.get_query_argument("path", ""))
        source = self.api_path(path)
        going = self.runs.active(source)
        active = going.id if going is not None else None
        try:
            data = await asyncio.to_thread(read_bounded, path)
            spec = await asyncio.to_thread(parse_spec_text, data.decode("utf-8"), source=source,
                                           as_json=path.suffix.lower() == ".json")
        except (OSError, UnicodeDecodeError, FlowValidationError):  # too large a file is a FlowFileError, one of them
            return self.reply(LastRunReply(path=source, run=None, active=active))
        try:
            run = await asyncio.to_thread(last_run, path, spec.name)
        except StoreError as exc:
            self.log.warning("jupyter-flow: the run history cannot be read: %s", exc)
            return self.reply(LastRunReply(path=source, run=None, active=active))
        self.reply(LastRunReply(path=source, run=run, active=active))
