"""The server tests' parts: the server as `packager serve` runs it, on 127.0.0.1 with a free port
in a thread, a real two-runtime build (onnx + static-lib), signed registries, tokens. Test modules import the
fixtures they use by name (pytest finds them in the module's namespace)."""

from __future__ import annotations

import contextlib
import hashlib
import socket
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from conftest import run_cli

sys.path.insert(0, str(Path(__file__).parent.parent / "registry"))

from registry_helpers import copy_build
from seaweed import ACCESS_KEY, SECRET_KEY, Seaweed, run_seaweed

from packager.registry.publish import init_keys, publish
from packager.registry.store import LocalStore
from packager.server import create_app
from packager.server.serving import config
from packager.server.tokens import add_token


@contextlib.contextmanager
def run_server(app: Any, **settings: Any) -> Iterator[str]:
    """Serve ``app`` as `packager serve` does (uvicorn with packager's protocol, uvloop) until the
    block ends; yields its base URL. The server runs in a thread of this process, on an event loop
    of its own; its lifespan's shutdown has run when the block ends. ``settings``: uvicorn Config
    attributes to change (``timeout_keep_alive=1``)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    conf = config(app, host="127.0.0.1", port=port)
    for name, value in settings.items():
        assert hasattr(conf, name), name
        setattr(conf, name, value)
    server = uvicorn.Server(conf)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def snapshot(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path -> sha256), to show that nothing changed."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


__all__ = ["ACCESS_KEY", "SECRET_KEY", "Seaweed", "copy_build", "run_seaweed"]
CLOUD_URL = "https://infer.example.com/v2/models/mlp"


@dataclass(frozen=True)
class Served:
    url: str
    registry: Path
    keys: Path
    root: bytes
    tokens: dict[str, str]  # "admin" ("*"), "mlp" (scoped to mlp), "other" (scoped to another model)
    client: httpx.Client


@pytest.fixture(scope="session")
def two_runtime_build(tmp_path_factory: pytest.TempPathFactory, mlp_onnx: Path, mlp_samples: Path) -> Path:
    """A real build with two runtimes: onnxruntime (fp32/fp16/int8...) and the static library (c)."""
    out = tmp_path_factory.mktemp("served") / "dist"
    result = run_cli("build", mlp_onnx, "-t", "onnx", "-t", "static-lib", "--samples", mlp_samples, "--out", out)
    assert result.code == 0, result.err
    return out / "mlp" / "1"


@pytest.fixture(scope="session")
def tokens_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    path = tmp_path_factory.mktemp("tokens") / "tokens.json"
    return path, {"admin": add_token(path, "*"), "mlp": add_token(path, "mlp"), "other": add_token(path, "digits")}


def make_registry(build: Path, folder: Path) -> tuple[Path, Path, bytes]:
    """A signed registry with version 1 stable and version 2 published as the candidate at 0%."""
    registry, keys = folder / "registry", folder / "keys"
    store = LocalStore(registry)
    root = init_keys(keys, store).read_bytes()
    publish(build, store, keys=keys, cloud_url=CLOUD_URL)
    publish(copy_build(build, folder / "dist", "2"), store, keys=keys, cloud_url=CLOUD_URL)
    return registry, keys, root


def serve(build: Path, folder: Path, tokens_file: tuple[Path, dict[str, str]], **settings: Any) -> Iterator[Served]:
    """A server over a new signed registry of ``build`` (``settings``: as ``run_server`` takes them)."""
    registry, keys, root = make_registry(build, folder)
    app = create_app(LocalStore(registry), tokens=tokens_file[0], keys=keys, pointer_seconds=0.5)
    with run_server(app, **settings) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield Served(url=url, registry=registry, keys=keys, root=root, tokens=tokens_file[1], client=client)


@pytest.fixture(scope="module")
def served(two_runtime_build: Path, tmp_path_factory: pytest.TempPathFactory,
           tokens_file: tuple[Path, dict[str, str]]) -> Iterator[Served]:  # fmt: skip
    """One server per test module, for tests that only read (or whose writes others may see)."""
    yield from serve(two_runtime_build, tmp_path_factory.mktemp("served"), tokens_file)


@pytest.fixture
def fresh(two_runtime_build: Path, tmp_path: Path, tokens_file: tuple[Path, dict[str, str]]) -> Iterator[Served]:
    """A server over a registry of its own, for tests that write."""
    yield from serve(two_runtime_build, tmp_path, tokens_file)
