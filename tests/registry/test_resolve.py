"""Resolution: a pure function of (pointer, version documents, profile, now)."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from packager.errors import ProfileError
from packager.registry.docs import Pointer
from packager.registry.profile import ACCELERATORS, PLATFORMS, DeviceProfile, device_id_field
from packager.registry.resolve import cohort, cohort_bucket, cohort_of, failures, resolve, version_ok

NOW = datetime(2025, 1, 1, tzinfo=UTC)
MIB = 1024 * 1024
CLOUD = {"url": "https://infer.example.com", "protocol": "open-inference-v2"}


def variant(
    vid: str,
    runtime: str,
    min_version: str,
    platforms: list[str],
    *,
    nbytes: int = 100_000,
    err: float | None = 0.001,
    status: str = "verified",
    p50: float | None = 0.5,
    memory: float | None = 4.0,
    arch: list[str] | None = None,
    device: bool = True,
) -> dict[str, Any]:
    sha = (vid.encode().hex() * 64)[:64]
    main = {"path": f"{vid}/model", "sha256": sha, "bytes": nbytes}
    return {
        "id": vid,
        "target": vid.split("-")[0],
        "precision": "fp32",
        "runtime": {"name": runtime, "min_version": min_version},
        "platforms": platforms,
        "arch": arch,
        "device": device,
        "main": main,
        "files": [main],
        "bytes": nbytes,
        "fidelity": {"status": status, "max_abs_err": err},
        "latency_ms": None if p50 is None else {"p50": p50},
        "peak_memory_mb": memory,
    }


VARIANTS = [
    variant("onnx-fp32", "onnxruntime", "1.13", ["linux", "macos", "windows", "android", "ios"], nbytes=160_000),
    variant(
        "onnx-int8", "onnxruntime", "1.13", ["linux", "macos", "windows", "android", "ios"], nbytes=50_000, err=0.1
    ),
    variant("tflite-fp16", "tflite", "2.14", ["android", "linux", "ios"], nbytes=80_000, err=0.005, p50=3.0),
    variant("coreml-fp32", "coreml", "7", ["ios", "macos"], nbytes=170_000, status="unverified", err=None),
    variant("tfjs-fp32", "tfjs", "4.0", ["web"], nbytes=170_000, memory=300.0),
    variant("static-lib-fp32", "c", "c99", ["linux"], arch=["x86_64"], nbytes=90_000, err=1e-6),
    variant("lambda-zip-fp32", "lambda", "python3.12", ["cloud"], device=False),
]


def versions(cloud: dict[str, str] | None = CLOUD) -> dict[str, dict[str, Any]]:
    return {v: {"variants": VARIANTS, "cloud": cloud} for v in ("1", "2")}


POINTER = Pointer(model="digits", channel="stable", stable="1", generation=1)


def profile(**fields: Any) -> DeviceProfile:
    return DeviceProfile.from_json({"platform": "linux", **fields})


@pytest.mark.parametrize(
    ("fields", "chosen"),
    [
        ({"runtimes": {"onnxruntime": "1.17.0"}}, "onnx-fp32"),  # verified, lowest error first
        ({"runtimes": {"onnxruntime": "1.12"}}, None),  # too old a runtime
        ({"platform": "android", "runtimes": {"tflite": "2.16", "onnxruntime": "1.17"}}, "onnx-fp32"),
        ({"platform": "android", "runtimes": {"tflite": "2.16"}}, "tflite-fp16"),
        ({"platform": "android", "runtimes": {"tflite": "2.13"}}, None),
        ({"platform": "ios", "runtimes": {"coreml": "8"}}, "coreml-fp32"),
        ({"platform": "web", "runtimes": {"tfjs": "4.22.0"}}, "tfjs-fp32"),
        ({"platform": "web", "runtimes": {"tfjs": "4.22.0"}, "memory_mb": 256}, None),  # tfjs needs 300 MB
        ({"runtimes": {"c": "c99"}, "arch": "x86_64"}, "static-lib-fp32"),
        ({"runtimes": {"c": "c99"}, "arch": "amd64"}, "static-lib-fp32"),  # alias
        ({"runtimes": {"c": "c99"}, "arch": "arm64"}, None),
        ({"runtimes": {"onnxruntime": "1.17"}, "max_download_mb": 0.1}, "onnx-int8"),  # 160 kB > 0.1 MiB
        ({"runtimes": {"onnxruntime": "1.17"}, "storage_free_mb": 0.01}, None),
        (
            {"platform": "android", "runtimes": {"tflite": "2.16", "onnxruntime": "1.17"}, "latency_budget_ms": 1.0},
            "onnx-fp32",
        ),  # android x4: nothing meets 1 ms, so fidelity decides
    ],
)
def test_resolve_picks_the_best_fitting_variant(fields: dict[str, Any], chosen: str | None) -> None:
    result = resolve(POINTER, versions(), profile(**fields), now=NOW)
    assert (result.variant["id"] if result.variant else None) == chosen
    if chosen is None:
        assert result.cloud == CLOUD and "cloud endpoint" in result.reason


def test_resolve_prefers_meeting_the_latency_budget_over_fidelity() -> None:
    fast = variant("onnx-int8", "onnxruntime", "1.13", ["linux"], err=0.1, p50=0.1)
    slow = variant("onnx-fp32", "onnxruntime", "1.13", ["linux"], err=0.001, p50=5.0)
    docs = {"1": {"variants": [slow, fast], "cloud": None}}
    result = resolve(POINTER, docs, profile(runtimes={"onnxruntime": "1.17"}, latency_budget_ms=1), now=NOW)
    assert result.variant is not None and result.variant["id"] == "onnx-int8"
    assert [f["id"] for f in result.fallbacks] == ["onnx-fp32"]


def test_resolve_breaks_ties_by_size_then_id() -> None:
    a = variant("b-var", "onnxruntime", "1.0", ["linux"], nbytes=10)
    b = variant("a-var", "onnxruntime", "1.0", ["linux"], nbytes=10)
    c = variant("c-var", "onnxruntime", "1.0", ["linux"], nbytes=5)
    result = resolve(POINTER, {"1": {"variants": [a, b, c]}}, profile(runtimes={"onnxruntime": "1"}), now=NOW)
    assert [result.variant["id"], *(f["id"] for f in result.fallbacks)] == ["c-var", "a-var", "b-var"]  # type: ignore[index]


def test_resolve_never_offers_cloud_only_variants_to_devices() -> None:
    result = resolve(POINTER, versions(), profile(runtimes={"lambda": "1"}), now=NOW)
    assert result.variant is None and result.cloud == CLOUD


def test_resolve_reason_names_the_constraint_that_excluded_most() -> None:
    result = resolve(POINTER, versions(), profile(platform="windows", runtimes={"tflite": "2.16"}), now=NOW)
    assert result.variant is None
    assert "runtime excluded 5 of 6 variants" in result.reason


def test_resolve_says_when_there_is_no_cloud_endpoint() -> None:
    result = resolve(POINTER, versions(cloud=None), profile(), now=NOW)
    assert result.cloud is None and "no cloud endpoint" in result.reason


def test_resolve_json_has_the_design_fields() -> None:
    doc = resolve(POINTER, versions(), profile(runtimes={"onnxruntime": "1.17"}), now=NOW).to_json()
    assert set(doc) == {"model", "version", "cohort", "variant", "fallbacks", "cloud", "reason", "expires"}
    assert {"id", "target", "precision", "runtime", "url", "sha256", "bytes"} <= set(doc["variant"])
    assert doc["expires"] == "2025-01-01T00:05:00Z" and doc["variant"]["url"].startswith("/v1/artifacts/")


@pytest.mark.parametrize(
    ("have", "need", "ok"),
    [
        ("1.17.0", "1.13", True),
        ("1.13", "1.13.0", True),
        ("1.9", "1.13", False),
        ("2", "1.13", True),
        ("c11", "c99", True),
        (None, "1.0", False),
        ("latest", "1.0", False),
        ("v4.22", "4.0", True),
    ],
)
def test_version_ok_compares_dotted_numbers(have: str | None, need: str, ok: bool) -> None:
    assert version_ok(have, need) is ok


@pytest.mark.parametrize(
    "data",
    [
        [],
        {"platform": "amiga"},
        {"platform": "linux", "memory_mb": -1},
        {"platform": "linux", "memory_mb": "8"},
        {"platform": "linux", "runtimes": {"onnxruntim": "1"}},
        {"platform": "linux", "accelerators": ["tpu"]},
        {"platform": "linux", "colour": "red"},
        {"platform": "linux", "device_id": "x" * 200},
        {"platform": "linux", "latency_budget_ms": float("nan")},
        {"platform": "linux", "memory_mb": True},
    ],
)
def test_device_profile_refuses_invalid_json(data: Any) -> None:
    with pytest.raises(ProfileError):
        DeviceProfile.from_json(data)


def test_device_profile_suggests_the_closest_runtime_name() -> None:
    with pytest.raises(ProfileError, match="did you mean 'onnxruntime'"):
        DeviceProfile.from_json({"platform": "linux", "runtimes": {"onnxruntim": "1"}})


def test_cohort_is_sticky_and_near_the_percent_over_10000_ids() -> None:
    pointer = Pointer(model="digits", channel="stable", stable="1", candidate="2", percent=10, generation=2)
    groups = [cohort(pointer, f"device-{i}") for i in range(10_000)]
    share = groups.count("candidate") / len(groups)
    assert 0.08 <= share <= 0.12
    assert all(cohort(pointer, f"device-{i}") == groups[i] for i in range(0, 10_000, 97))


def test_cohort_without_a_device_id_or_rollout_is_stable() -> None:
    pointer = Pointer(model="digits", channel="stable", stable="1", candidate="2", percent=50, generation=2)
    assert cohort(pointer, None) == "stable"
    assert cohort(Pointer(model="digits", channel="stable", stable="1"), "device-1") == "stable"


def test_resolve_gives_the_candidate_to_its_cohort() -> None:
    pointer = Pointer(model="digits", channel="stable", stable="1", candidate="2", percent=100 - 1e-9, generation=2)
    result = resolve(pointer, versions(), profile(device_id="d1", runtimes={"onnxruntime": "1.17"}), now=NOW)
    assert (result.cohort, result.version) == ("candidate", "2")


def test_cohort_bucket_depends_on_model_and_channel() -> None:
    assert cohort_bucket("d", "digits", "stable") != cohort_bucket("d", "digits", "beta")
    assert cohort_bucket("d", "digits", "stable") == cohort_bucket("d", "digits", "stable")


numbers = st.none() | st.floats(min_value=0, max_value=1000, allow_nan=False)
profiles = st.fixed_dictionaries(
    {"platform": st.sampled_from(PLATFORMS)},
    optional={
        "device_id": st.text(alphabet="abcdef0123456789", max_size=16),
        "arch": st.sampled_from(["x86_64", "arm64", "aarch64", "riscv64"]),
        "runtimes": st.dictionaries(
            st.sampled_from(["onnxruntime", "tflite", "coreml", "tfjs", "c", "lambda"]),
            st.sampled_from(["1", "1.12", "1.17.0", "2.13", "2.16", "4.22.0", "8", "c99"]),
            max_size=5,
        ),
        "memory_mb": numbers,
        "storage_free_mb": numbers,
        "max_download_mb": st.none() | st.floats(0, 1),
        "latency_budget_ms": numbers,
        "accelerators": st.lists(st.sampled_from(ACCELERATORS), max_size=3),
    },
)


@settings(max_examples=400, deadline=None)
@given(profiles)
def test_resolve_chosen_variant_satisfies_every_constraint(data: dict[str, Any]) -> None:
    prof = DeviceProfile.from_json(data)
    result = resolve(POINTER, versions(), prof, now=NOW)
    by_id = {v["id"]: v for v in VARIANTS}
    for served in [result.variant, *result.fallbacks] if result.variant else []:
        chosen = by_id[served["id"]]
        assert failures(chosen, prof) == [] and chosen["device"]
        assert prof.platform in chosen["platforms"]
        assert version_ok(prof.runtimes.get(chosen["runtime"]["name"]), chosen["runtime"]["min_version"])
        if prof.max_download_mb is not None:
            assert chosen["bytes"] <= prof.max_download_mb * MIB
        if prof.memory_mb is not None:
            assert chosen["peak_memory_mb"] <= prof.memory_mb
    if result.variant is None:
        assert result.cloud == CLOUD and result.reason
    assert resolve(POINTER, versions(), prof, now=NOW) == result  # deterministic


def test_size_limits_count_what_a_device_downloads_not_the_demo_page() -> None:
    from packager.registry.docs import variant_entry

    def entry(path: str, size: int) -> dict[str, Any]:
        return {"path": f"ort-web/ort-web-fp32/{path}", "sha256": (path.encode().hex() * 64)[:64], "bytes": size}

    build_variant = {
        "id": "ort-web-fp32", "target": "ort-web", "precision": "fp32",
        "runtime": {"name": "onnxruntime-web", "min_version": "1.17"}, "main_file": "ort-web/ort-web-fp32/index.html",
        "files": [entry("model.onnx", 60_000), entry("index.html", 3_000), entry("ort.wasm.min.js", 14_000_000)],
        "fidelity": {"status": "verified", "max_abs_err": 1e-6}, "latency_ms": {"p50": 0.1},
    }  # fmt: skip
    doc = variant_entry(build_variant)
    assert doc["device_bytes"] == 60_000 and doc["bytes"] == 14_063_000
    assert doc["main"]["path"].endswith("/model.onnx")  # what a device loads, not the demo page
    profile = DeviceProfile.from_json({"platform": "web", "runtimes": {"onnxruntime-web": "1.30"},
                                       "max_download_mb": 1})  # fmt: skip
    assert failures(doc, profile) == []
    tfjs = {**build_variant, "id": "tfjs-fp32", "runtime": {"name": "tfjs", "min_version": "4.0"},
            "main_file": "ort-web/ort-web-fp32/index.html",
            "files": [entry("model.json", 2_000), entry("group1-shard1of1.bin", 50_000), entry("layout.json", 100),
                      entry("index.html", 3_000), entry("tf.min.js", 1_400_000)]}  # fmt: skip
    assert variant_entry(tfjs)["device_bytes"] == 52_100
    assert variant_entry(tfjs)["main"]["path"].endswith("/model.json")


@settings(max_examples=300, deadline=None)
@given(device_id=st.one_of(st.none(), st.text(max_size=40)), percent=st.integers(0, 100),
       candidate=st.sampled_from([None, "2"]), channel=st.sampled_from(["stable", "beta"]))  # fmt: skip
def test_cohort_of_is_cohort(device_id: str | None, percent: int, candidate: str | None, channel: str) -> None:
    pointer = Pointer(model="digits", channel=channel, stable="1", candidate=candidate, percent=percent)
    assert cohort_of(pointer)(device_id) == cohort(pointer, device_id)


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.text(max_size=140), st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=127)),
                 st.integers(), st.none()))  # fmt: skip
def test_device_ids_are_printable_ascii_up_to_128(value: object) -> None:
    ok = value is None or (isinstance(value, str) and re.fullmatch(r"[\x20-\x7e]{0,128}", value) is not None)
    if ok:
        assert device_id_field(value) == value
    else:
        with pytest.raises(ProfileError, match="printable ASCII"):
            device_id_field(value)
