"""The fleet's read routes, transport-free like the read API (``packager.server.api``): a ``Call``
in, an ``Answer`` out, blocking (DuckDB reads the segments).

    GET /v1/models/{m}/fleet?window=1h              the telemetry read back (``packager.fleet``)
    GET /v1/models/{m}/dashboard?window=6h&step=5m  the same over time: what the page draws
    GET /dashboard/{m}                              the page (its numbers come from the route above)

The first two are behind the model's token: the numbers say how a release does, which is the
owner's to read. ``packager serve`` answers them through Starlette routes that check the token
off the event loop first and run this in a worker thread; the fleet function on AWS
(``handlers/fleet.py``) answers API Gateway's events with it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from packager.errors import PackagerError, ServiceError
from packager.registry.channels import read_pointer
from packager.registry.docs import Pointer
from packager.registry.names import check_name
from packager.registry.store import Store
from packager.server.api import Answer, Call, error_answer, json_answer
from packager.server.tokens import Tokens

NO_STORE = ("cache-control", "no-store")
_ROUTES = (
    (re.compile(r"/v1/models/([^/]+)/fleet"), "fleet"),
    (re.compile(r"/v1/models/([^/]+)/dashboard"), "data"),
    (re.compile(r"/dashboard/([^/]+)"), "page"),
)
# the dashboard's charts: file -> its sha384 (Subresource Integrity) at the version package.json pins
UPLOT_VERSION = "1.6.32"
UPLOT = {"uPlot.iife.min.js": "sha384-Gx3t0zdBAuQOuvvmaLZj7HKEiSgWTAs+VdtNY7wt19QDPTDQjFIwAuXDj0zeN00c",
         "uPlot.min.css": "sha384-IfV0B7MIOYuO95kO9G5ySKPz/85zqFNOAs8iy4tkK5zd9izhJAB8b7lHrwYqqmYE"}  # fmt: skip
# the page runs its own inline script and uPlot, and talks to its own origin only
PAGE_POLICY = ("default-src 'none'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
               "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; connect-src 'self'; img-src 'self' data:; "
               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'")  # fmt: skip


class FleetApi:
    """The fleet routes over ``store``. ``tokens``: who may read a model's numbers. ``flush``:
    called before a read (a server writes the events it holds in memory, so they count).
    ``chart_tags``: the page's uPlot stylesheet and script tags (``packager.server.browser``)."""

    def __init__(self, store: Store, tokens: Tokens, *, tick_minutes: float,
                 chart_tags: Callable[[], tuple[str, str]] | None = None, flush: Callable[[], None] | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:  # fmt: skip
        self.store = store
        self.tokens = tokens
        self.tick_minutes = tick_minutes
        self.chart_tags = chart_tags or cdn_chart_tags
        self.flush = flush
        self.clock = clock or (lambda: datetime.now(UTC))

    @staticmethod
    def route(method: str, path: str) -> tuple[str, str] | None:
        """(route name, model as given) of a fleet path; None for any other path."""
        for pattern, name in _ROUTES:
            found = pattern.fullmatch(path)
            if found is not None:
                return name, found.group(1)
        return None

    def answer(self, call: Call) -> Answer:
        """The answer to ``call`` (a fleet path): errors as the read API's JSON error shape."""
        try:
            found = self.route(call.method, call.path)
            if found is None:
                raise ServiceError(404, "not_found", f"no route {call.method} {call.path[:200]}")
            if call.method not in ("GET", "HEAD"):
                raise ServiceError(405, "method_not_allowed", f"{call.method} is not allowed here (allowed: GET)",
                                   headers={"Allow": "GET"})  # fmt: skip
            name, model = found
            model = _model(model)
            if name == "page":
                answer = self._page(model)
            else:
                self.tokens.check(call.headers.get("authorization"), model)
                query = _query(call.query)
                answer = self._fleet(model, query) if name == "fleet" else self._data(model, query)
        except Exception as exc:
            return error_answer(exc, call.method, call.path)
        if call.method == "HEAD":
            assert isinstance(answer.body, bytes)
            return Answer(answer.status, (*answer.headers, ("content-length", str(len(answer.body)))))
        return answer

    def _fleet(self, model: str, query: dict[str, str]) -> Answer:
        from packager.fleet.dashboard import status_document

        window = _window(query.get("window", "1h"))
        pointer = self._read(model, required=False)
        doc = status_document(self.store, pointer, window, self.clock(), tick_minutes=self.tick_minutes)
        return json_answer(doc, cache=NO_STORE)

    def _data(self, model: str, query: dict[str, str]) -> Answer:
        from packager.fleet.dashboard import document, step_for

        window = _window(query.get("window", "6h"))
        step = _window(query["step"]) if query.get("step") else None
        try:
            step_for(window, step)
        except PackagerError as exc:
            raise ServiceError(400, "bad_request", exc.one_line()) from exc
        pointer = self._read(model, required=True)
        doc = document(self.store, pointer, window, self.clock(), step=step, tick_minutes=self.tick_minutes)
        return json_answer(doc, cache=NO_STORE)

    def _page(self, model: str) -> Answer:
        from packager.resources import fill, template_path

        self._read(model, required=True)  # 404: nothing published
        css, script = self.chart_tags()
        page = fill(template_path("browser", "dashboard.html").read_text(),
                    {"model": model, "chart_css": css, "chart_script": script})  # fmt: skip
        return Answer(200, (("content-type", "text/html; charset=utf-8"), ("cache-control", "no-cache"),
                            ("content-security-policy", PAGE_POLICY), ("referrer-policy", "no-referrer"),
                            ("x-content-type-options", "nosniff")), page.encode())  # fmt: skip

    def _read(self, model: str, *, required: bool) -> Pointer:
        if self.flush is not None:
            self.flush()
        pointer = read_pointer(self.store, model, "stable")
        if required and not pointer.stable:
            raise ServiceError(404, "not_found", f"model {model} has nothing published on its stable channel")
        return pointer


def cdn_chart_tags() -> tuple[str, str]:
    """uPlot's stylesheet and script tags from jsDelivr, pinned by their integrity hashes (a changed
    file is refused by the browser): for a server without node_modules, and the function on AWS."""
    cdn = f"https://cdn.jsdelivr.net/npm/uplot@{UPLOT_VERSION}/dist"
    css, script = "uPlot.min.css", "uPlot.iife.min.js"
    return (f'<link rel="stylesheet" href="{cdn}/{css}" integrity="{UPLOT[css]}" crossorigin="anonymous">',
            f'<script src="{cdn}/{script}" integrity="{UPLOT[script]}" crossorigin="anonymous"></script>')  # fmt: skip


def _model(text: str) -> str:
    try:
        return check_name("model", text)
    except PackagerError as exc:
        raise ServiceError(400, "invalid_name", exc.message) from exc


def _query(text: str) -> dict[str, str]:
    from urllib.parse import parse_qsl

    return dict(parse_qsl(text, keep_blank_values=True)[:32])


def _window(text: str) -> timedelta:
    from packager.fleet.aggregate import parse_window

    try:
        return parse_window(text)
    except PackagerError as exc:
        raise ServiceError(400, "bad_request", exc.one_line()) from exc
