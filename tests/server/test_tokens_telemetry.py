"""Tokens at rest and their checks (unit), `packager token add`, and telemetry over HTTP."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest
from conftest import run_cli
from server_helpers import Served, served, tokens_file, two_runtime_build

from packager.errors import ServiceError
from packager.registry.store import LocalStore
from packager.server.tokens import Tokens, add_token

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
