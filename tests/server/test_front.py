"""The front door (packager/server/front.py) answers resolve as the Starlette route behind it does:
the same statuses, bodies, headers (CORS included) and metrics, from `packager serve`'s protocol and over ASGI."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import CLOUD_URL, run_server, two_runtime_build

from packager.registry.publish import publish
from packager.registry.store import LocalStore
from packager.server.app import create_app

__all__ = ["two_runtime_build"]
PATH = "/v1/models/mlp/resolve"
LINUX = {"platform": "linux", "arch": "x86_64", "device_id": "d1", "runtimes": {"onnxruntime": "1.20", "c": "c99"}}
HEADERS = ("content-type", "cache-control", "vary", "access-control-allow-origin", "access-control-expose-headers")
REQUESTS: list[tuple[str, str, dict[str, Any]]] = [
    ("POST", PATH, {"json": LINUX}),
    ("POST", PATH, {"json": {"platform": "web"}, "headers": {"Origin": "https://page.example"}}),
    ("POST", PATH + "?channel=beta", {"json": LINUX}),
    ("POST", PATH + "?channel=..", {"json": LINUX}),
    ("POST", "/v1/models/bad..name/resolve", {"json": LINUX}),
    ("POST", "/v1/models/nope/resolve", {"json": LINUX}),
    ("POST", PATH, {"content": b"not json"}),
    ("POST", PATH, {"json": {"platform": "toaster"}}),
    ("POST", PATH, {"json": [1, 2]}),
    ("POST", PATH, {"content": b"{" + b" " * 70000 + b"}"}),  # declared over the 64 KiB limit
    ("POST", PATH, {"content": [b"{" + b" " * 40000, b" " * 40000 + b"}"]}),  # chunked (no length), over it
    ("GET", PATH, {}),  # 405: Starlette's answer in both
]


@pytest.fixture(scope="module")
def registry(two_runtime_build: Path, tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    store = LocalStore(tmp_path_factory.mktemp("front") / "registry")
    publish(two_runtime_build, store, cloud_url=CLOUD_URL)
    return store


@contextlib.contextmanager
def client(app: Any) -> Iterator[httpx.Client]:
    with run_server(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield http


def seen(response: httpx.Response) -> tuple[int, Any, dict[str, str]]:
    body = response.json() if response.headers.get("content-type") == "application/json" else response.text
    if isinstance(body, dict):
        body.pop("expires", None)  # the clock's second
    return response.status_code, body, {k: response.headers[k] for k in HEADERS if k in response.headers}


def send(http: httpx.Client, method: str, path: str, kwargs: dict[str, Any]) -> httpx.Response:
    if isinstance(kwargs.get("content"), list):  # a body of chunks: httpx streams it without a length
        kwargs = {**kwargs, "content": iter(kwargs["content"])}
    return http.request(method, path, **kwargs)


def resolve_counts(http: httpx.Client) -> list[str]:
    text = http.get("/metrics").text
    return sorted(re.findall(r'packager_http_request\w*_(?:total|count)\{.*route="/v1/models/\{m\}/resolve".*', text))


@pytest.mark.parametrize("wrap", [False, True], ids=["protocol", "asgi"])
def test_front_resolve_answers_as_the_starlette_route(registry: LocalStore, wrap: bool) -> None:
    front, starlette = create_app(registry), create_app(registry).app
    # wrapped in a plain ASGI function, the front door is served through its ASGI side
    served = (lambda scope, receive, send: front(scope, receive, send)) if wrap else front
    with client(served) as ours, client(starlette) as theirs:
        for method, path, kwargs in REQUESTS:
            assert seen(send(ours, method, path, kwargs)) == seen(send(theirs, method, path, kwargs)), (path, kwargs)
        counts = resolve_counts(ours)
        assert counts == resolve_counts(theirs) and any('status="413"' in line for line in counts)


@pytest.mark.parametrize("origins", [("*",), ("https://page.example", "https://other.example")])
def test_front_cors_headers_are_the_middlewares(registry: LocalStore, origins: tuple[str, ...]) -> None:
    with client(create_app(registry, cors_origins=origins)) as http:
        for origin in (None, "https://page.example", "https://elsewhere.example"):
            headers = {"Origin": origin} if origin else {}
            ours = http.post(PATH, json=LINUX, headers=headers).headers
            theirs = http.get("/healthz", headers=headers).headers  # CORSMiddleware's answer
            cors = [k for k in theirs if k.startswith("access-control-") or k == "vary"]
            assert cors and {k: ours.get(k) for k in cors} == {k: theirs[k] for k in cors}, origin
