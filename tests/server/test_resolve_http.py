"""Resolve through the HTTP API: generated device profiles, sticky rollout cohorts."""

from __future__ import annotations

import random
from typing import Any

from profiles import random_profile
from server_helpers import Served, fresh, served, tokens_file, two_runtime_build

__all__ = ["fresh", "served", "tokens_file", "two_runtime_build"]

from packager.registry.profile import DeviceProfile
from packager.registry.resolve import failures


def _document(served: Served, version: str) -> dict[str, Any]:
    response = served.client.get(f"/v1/models/mlp/versions/{version}")
    assert response.status_code == 200
    return dict(response.json())


def test_resolve_generated_profiles_each_fit_or_go_to_the_cloud_with_a_reason(served: Served) -> None:
    variants = {v["id"]: v for v in _document(served, "1")["variants"]}
    assert {v["runtime"]["name"] for v in variants.values()} >= {"onnxruntime", "c"}
    rng = random.Random(6)
    chosen: dict[str | None, int] = {}
    for i in range(1000):
        body = random_profile(rng, i)
        response = served.client.post("/v1/models/mlp/resolve", json=body)
        assert response.status_code == 200, response.text
        result = response.json()
        profile = DeviceProfile.from_json(body)
        picked = result["variant"]
        chosen[picked and picked["id"]] = chosen.get(picked and picked["id"], 0) + 1
        for offered in [picked, *result["fallbacks"]] if picked else []:
            assert failures(variants[offered["id"]], profile) == [], (body, offered["id"])
            assert offered["url"] == f"/v1/artifacts/{offered['sha256']}"
        if picked is None:
            assert result["cloud"]["url"].startswith("https://") and "cloud endpoint" in result["reason"]
            assert not any(not failures(v, profile) for v in variants.values() if v["device"]), body
        assert result["reason"]
    assert chosen.get(None, 0) > 100 and len(chosen) >= 3  # the generator reaches every kind of answer


def test_resolve_ten_percent_rollout_is_ten_percent_and_sticky(fresh: Served) -> None:
    rolled = fresh.client.put("/v1/models/mlp/channels/stable", json={"version": "2", "percent": 10},
                              headers={"Authorization": f"Bearer {fresh.tokens['mlp']}"})  # fmt: skip
    assert rolled.status_code == 200 and rolled.json()["percent"] == 10
    body = {"platform": "linux", "runtimes": {"onnxruntime": "1.20"}}
    cohorts = {}
    for i in range(2000):
        result = fresh.client.post("/v1/models/mlp/resolve", json={**body, "device_id": f"d{i}"}).json()
        assert result["version"] == ("2" if result["cohort"] == "candidate" else "1")
        cohorts[i] = result["cohort"]
    share = sum(c == "candidate" for c in cohorts.values()) / len(cohorts)
    assert 0.08 <= share <= 0.12, share
    for i in range(0, 2000, 10):
        again = fresh.client.post("/v1/models/mlp/resolve", json={**body, "device_id": f"d{i}"}).json()
        assert again["cohort"] == cohorts[i]


def test_resolve_without_device_id_is_stable_and_bad_profiles_are_422(served: Served) -> None:
    result = served.client.post("/v1/models/mlp/resolve", json={"platform": "linux"}).json()
    assert result["cohort"] == "stable" and result["version"] == "1"
    bad = served.client.post("/v1/models/mlp/resolve", json={"platform": "linux", "ram": 3})
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_profile"
    assert "unknown profile field 'ram'" in bad.json()["error"]["message"]
    missing = served.client.post("/v1/models/nope/resolve", json={"platform": "linux"})
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    huge = served.client.post("/v1/models/mlp/resolve", content=b"{" + b" " * 70000 + b"}")
    assert huge.status_code == 413
    traversal = served.client.post("/v1/models/..%2Fetc/resolve", json={"platform": "linux"})
    assert traversal.status_code in (400, 404)
