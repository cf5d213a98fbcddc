"""The device client tests' parts: a real `packager serve` app (on 127.0.0.1, as it serves) over a
signed registry of a real onnx + static-lib build, a byte-counting HTTP proxy in front of it that
can cut a response mid-way, and a test double of the cloud endpoint (an Open Inference Protocol
v2 app that runs the build's source model in onnxruntime, standing in for the Lambda/Triton
endpoint that a device would call)."""

from __future__ import annotations

import contextlib
import json
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnxruntime as ort
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

sys.path.insert(0, str(Path(__file__).parent.parent / "server"))

from server_helpers import copy_build, run_server

from packager.registry.publish import init_keys, publish
from packager.registry.store import LocalStore
from packager.server import create_app

C_ONLY = {"platform": "linux", "arch": "x86_64", "runtimes": {"c": "c99"}}
BOTH = {"platform": "linux", "arch": "x86_64", "runtimes": {"onnxruntime": ort.__version__, "c": "c99"}}


@dataclass
class Cloud:
    """The OIP test double's URL and the requests it answered."""

    url: str
    calls: list[str] = field(default_factory=list)


def cloud_app(model: Path, name: str, calls: list[str]) -> Starlette:
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])

    def tensors(items: Any) -> list[dict[str, Any]]:
        return [{"name": t.name, "datatype": "FP32", "shape": [-1 if isinstance(d, str) else d for d in t.shape]}
                for t in items]  # fmt: skip

    async def metadata(request: Request) -> JSONResponse:
        calls.append("metadata")
        return JSONResponse({"name": name, "versions": ["1"], "inputs": tensors(session.get_inputs()),
                             "outputs": tensors(session.get_outputs())})  # fmt: skip

    async def infer(request: Request) -> JSONResponse:
        calls.append("infer")
        body = await request.json()
        feeds = {t["name"]: np.asarray(t["data"], np.float32).reshape(t["shape"]) for t in body["inputs"]}
        names = [o.name for o in session.get_outputs()]
        values = session.run(names, feeds)
        return JSONResponse({"model_name": name, "outputs": [
            {"name": n, "datatype": "FP32", "shape": list(v.shape), "data": v.ravel().tolist()}
            for n, v in zip(names, values, strict=True)]})  # fmt: skip

    return Starlette(routes=[Route(f"/v2/models/{name}", metadata, methods=["GET"]),
                             Route(f"/v2/models/{name}/infer", infer, methods=["POST"])])  # fmt: skip


@dataclass(frozen=True)
class Registry:
    path: Path
    keys: Path
    root: Path
    telemetry: Path

    def app(self) -> Starlette:
        return create_app(LocalStore(self.path), keys=self.keys, telemetry=self.telemetry, pointer_seconds=0.0)

    def events(self) -> list[dict[str, Any]]:
        if not self.telemetry.exists():
            return []
        return [json.loads(line) for line in self.telemetry.read_text().splitlines()]


def make_registry(build: Path, folder: Path, cloud_url: str) -> Registry:
    """A signed registry holding ``build`` as the stable version, with ``cloud_url`` as its endpoint."""
    store = LocalStore(folder / "registry")
    root = init_keys(folder / "keys", store)
    publish(build, store, keys=folder / "keys", cloud_url=f"{cloud_url}/v2/models/mlp")
    return Registry(path=folder / "registry", keys=folder / "keys", root=root, telemetry=folder / "telemetry.jsonl")


def broken_build(build: Path, into: Path, broken: Callable[[str], bool]) -> Path:
    """A copy of ``build`` (same version) whose variants ``broken(id)`` get a main file of junk
    bytes that build.json lists with their true sha256: they download and verify, then fail to load."""

    def edit(record: dict[str, Any], folder: Path) -> None:
        import hashlib

        for variant in record["variants"]:
            if not broken(variant["id"]):
                continue
            junk = f"not a model: {variant['id']}".encode() * 50
            (folder / variant["main_file"]).write_bytes(junk)
            for entry in variant["files"]:
                if entry["path"] == variant["main_file"]:
                    entry["sha256"], entry["bytes"] = hashlib.sha256(junk).hexdigest(), len(junk)
            variant["bytes"] = sum(f["bytes"] for f in variant["files"])

    return copy_build(build, into, build.name, edit)


@dataclass
class Proxy:
    """An HTTP proxy that forwards to ``upstream``, counts the body bytes it sends per path and
    the Range headers it was asked for, and cuts the connection of a path after N body bytes
    (once per ``cut``) or ignores Range (``whole``: the upstream then answers 200)."""

    upstream: str
    url: str = ""
    sent: dict[str, int] = field(default_factory=dict)
    ranges: dict[str, list[str | None]] = field(default_factory=dict)
    cut: dict[str, int] = field(default_factory=dict)
    whole: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Any

    def do_GET(self) -> None:
        self._forward()

    def do_POST(self) -> None:
        self._forward()

    def _forward(self) -> None:
        proxy: Proxy = self.server.proxy
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        keep = ("content-type", "cache-control") + (() if proxy.whole else ("range",))
        headers = {k: v for k, v in self.headers.items() if k.lower() in keep}
        upstream = httpx.request(self.command, proxy.upstream + self.path, headers=headers, content=body)
        with proxy.lock:
            cut = proxy.cut.pop(self.path, None)
            proxy.ranges.setdefault(self.path, []).append(headers.get("Range"))
        payload = upstream.content if cut is None else upstream.content[:cut]
        self.send_response(upstream.status_code)
        for key in ("content-type", "content-range", "etag", "accept-ranges"):
            if key in upstream.headers:
                self.send_header(key, upstream.headers[key])
        self.send_header("Content-Length", str(len(upstream.content)))
        self.end_headers()
        self.wfile.write(payload)
        self.wfile.flush()
        with proxy.lock:
            proxy.sent[self.path] = proxy.sent.get(self.path, 0) + len(payload)
        if cut is not None:
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@contextlib.contextmanager
def run_proxy(upstream: str) -> Iterator[Proxy]:
    proxy = Proxy(upstream=upstream)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    server.proxy = proxy  # type: ignore[attr-defined]
    proxy.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield proxy
    finally:
        server.shutdown()
        server.server_close()


def closed_port_url() -> str:
    """The URL of a port on 127.0.0.1 that was just free: nothing listens there."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def reference(build: Path) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """The build's validation samples and the source model's outputs on them."""
    with np.load(build / "validation" / "samples.npz") as x, np.load(build / "validation" / "reference.npz") as y:
        return {k: x[k] for k in x.files}, {k: y[k] for k in y.files}


__all__ = ["run_server"]
