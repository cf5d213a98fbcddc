"""Resolve's memo (packager/server/resolver.py): one resolution per device class, cohort and channel
generation; the device id checked and hashed on every request; nothing served that the profile
check would refuse."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from server_helpers import CLOUD_URL, copy_build, two_runtime_build

from packager.errors import PackagerError
from packager.registry import resolve as resolving
from packager.registry.profile import DeviceProfile
from packager.registry.publish import publish, rollback, rollout
from packager.registry.resolve import cohort_bucket
from packager.registry.store import LocalStore
from packager.server import resolver as resolver_module
from packager.server.api import published
from packager.server.app import create_app
from packager.server.front import Front

__all__ = ["two_runtime_build"]
LINUX = {"platform": "linux", "arch": "x86_64", "runtimes": {"onnxruntime": "1.20", "c": "c99"}}


@pytest.fixture
def store(two_runtime_build: Path, tmp_path: Path) -> LocalStore:
    """Versions 1 (stable) and 2 (published, not rolled out) of the two-runtime build."""
    store = LocalStore(tmp_path / "registry")
    publish(two_runtime_build, store, cloud_url=CLOUD_URL)
    publish(copy_build(two_runtime_build, tmp_path / "dist", "2"), store, cloud_url=CLOUD_URL)
    return store


@pytest.fixture
def app(store: LocalStore) -> Front:
    return create_app(store, pointer_seconds=0)  # every request reads the pointer: writes show at once


@pytest.fixture
def resolutions(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[str | None]]:
    """The device id of every resolution computed (a memo miss)."""
    seen: list[str | None] = []

    def counting(*args: Any, **kwargs: Any) -> Any:
        seen.append(args[2].device_id)
        return resolving.resolve(*args, **kwargs)

    monkeypatch.setattr(resolver_module, "resolve", counting)
    yield seen


def answer(app: Front, body: Any, model: str = "mlp", query: str = "") -> dict[str, Any]:
    """The resolve route's steps, in its order (packager/server/api.py), its store read made here."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    resolver = app.api.resolver
    model, channel = resolver.route(model, query)
    device = resolver.profile(data)
    found = published(app.api.view.channel(model, channel), model, channel)
    return dict(json.loads(resolver.render(found, *device)))


def refused(app: Front, body: bytes) -> PackagerError:
    with pytest.raises(PackagerError) as caught:
        answer(app, body)
    return caught.value


def device_ids(percent: int) -> tuple[str, str]:
    """A device id inside a rollout of ``percent`` on mlp/stable, and one outside it."""
    inside = next(f"d{i}" for i in range(10000) if cohort_bucket(f"d{i}", "mlp", "stable") < percent)
    outside = next(f"d{i}" for i in range(10000) if cohort_bucket(f"d{i}", "mlp", "stable") >= percent)
    return inside, outside


def test_resolver_computes_one_resolution_per_class_and_cohort(app: Front, store: LocalStore,
                                                              resolutions: list[str | None]) -> None:  # fmt: skip
    rollout(store, "mlp", "2", percent=50)
    answers = [answer(app, {**LINUX, "device_id": f"d{i}"}) for i in range(200)]
    assert len(resolutions) == 2  # the first device of each cohort; the other 198 share their answer
    for i, result in enumerate(answers):
        expected = "candidate" if cohort_bucket(f"d{i}", "mlp", "stable") < 50 else "stable"
        assert result["cohort"] == expected and result["version"] == ("2" if expected == "candidate" else "1")
    assert answer(app, {**LINUX, "memory_mb": 1}) != answers[0] and len(resolutions) == 3  # another class


def test_resolver_answers_follow_the_channel_generation(app: Front, store: LocalStore) -> None:
    device = {**LINUX, "device_id": "d1"}
    assert answer(app, device)["version"] == "1"
    rollout(store, "mlp", "2", percent=100)  # a new generation: the memo's answers of the old one are not read
    assert answer(app, device)["version"] == "2"
    rollback(store, "mlp")
    assert answer(app, device)["version"] == "1"


def test_resolver_devices_in_and_out_of_the_cohort_get_their_own_answers(app: Front, store: LocalStore) -> None:
    rollout(store, "mlp", "2", percent=10)
    inside, outside = device_ids(10)
    for _ in range(3):  # the memo holds both answers: each device keeps its own
        ins, out = answer(app, {**LINUX, "device_id": inside}), answer(app, {**LINUX, "device_id": outside})
        assert (ins["cohort"], ins["version"]) == ("candidate", "2")
        assert (out["cohort"], out["version"]) == ("stable", "1")
    assert answer(app, LINUX)["cohort"] == "stable"  # no device id: never in a rollout


def test_resolver_checks_the_device_id_of_a_known_class(app: Front) -> None:
    answer(app, {**LINUX, "device_id": "d1"})  # the class is known and valid now
    for bad in (7, "é", "x" * 129):
        body = {**LINUX, "device_id": bad}
        with pytest.raises(PackagerError) as expected:
            DeviceProfile.from_json(body)
        error = refused(app, json.dumps(body).encode())
        assert (type(error), error.message) == (type(expected.value), expected.value.message)


def test_resolver_serves_no_class_to_what_the_standard_parser_reads_differently(app: Front) -> None:
    assert answer(app, b'{"platform": "linux", "memory_mb": null}')["model"] == "mlp"
    nan = refused(app, b'{"platform": "linux", "memory_mb": NaN}')  # orjson would write NaN as null
    assert "memory_mb must be a non-negative number" in nan.message
    huge = refused(app, b'{"platform": "linux", "memory_mb": -123456789012345678901234567890}')
    assert "not '-123456789012345678901234567890'" in huge.message  # the integer as json reads it, not a float
    assert "not JSON" in refused(app, b'{"platform": "linux",').message


def test_resolver_expires_moves_with_the_clock_on_a_memo_hit(app: Front, monkeypatch: pytest.MonkeyPatch,
                                                             resolutions: list[str | None]) -> None:  # fmt: skip
    now = [1_900_000_000.4]
    monkeypatch.setattr(resolver_module.time, "time", lambda: now[0])
    first = answer(app, LINUX)
    now[0] += 61
    second = answer(app, LINUX)
    assert len(resolutions) == 1 and {**first, "expires": None} == {**second, "expires": None}
    assert (first["expires"], second["expires"]) == ("2030-03-17T17:51:40Z", "2030-03-17T17:52:41Z")
