"""Tokens at rest and their checks (unit), `packager token add`, and telemetry over HTTP."""

from __future__ import annotations

import json
import os
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import anyio
import httpx
import pytest
from conftest import run_cli
from server_helpers import Served, served, tokens_file, two_runtime_build

from packager.errors import ServiceError
from packager.registry.store import LocalStore
from packager.server.tokens import Entry, Tokens, add_token

__all__ = ["served", "tokens_file", "two_runtime_build"]


def test_tokens_are_stored_hashed_and_private(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    token = add_token(path, "mlp", note="ci")
    text = path.read_text()
    secret = token[len("pkt_0123456789abcdef_") :]  # its alphabet has "_" too
    assert len(secret) == 43 and secret not in text and token not in text
    entry = json.loads(text)["tokens"][0]
    assert entry["model"] == "mlp" and len(entry["salt"]) == 32 and entry["n"] >= 16384 and entry["note"] == "ci"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


@pytest.mark.parametrize(("header", "status"), [
    (None, 401), ("Token abc", 401), ("Bearer ", 401), ("Bearer abc", 403),
    ("Bearer pkt_0123456789abcdef_" + "A" * 43, 403),
])  # fmt: skip
def test_tokens_check_refuses_missing_and_wrong(tmp_path: Path, header: str | None, status: int) -> None:
    add_token(tmp_path / "t.json", "*")
    with pytest.raises(ServiceError) as caught:
        Tokens(tmp_path / "t.json").check(header, "mlp")
    assert caught.value.status == status
    assert ("WWW-Authenticate" in caught.value.headers) == (status == 401)


def test_tokens_check_scopes_per_model_and_sees_new_tokens(tmp_path: Path) -> None:
    path = tmp_path / "t.json"
    tokens = Tokens(path)
    scoped = add_token(path, "mlp")
    assert tokens.check(f"Bearer {scoped}", "mlp").model == "mlp"
    with pytest.raises(ServiceError, match="may not write model 'digits'"):
        tokens.check(f"Bearer {scoped}", "digits")
    every = add_token(path, "*")  # added while the server runs
    assert tokens.check(f"Bearer {every}", "digits").model == "*"
    # the same id with another secret (the secret's alphabet has "_" too: split after the id)
    head, secret = every[: len("pkt_0123456789abcdef_")], every[len("pkt_0123456789abcdef_") :]
    assert head.startswith("pkt_") and head.endswith("_") and len(secret) == 43
    wrong = secret[:-1] + ("A" if secret[-1] != "A" else "B")
    with pytest.raises(ServiceError):
        tokens.check(f"Bearer {head}{wrong}", "digits")


def test_tokens_closed_when_no_file_is_configured() -> None:
    with pytest.raises(ServiceError) as caught:
        Tokens(None).check("Bearer pkt_0123456789abcdef_" + "A" * 43, "mlp")
    assert caught.value.status == 403


def test_cli_token_add_prints_the_token_once(tmp_path: Path) -> None:
    result = run_cli("token", "add", "--model", "digits", "--tokens", tmp_path / "t.json")
    assert result.code == 0 and result.out.startswith("pkt_") and len(result.out.splitlines()) == 1
    Tokens(tmp_path / "t.json").check(f"Bearer {result.out.strip()}", "digits")
    bad = run_cli("token", "add", "--model", "../x", "--tokens", tmp_path / "t.json")
    assert bad.code == 2 and "invalid model name" in bad.error_lines[0]


def test_telemetry_events_are_validated_and_stored(served: Served) -> None:
    events = [{"event": "download", "model": "mlp", "version": "1", "variant": "onnx-fp32", "bytes": 1234,
               "ms": 5.5, "device_id": "d1"}, {"event": "error", "model": "mlp", "detail": "load failed"}]  # fmt: skip
    response = served.client.post("/v1/telemetry", json={"events": events})
    assert response.status_code == 202 and response.json() == {"accepted": 2}
    store = LocalStore(served.registry)
    stored = [json.loads(line) for key in store.list("telemetry/") for line in store.get(key).data.splitlines()]  # type: ignore[union-attr]
    assert {e["event"] for e in stored} >= {"download", "error"} and all("received" in e for e in stored)


@pytest.mark.parametrize("body", [
    {"events": []}, {"events": [{"event": "explode", "model": "mlp"}]}, {"events": [{"event": "load"}]},
    {"events": [{"event": "load", "model": "../x"}]}, {"events": [{"event": "load", "model": "m", "ms": -1}]},
    {"events": [{"event": "load", "model": "m", "extra": 1}]}, {"events": [{"event": "load", "model": "m"}] * 101},
    {"other": []}, [1, 2],
])  # fmt: skip
def test_telemetry_refuses_invalid_batches(served: Served, body: object) -> None:
    response = served.client.post("/v1/telemetry", json=body)
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_event"


def test_telemetry_body_is_bounded(served: Served) -> None:
    response = served.client.post("/v1/telemetry", content=b'{"events": [' + b" " * 300_000 + b"]}")
    assert response.status_code == 413


def _counting(monkeypatch: pytest.MonkeyPatch, gate: threading.Event | None = None) -> list[str]:
    """Entry.matches, counted (and held until ``gate`` is set, when one is given)."""
    calls: list[str] = []
    real = Entry.matches

    def matches(self: Entry, secret: str) -> bool:
        calls.append(self.id)
        if gate is not None:
            assert gate.wait(30)
        return real(self, secret)

    monkeypatch.setattr(Entry, "matches", matches)
    return calls


def _rewrite(path: Path, text: str) -> None:
    """Write ``path`` and move its mtime on by a second, so a reader that looks at the mtime sees it."""
    before = path.stat().st_mtime_ns
    path.write_text(text)
    os.utime(path, ns=(before + 10**9, before + 10**9))


def test_tokens_scrypt_runs_off_the_event_loop(served: Served, monkeypatch: pytest.MonkeyPatch) -> None:
    gate = threading.Event()
    calls = _counting(monkeypatch, gate)
    wrong = served.tokens["admin"][:-1] + ("A" if served.tokens["admin"][-1] != "A" else "B")
    with httpx.Client(base_url=served.url, timeout=30) as other, ThreadPoolExecutor(8) as pool:
        writes = [pool.submit(other.post, "/v1/models/mlp/channels/stable/rollback",
                              headers={"Authorization": f"Bearer {wrong}"}) for _ in range(8)]  # fmt: skip
        deadline = time.monotonic() + 20
        while not calls and time.monotonic() < deadline:
            time.sleep(0.01)
        # scrypt is held: a read on the same server is answered all the same
        assert calls and served.client.post("/v1/models/mlp/resolve", json={"platform": "linux"}).status_code == 200
        assert served.client.get("/healthz").status_code == 200
        gate.set()
        assert [w.result().status_code for w in writes] == [403] * 8
    assert len(calls) == 8  # a wrong secret is never remembered


def test_tokens_a_verified_secret_is_remembered_until_the_file_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.json"
    token = add_token(path, "mlp")
    tokens = Tokens(path)
    calls = _counting(monkeypatch)
    for _ in range(3):
        assert anyio.run(tokens.verify, f"Bearer {token}", "mlp").model == "mlp"
    assert len(calls) == 1
    with pytest.raises(ServiceError, match="may not write model 'digits'"):  # remembered, still scoped
        anyio.run(tokens.verify, f"Bearer {token}", "digits")
    kept = path.read_text()
    _rewrite(path, json.dumps({"schema": 1, "tokens": []}))  # revoked
    with pytest.raises(ServiceError) as caught:
        anyio.run(tokens.verify, f"Bearer {token}", "mlp")
    assert caught.value.status == 403
    _rewrite(path, kept)  # back: the secret is checked again, not taken from memory
    anyio.run(tokens.verify, f"Bearer {token}", "mlp")
    assert len(calls) == 2
