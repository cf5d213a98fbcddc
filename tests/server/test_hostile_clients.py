"""What a hostile client sends `packager serve` (issue 15's table): each gets a 4xx with the JSON
error shape, never a 5xx, a reset connection, a redirect to a host of its choosing, or a path on
the server's disk."""

from __future__ import annotations

import json
import re
import socket
from typing import Any

import pytest
from server_helpers import Served, served, tokens_file, two_runtime_build

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
