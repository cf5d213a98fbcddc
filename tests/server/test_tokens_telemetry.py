"""Tokens at rest and their checks (unit), `packager token add`, and telemetry over HTTP."""

from __future__ import annotations

import gzip
import json
import os
import re
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import httpx
import pytest
from conftest import run_cli
from server_helpers import Served, fresh, make_registry, run_server, served, tokens_file, two_runtime_build

from packager.errors import ServiceError
from packager.registry.store import LocalStore
from packager.server import create_app
from packager.server.telemetry import Buckets, DailyCap
from packager.server.tokens import Entry, Tokens, add_token

__all__ = ["fresh", "served", "tokens_file", "two_runtime_build"]


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


def _segments(registry: Path) -> dict[str, bytes]:
    store = LocalStore(registry)
    return {key: store.get(key).data for key in store.list("telemetry/")}  # type: ignore[union-attr]


def test_telemetry_events_are_gathered_into_gzip_segments(two_runtime_build: Path, tmp_path: Path) -> None:
    registry, _, _ = make_registry(two_runtime_build, tmp_path)
    before = sum(p.stat().st_size for p in registry.rglob("*") if p.is_file())
    with run_server(create_app(LocalStore(registry))) as url, httpx.Client(base_url=url) as client:
        for batch in range(50):  # 5,000 events from 100 devices, as a fleet sends them
            events = [{"event": "predict", "model": "mlp", "version": "1", "variant": "onnx-fp32", "ms": 1.25 + i,
                       "device_id": f"device-{(batch * 100 + i) % 100:04d}", "at": "2026-12-05T08:00:00Z"}
                      for i in range(100)]  # fmt: skip
            answer = client.post("/v1/telemetry", json={"events": events})
            assert answer.status_code == 202 and answer.json() == {"accepted": 100}, answer.text
        assert _segments(registry) == {}  # gathered in memory until a segment is due
    segments = _segments(registry)  # written at shutdown
    grown = sum(p.stat().st_size for p in registry.rglob("*") if p.is_file()) - before
    assert 0 < grown <= 1_000_000 and 1 <= len(segments) <= 5, (grown, list(segments))
    partition = re.compile(r"telemetry/model=mlp/date=\d{4}-\d\d-\d\d/\d{6}-[0-9a-f]{12}\.jsonl\.gz")
    assert all(partition.fullmatch(k) for k in segments), list(segments)
    stored = [json.loads(line) for data in segments.values() for line in gzip.decompress(data).splitlines()]
    assert len(stored) == 5000 and all(e["event"] == "predict" and "received" in e for e in stored)


def test_telemetry_of_an_unknown_model_is_refused(served: Served) -> None:
    answer = served.client.post("/v1/telemetry", json={"events": [{"event": "load", "model": "nosuchmodel"}]})
    assert answer.status_code == 422 and "no model 'nosuchmodel' is published here" in answer.json()["error"]["message"]


def test_telemetry_a_device_past_its_burst_gets_429_with_retry_after(fresh: Served) -> None:
    events = [{"event": "load", "model": "mlp", "device_id": "chatty"}] * 100
    answers = [fresh.client.post("/v1/telemetry", json={"events": events}) for _ in range(6)]
    assert [a.status_code for a in answers] == [202] * 5 + [429]
    assert answers[-1].json()["error"]["code"] == "too_many_requests" and int(answers[-1].headers["retry-after"]) >= 1
    other = fresh.client.post("/v1/telemetry", json={"events": [{"event": "load", "model": "mlp", "device_id": "b"}]})
    assert other.status_code == 202  # one device's bucket, not everyone's


def test_telemetry_an_address_past_its_burst_gets_429(two_runtime_build: Path, tmp_path: Path) -> None:
    registry, _, _ = make_registry(two_runtime_build, tmp_path)
    app = create_app(LocalStore(registry), overrides={"telemetry": {"address_burst": 20,
                                                                    "address_requests_per_second": 0.01}})  # fmt: skip
    body = {"events": [{"event": "load", "model": "mlp"}]}
    with run_server(app) as url, httpx.Client(base_url=url) as client:
        answers = [client.post("/v1/telemetry", json=body) for _ in range(25)]
        assert [a.status_code for a in answers] == [202] * 20 + [429] * 5
        assert "this address sends telemetry too often" in answers[-1].json()["error"]["message"]
        assert int(answers[-1].headers["retry-after"]) > 1
        assert client.get("/healthz").status_code == 200  # reads are not held back


def test_buckets_refill_at_their_rate_and_forget_the_oldest_key() -> None:
    now = [0.0]
    buckets = Buckets(rate=2.0, burst=4.0, most=2, clock=lambda: now[0])
    assert buckets.take({"a": 4}) == 0.0 and buckets.take({"a": 1}) == 0.5
    now[0] = 1.0  # two tokens back
    assert buckets.take({"a": 2}) == 0.0 and buckets.take({"a": 1, "b": 1}) == 0.5  # all or none: b kept its 4
    assert buckets.take({"b": 4}) == 0.0 and buckets.take({"c": 1}) == 0.0  # a forgotten: 2 keys at most
    assert buckets.take({"a": 4}) == 0.0


def test_daily_cap_counts_per_model_and_resets_at_utc_midnight() -> None:
    cap = DailyCap(3)
    noon = datetime(2026, 12, 5, 12, tzinfo=UTC)
    assert cap.take(["mlp", "mlp"], noon) == 0.0 and cap.take(["other"] * 3, noon) == 0.0
    assert cap.take(["mlp", "mlp"], noon) == 12 * 3600
    assert cap.take(["mlp"], noon) == 0.0 and cap.take(["mlp"], noon) > 0
    assert cap.take(["mlp"] * 3, noon + timedelta(hours=12)) == 0.0


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
