"""`packager serve`'s HTTP protocol (packager/server/protocol.py) over raw sockets: resolve is
answered in the parser's callbacks, in order with the requests pipelined around it, and every
case it does not hold (chunked bodies, a stale pointer) still gets the ASGI side's answer."""

from __future__ import annotations

import contextlib
import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from server_helpers import CLOUD_URL, run_server, two_runtime_build

from packager.registry.publish import publish
from packager.registry.store import LocalStore
from packager.server.app import create_app
from packager.server.front import Front
from packager.server.serving import config

__all__ = ["two_runtime_build"]
PATH = "/v1/models/mlp/resolve"
PROFILE = json.dumps({"platform": "linux", "arch": "x86_64", "device_id": "d1",
                      "runtimes": {"onnxruntime": "1.20", "c": "c99"}}).encode()  # fmt: skip


@pytest.fixture(scope="module")
def registry(two_runtime_build: Path, tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    store = LocalStore(tmp_path_factory.mktemp("protocol") / "registry")
    publish(two_runtime_build, store, cloud_url=CLOUD_URL)
    return store


def post(body: bytes = PROFILE, path: str = PATH, extra: str = "") -> bytes:
    head = f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return (head + extra + "\r\n").encode() + body


def get(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n\r\n".encode()


class Reader:
    """Responses read off one socket in order (each with a Content-Length, as this server sends)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock, self.buffer = sock, b""

    def _fill(self) -> None:
        data = self.sock.recv(65536)
        if not data:
            raise EOFError("the server closed the connection")
        self.buffer += data

    def head(self) -> tuple[int, dict[str, str]]:
        while b"\r\n\r\n" not in self.buffer:
            self._fill()
        head, self.buffer = self.buffer.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        return int(lines[0].split()[1]), headers

    def response(self) -> tuple[int, dict[str, str], bytes]:
        status, headers = self.head()
        size = int(headers["content-length"])
        while len(self.buffer) < size:
            self._fill()
        body, self.buffer = self.buffer[:size], self.buffer[size:]
        return status, headers, body

    def closed(self) -> bool:
        """True when the server closes the connection with nothing more sent."""
        self.sock.settimeout(5)
        return not self.buffer and self.sock.recv(1) == b""


@contextlib.contextmanager
def connect(url: str) -> Iterator[tuple[socket.socket, Reader]]:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=30) as sock:
        yield sock, Reader(sock)


def counted(front: Front) -> list[bool]:
    """Every ``answer_now`` call from then on, as whether it answered (False: went to ASGI)."""
    calls: list[bool] = []
    answer_now = front.answer_now

    def recording(*args: Any) -> Any:
        answer = answer_now(*args)
        calls.append(answer is not None)
        return answer

    front.answer_now = recording  # type: ignore[method-assign]
    return calls


def resolution(body: bytes) -> dict[str, Any]:
    doc = json.loads(body)
    doc.pop("expires")
    return doc


def test_pipelined_requests_are_answered_in_order(registry: LocalStore) -> None:
    front = create_app(registry)
    calls = counted(front)
    with run_server(front) as url, connect(url) as (sock, reader):
        sock.sendall(post())  # reads the channel's pointer, on the ASGI side
        status, _, first = reader.response()
        other = post(PROFILE.replace(b'"d1"', b'"d2"'))
        sock.sendall(post() + other + post(b"not json") + get("/healthz") + post() + get("/openapi.json"))
        answers = [reader.response() for _ in range(6)]
    assert status == 200 and [status for status, _, _ in answers] == [200, 200, 400, 200, 200, 200]
    assert resolution(first) == resolution(answers[0][2]) == resolution(answers[4][2])
    assert resolution(answers[1][2])["model"] == "mlp"
    assert json.loads(answers[2][2])["error"]["code"] == "invalid_json"
    assert json.loads(answers[3][2])["status"] == "ok" and "paths" in json.loads(answers[5][2])
    assert all(headers["content-type"] == "application/json" for _, headers, _ in answers)
    # three resolves answered here; the one behind /healthz waited for it as uvicorn's request
    assert calls == [False, True, True, True]


def test_a_body_in_pieces_and_expect_continue(registry: LocalStore) -> None:
    front = create_app(registry)
    calls = counted(front)
    with run_server(front) as url, connect(url) as (sock, reader):
        request = post()
        sock.sendall(request[:-10])
        time.sleep(0.2)
        sock.sendall(request[-10:])
        status, _, first = reader.response()
        assert status == 200
        sock.sendall(post(extra="Expect: 100-continue\r\n").split(b"\r\n\r\n")[0] + b"\r\n\r\n")
        assert reader.head() == (100, {})
        sock.sendall(PROFILE)
        status, _, second = reader.response()
    assert status == 200 and resolution(first) == resolution(second) and calls == [False, True]


def test_http_1_0_closes_after_the_answer(registry: LocalStore) -> None:
    with run_server(create_app(registry)) as url, connect(url) as (sock, reader):
        sock.sendall(post().replace(b"HTTP/1.1", b"HTTP/1.0", 1))
        status, headers, _ = reader.response()
        assert status == 200 and headers["connection"] == "close" and reader.closed()


def test_chunked_bodies_and_stale_pointers_take_the_asgi_side(registry: LocalStore, two_runtime_build: Path) -> None:
    front = create_app(registry, pointer_seconds=0)  # every resolve is due a store read
    calls = counted(front)
    with run_server(front) as url, connect(url) as (sock, reader):
        sock.sendall(post())
        status, _, stale = reader.response()
        chunked = f"POST {PATH} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        half = len(PROFILE) // 2
        for piece in (PROFILE[:half], PROFILE[half:]):
            chunked += b"%x\r\n" % len(piece) + piece + b"\r\n"
        sock.sendall(chunked + b"0\r\n\r\n")
        assert reader.response()[0] == 200
        sock.sendall(post())
        assert reader.response()[0] == 200
    assert status == 200 and resolution(stale)["model"] == "mlp"
    assert calls == [False, False]  # both resolves with a length went on to ASGI; the chunked one never came here


def test_a_client_gone_mid_body_leaves_the_server_serving(registry: LocalStore) -> None:
    with run_server(create_app(registry)) as url:
        with connect(url) as (sock, _):
            sock.sendall(post()[:-5])
        with connect(url) as (sock, reader):
            sock.sendall(post())
            assert reader.response()[0] == 200


def test_keep_alive_closes_idle_connections_only(registry: LocalStore) -> None:
    """One timer per idle spell: a connection that keeps asking stays open past the timeout; one
    that stops is closed once the timeout has passed since its last answer."""
    with run_server(create_app(registry), timeout_keep_alive=2) as url, connect(url) as (sock, reader):
        started = time.monotonic()
        while time.monotonic() - started < 5:  # 2.5 timeouts, never idle for one
            sock.sendall(post())
            assert reader.response()[0] == 200
            time.sleep(0.25)
        sock.sendall(get("/healthz"))  # uvicorn's answer arms the same timer
        assert reader.response()[0] == 200
        last = time.monotonic()
        assert reader.closed()
        assert time.monotonic() - last >= 1.9  # not before the timeout (the timer's own clock may round)


def test_a_resolve_being_read_at_shutdown_is_answered_then_closed(registry: LocalStore) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(config(create_app(registry), host="127.0.0.1", port=port))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive()
        time.sleep(0.01)
    with connect(f"http://127.0.0.1:{port}") as (sock, reader):
        sock.sendall(post())  # reads the channel's pointer: the next resolve is held by the protocol
        assert reader.response()[0] == 200
        request = post()
        sock.sendall(request[:-5])
        time.sleep(0.2)
        server.should_exit = True  # the server stops listening and waits for this connection
        time.sleep(0.5)
        assert thread.is_alive()
        sock.sendall(request[-5:])
        status, headers, _ = reader.response()
        assert status == 200 and headers["connection"] == "close" and reader.closed()
    thread.join(10)
    assert not thread.is_alive()


@pytest.mark.parametrize("coding", [b"gzip", b"chunked, gzip", b"identity"])
def test_a_body_whose_transfer_coding_is_not_chunked_is_refused_at_once(registry: LocalStore, coding: bytes) -> None:
    """RFC 9112 6.3: such a body's length cannot be known; it would be read until the client
    closed. The answer is a 400 with the JSON error shape, and the connection closes."""
    with run_server(create_app(registry)) as url:
        for path in (PATH.encode(), b"/v1/telemetry"):
            with connect(url) as (sock, reader):
                sock.settimeout(5)
                sock.sendall(b"POST " + path + b" HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: " + coding + b"\r\n\r\n")
                status, headers, body = reader.response()
                assert status == 400 and headers["connection"] == "close"
                assert json.loads(body)["error"]["code"] == "bad_request" and reader.closed()
