"""The read API's adapters answer alike: `packager serve`'s protocol fast path, the ASGI adapter
(packager/server/front.py) and the blocking call the Lambda function makes (packager/server/api.py)
give the same statuses, bodies, headers (CORS included) and metrics."""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from server_helpers import CLOUD_URL, run_server, two_runtime_build

from packager.registry.publish import publish
from packager.registry.store import LocalStore
from packager.server.api import Call
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
    ("GET", PATH, {}),  # 405
]
READS: list[tuple[str, str, dict[str, Any]]] = [
    ("GET", "/healthz", {}),
    ("GET", "/v1/models/mlp/manifest", {}),
    ("GET", "/v1/models/mlp/manifest?channel=beta", {}),
    ("GET", "/v1/models/mlp/versions/1", {"headers": {"Origin": "https://page.example"}}),
    ("GET", "/v1/models/mlp/versions/9", {}),
    ("GET", "/v1/models/mlp/channels/stable", {}),
    ("GET", "/v1/tuf/root.json", {}),
    ("GET", "/v1/tuf/evil.json", {}),
    ("GET", "/v1/artifacts/" + "0" * 64, {}),
    ("GET", "/v1/artifacts/XYZ", {}),
    ("DELETE", "/v1/models/mlp/manifest", {}),
    ("POST", "/v1/telemetry", {"json": {"events": [{"event": "load", "model": "mlp"}]}}),
    ("POST", "/v1/telemetry", {"json": {"events": [{"event": "load", "model": "nope"}]}}),
    ("OPTIONS", PATH, {"headers": {"Origin": "https://a.example", "Access-Control-Request-Method": "POST"}}),
    ("OPTIONS", PATH, {"headers": {"Origin": "https://a.example", "Access-Control-Request-Method": "PUT"}}),
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


def test_front_resolve_answers_alike_from_the_protocol_and_over_asgi(registry: LocalStore) -> None:
    front, other = create_app(registry), create_app(registry)
    # wrapped in a plain ASGI function, the front door is served through its ASGI side
    with client(front) as fast, client(lambda scope, receive, send: other(scope, receive, send)) as asgi:
        for method, path, kwargs in REQUESTS:
            assert seen(send(fast, method, path, kwargs)) == seen(send(asgi, method, path, kwargs)), (path, kwargs)
        counts = resolve_counts(fast)
        assert counts == resolve_counts(asgi) and any('status="413"' in line for line in counts)


def test_front_asgi_answers_as_the_blocking_call_the_lambda_function_makes(registry: LocalStore) -> None:
    front = create_app(registry)
    with client(front) as http:
        for method, path, kwargs in [*REQUESTS[:-3], *READS]:
            if isinstance(kwargs.get("content"), list):
                continue
            ours = send(http, method, path, kwargs)
            target = path.partition("?")
            body = kwargs.get("content") or (json.dumps(kwargs["json"]).encode() if "json" in kwargs else b"")
            headers = {k.lower(): v for k, v in kwargs.get("headers", {}).items()}
            theirs = front.api.answer(Call(method, target[0], target[2], headers, body, client="127.0.0.1"))
            assert isinstance(theirs.body, bytes)
            assert ours.status_code == theirs.status, path
            assert ours.content == theirs.body or "expires" in ours.text, path
            for name, value in theirs.headers:
                assert ours.headers.get(name) == value, (path, name)


@pytest.mark.parametrize("origins", [("*",), ("https://page.example", "https://other.example")])
def test_front_cors_headers_are_the_same_on_every_route(registry: LocalStore, origins: tuple[str, ...]) -> None:
    with client(create_app(registry, cors_origins=origins)) as http:
        for origin in (None, "https://page.example", "https://elsewhere.example"):
            headers = {"Origin": origin} if origin else {}
            ours = http.post(PATH, json=LINUX, headers=headers).headers
            theirs = http.get("/openapi.json", headers=headers).headers  # a Starlette route's answer
            cors = [k for k in theirs if k.startswith("access-control-") or k == "vary"]
            assert cors and {k: ours.get(k) for k in cors} == {k: theirs[k] for k in cors}, origin
