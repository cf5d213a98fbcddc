"""The server over S3Store on a real S3 server (SeaweedFS), and `packager serve` as a user runs it."""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from server_helpers import ACCESS_KEY, CLOUD_URL, SECRET_KEY, Seaweed, run_seaweed, run_server, two_runtime_build

from packager.registry.publish import publish
from packager.registry.s3 import S3Store
from packager.registry.store import LocalStore
from packager.server import create_app

__all__ = ["two_runtime_build"]


@pytest.fixture(scope="module")
def seaweed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Seaweed]:
    with run_seaweed(tmp_path_factory.mktemp("seaweed")) as server:
        yield server


def test_server_over_s3_resolves_and_serves_an_artifact(seaweed: Seaweed, two_runtime_build: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
    store = S3Store.from_url(f"s3://{seaweed.bucket}/served", endpoint_url=seaweed.endpoint)
    publish(two_runtime_build, store, cloud_url=CLOUD_URL)
    with run_server(create_app(store)) as url, httpx.Client(base_url=url) as client:
        result = client.post("/v1/models/mlp/resolve", json={"platform": "linux", "arch": "x86_64",
                                                             "runtimes": {"c": "c99"}}).json()  # fmt: skip
        variant = result["variant"]
        assert variant["runtime"]["name"] == "c" and result["version"] == "1"
        whole = client.get(variant["url"])
        assert whole.status_code == 200 and hashlib.sha256(whole.content).hexdigest() == variant["sha256"]
        tail = client.get(variant["url"], headers={"Range": "bytes=-64"})
        assert tail.status_code == 206 and tail.content == whole.content[-64:]
        assert client.get("/healthz").json()["store"] == "s3"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_cli_serve_prints_where_it_listens_and_serves(two_runtime_build: Path, tmp_path: Path) -> None:
    registry = tmp_path / "registry"
    publish(two_runtime_build, LocalStore(registry))
    port = _free_port()
    command = [sys.executable, "-m", "packager", "serve", "--registry", str(registry), "--port", str(port)]
    proc = subprocess.Popen(command, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONHASHSEED": "0"})  # fmt: skip
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        assert f"packager serve: http://127.0.0.1:{port} serving {registry} (unsigned; read-only" in line
        deadline = time.monotonic() + 30
        while True:
            try:
                response = httpx.post(f"http://127.0.0.1:{port}/v1/models/mlp/resolve", json={"platform": "linux"})
                break
            except httpx.ConnectError:
                assert time.monotonic() < deadline and proc.poll() is None, "packager serve did not come up"
                time.sleep(0.1)
        assert response.status_code == 200 and response.json()["model"] == "mlp"
    finally:
        proc.terminate()
        proc.wait(15)
