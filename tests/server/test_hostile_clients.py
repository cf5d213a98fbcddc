"""What a hostile client sends `packager serve` (issue 15's table): each gets a 4xx with the JSON
error shape, never a 5xx, a reset connection, a redirect to a host of its choosing, or a path on
the server's disk."""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from typing import Any

import pytest
from server_helpers import Served, serve, served, tokens_file, two_runtime_build

from packager.registry.names import check_name
from packager.server.http import parse_range

__all__ = ["served", "tokens_file", "two_runtime_build"]  # fixtures, found by name


def _error(answer: Any, status: int, code: str) -> dict:
    assert answer.status_code == status, answer.text
    assert answer.headers["content-type"].startswith("application/json")
    body = answer.json()["error"]
    assert body["code"] == code, body
    return body


def _first_sha(doc: Any) -> str:
    """The sha256 of the first artifact a manifest links to."""
    found = re.search(r"/v1/artifacts/([0-9a-f]{64})", json.dumps(doc))
    assert found, doc
    return found.group(1)


def test_hostile_a_number_of_hundreds_of_digits_is_a_422_and_the_connection_lives(served: Served) -> None:
    body = '{"platform": "linux", "memory_mb": 1' + "0" * 450 + "}"
    error = _error(served.client.post("/v1/models/mlp/resolve", content=body), 422, "invalid_profile")
    assert "memory_mb must be a non-negative number of at most 1e+15" in error["message"]
    assert served.client.get("/healthz").status_code == 200  # the same keep-alive connection


@pytest.mark.parametrize("depth", [20, 300, 5000])
@pytest.mark.parametrize("path", ["/v1/models/mlp/resolve", "/v1/telemetry"])
def test_hostile_deep_nesting_is_a_400(served: Served, path: str, depth: int) -> None:
    body = '{"platform": "linux", "x": ' + "[" * depth + "]" * depth + "}"
    error = _error(served.client.post(path, content=body), 400, "invalid_json")
    assert "deeper than 16" in error["message"]


def test_hostile_a_range_of_thousands_of_digits_is_a_416_or_the_whole_object(served: Served) -> None:
    sha = _first_sha(served.client.get("/v1/models/mlp/manifest").json())
    url = f"/v1/artifacts/{sha}"
    _error(served.client.get(url, headers={"Range": "bytes=" + "9" * 4301 + "-"}), 416, "range_not_satisfiable")
    whole = served.client.get(url, headers={"Range": "bytes=0-" + "9" * 4301})
    assert whole.status_code == 206 and whole.content == served.client.get(url).content


def test_parse_range_reads_no_number_past_eighteen_digits() -> None:
    assert parse_range("bytes=-" + "9" * 5000, 10) == parse_range("bytes=0-", 10)


@pytest.mark.parametrize("path", ["/v1/artifacts/{sha}/", "/demo/mlp/", "/v1/models/mlp/manifest/"])
def test_hostile_host_header_never_becomes_a_redirect(served: Served, path: str) -> None:
    sha = _first_sha(served.client.get("/v1/models/mlp/manifest").json())
    answer = served.client.get(path.format(sha=sha), headers={"Host": "evil.example"})
    assert answer.status_code == 404 and "location" not in answer.headers
    _error(answer, 404, "not_found")


def test_hostile_healthz_shows_no_path_of_the_servers_disk(served: Served) -> None:
    answer = served.client.get("/healthz")
    assert answer.json() == {"status": "ok", "store": "folder", "signed": True}
    assert str(served.registry) not in answer.text


@pytest.mark.parametrize(
    ("name", "reason"),
    [("..", "must start with a letter or digit"), ("a..b", "must not hold '..'"), ("mlp.", "must not end with '.'"),
     ("a" * 65, "at most 64 characters"), ("mlp$", "use only letters, digits")],
)  # fmt: skip
def test_hostile_an_invalid_name_is_refused_for_its_own_reason(served: Served, name: str, reason: str) -> None:
    with pytest.raises(Exception, match=reason):
        check_name("model", name)
    quoted = "".join(f"%{b:02X}" for b in name.encode())
    error = _error(served.client.get(f"/v1/models/{quoted}/manifest"), 400, "invalid_name")
    assert reason in error["message"]


def test_hostile_the_demo_page_of_an_unknown_model_is_a_404(served: Served) -> None:
    _error(served.client.get("/demo/nosuchmodel"), 404, "not_found")
    assert served.client.get("/demo/mlp").status_code == 200


@pytest.mark.parametrize(
    "raw",
    [b"GARBAGE\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n",
     b"POST /v1/telemetry HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
     b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header Name: 1\r\n\r\n"],
)  # fmt: skip
def test_hostile_a_malformed_request_gets_the_json_error_shape(served: Served, raw: bytes) -> None:
    host, port = served.url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(raw)
        answer = b""
        while chunk := sock.recv(4096):
            answer += chunk
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400"), answer
    assert b"content-type: application/json" in head.lower()
    assert body.startswith(b'{"error":{"code":"bad_request"'), body


def _read_answer(sock: socket.socket, limit: float = 15.0) -> bytes:
    """Everything the server sends until it closes the connection (or ``limit`` seconds pass)."""
    sock.settimeout(limit)
    chunks = []
    try:
        while chunk := sock.recv(65536):
            chunks.append(chunk)
    except (TimeoutError, ConnectionResetError):
        pass
    return b"".join(chunks)


def _status_and_error(answer: bytes) -> tuple[int, str]:
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split(b" ", 2)[1]), json.loads(body)["error"]["code"]


@pytest.fixture(scope="module")
def impatient(two_runtime_build: Any, tmp_path_factory: pytest.TempPathFactory,
              tokens_file: Any) -> Iterator[Served]:  # fmt: skip
    """A server with short slow-client bounds: headers in 1 s, bodies paused at most 1 s, 8
    connections waiting for headers at once."""
    yield from serve(two_runtime_build, tmp_path_factory.mktemp("impatient"), tokens_file,
                     header_seconds=1.0, body_idle_seconds=1.0, incomplete_most=8)  # fmt: skip


@pytest.mark.parametrize("sent", [b"", b"GET /healthz HTTP/1.1\r\nHost: x\r\n", b"POST /v1/models/mlp/reso"])
def test_hostile_headers_that_never_finish_are_a_408(impatient: Served, sent: bytes) -> None:
    with socket.create_connection(_address(impatient)) as sock:
        sock.sendall(sent)
        assert _status_and_error(_read_answer(sock)) == (408, "request_timeout")


@pytest.mark.parametrize("head", [
    b"POST /v1/telemetry HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"events\"",
    b"POST /v1/telemetry HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"eve\r\n",
    b"POST /v1/models/mlp/resolve HTTP/1.1\r\nHost: x\r\nContent-Length: 40\r\n\r\n{\"platform\"",
], ids=["length", "chunked", "resolve"])  # fmt: skip
def test_hostile_a_body_that_stops_is_a_408(impatient: Served, head: bytes) -> None:
    with socket.create_connection(_address(impatient)) as sock:
        sock.sendall(head)
        assert _status_and_error(_read_answer(sock)) == (408, "request_timeout")


@pytest.fixture(scope="module")
def crowded(two_runtime_build: Any, tmp_path_factory: pytest.TempPathFactory, tokens_file: Any) -> Iterator[Served]:
    """A server that lets 8 connections wait for headers at once, each for up to a minute."""
    yield from serve(two_runtime_build, tmp_path_factory.mktemp("crowded"), tokens_file,
                     header_seconds=60.0, incomplete_most=8)  # fmt: skip


def test_hostile_a_flood_of_half_sent_requests_costs_the_flood_its_oldest(crowded: Served) -> None:
    socks = [socket.create_connection(_address(crowded)) for _ in range(40)]
    try:
        for sock in socks:
            sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        for sock in socks[:32]:  # closed as newer ones came
            assert _status_and_error(_read_answer(sock, 10)) == (408, "request_timeout")
        assert crowded.client.get("/healthz").status_code == 200  # a newcomer is served
        for sock in socks[33:]:  # still waiting (the newcomer cost the flood one more)
            with pytest.raises(BlockingIOError):
                sock.recv(1, socket.MSG_DONTWAIT)
    finally:
        for sock in socks:
            sock.close()


def test_hostile_a_slow_but_steady_body_is_read(impatient: Served) -> None:
    body = json.dumps({"platform": "linux"}).encode()
    with socket.create_connection(_address(impatient)) as sock:
        sock.sendall(b"POST /v1/models/mlp/resolve HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % len(body))
        for i in range(0, len(body), 4):  # over a second and a half in all, never a second's pause
            sock.sendall(body[i : i + 4])
            time.sleep(0.3)
        sock.settimeout(15)
        assert sock.recv(65536).startswith(b"HTTP/1.1 200 ")


def _address(served: Served) -> tuple[str, int]:
    host, port = served.url.removeprefix("http://").split(":")
    return host, int(port)


def test_hostile_names_asked_for_are_remembered_within_a_bound(tmp_path: Any) -> None:
    from packager.registry.store import LocalStore
    from packager.server.views import RegistryView

    view = RegistryView(LocalStore(tmp_path), pointer_seconds=60, versions=4, derived=4, channels=8)
    for i in range(50):  # a client asking for a new model name each time
        assert view.channel(f"nosuch{i}", "stable") is None
    assert len(view._channels) == 8


def test_hostile_a_malformed_range_on_a_demo_runtime_file_gets_the_whole_file(served: Served) -> None:
    answer = served.client.get("/vendor/tfjs/tf.min.js", headers={"Range": "bytes=383-249"})
    if answer.status_code == 404:  # no node_modules in this checkout: the JSON 404 is the answer
        assert answer.json()["error"]["code"] == "not_found"
        return
    assert answer.status_code == 200 and len(answer.content) > 1000
