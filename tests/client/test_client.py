"""The device client against a real `packager serve` over a signed registry of a real build."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from client_helpers import (
    BOTH,
    C_ONLY,
    Cloud,
    Registry,
    broken_build,
    closed_port_url,
    cloud_app,
    make_registry,
    reference,
    run_proxy,
    run_server,
)
from conftest import run_cli
from server_helpers import two_runtime_build

from packager.client import Client, detect_profile
from packager.errors import ClientError, IntegrityError, NoVariantError, OfflineError
from packager.plugins import load_target
from packager.registry.publish import rollout
from packager.registry.store import LocalStore
from packager.registry.verify import VerificationError

__all__ = ["two_runtime_build"]


@pytest.fixture(scope="module")
def cloud(two_runtime_build: Path) -> Iterator[Cloud]:
    calls: list[str] = []
    with run_server(cloud_app(two_runtime_build / "source" / "model.onnx", "mlp", calls)) as url:
        yield Cloud(url=url, calls=calls)


@pytest.fixture(scope="module")
def registry(two_runtime_build: Path, cloud: Cloud, tmp_path_factory: pytest.TempPathFactory) -> Registry:
    return make_registry(two_runtime_build, tmp_path_factory.mktemp("client"), cloud.url)


@pytest.fixture(scope="module")
def server(registry: Registry) -> Iterator[str]:
    with run_server(registry.app()) as url:
        yield url


def _main(registry: Registry, variant_id: str) -> tuple[str, int]:
    doc = json.loads((registry.path / "models" / "mlp" / "versions" / "1.json").read_text())
    main = next(v["main"] for v in doc["variants"] if v["id"] == variant_id)
    return main["sha256"], main["bytes"]


def _close(expected: dict[str, np.ndarray], got: dict[str, np.ndarray], atol: float = 1e-5) -> None:
    assert set(got) == set(expected)
    for name, value in expected.items():
        np.testing.assert_allclose(got[name], value, atol=atol)


# --- (1) the happy path --------------------------------------------------------------------------


def test_client_load_predicts_like_the_source_with_a_pinned_root(
    server: str, registry: Registry, two_runtime_build: Path, tmp_path: Path
) -> None:
    x, y = reference(two_runtime_build)
    with Client(server, "mlp", cache_dir=tmp_path, root=registry.root) as client:
        chosen = client.resolve()["variant"]["id"]
        model = client.load()
        assert (model.source, model.variant, model.offline) == ("local", chosen, False)
        _close(y, model.predict(x))
        model.close()
    sha, size = _main(registry, chosen)
    assert (tmp_path / "artifacts" / "sha256" / sha).stat().st_size == size
    assert not list((tmp_path / "artifacts").glob("*.part"))


def test_client_load_runs_the_c_library_through_ctypes(server: str, two_runtime_build: Path, tmp_path: Path) -> None:
    x, y = reference(two_runtime_build)
    with Client(server, "mlp", cache_dir=tmp_path, profile=C_ONLY) as client:
        model = client.load()
        assert (model.source, model.variant) == ("local", "static-lib-fp32")
        _close(y, model.predict(x))
    installed = sorted(p.stat().st_size for p in (tmp_path / "artifacts" / "sha256").iterdir())
    assert len(installed) == 2  # the library and its header, none of the sources or examples


def test_client_telemetry_reaches_the_server(
    server: str, registry: Registry, two_runtime_build: Path, tmp_path: Path
) -> None:
    x, _ = reference(two_runtime_build)
    with Client(server, "mlp", cache_dir=tmp_path, profile=BOTH) as client:
        model = client.load()
        model.predict(x)
        model.predict(x)
        model.feedback(0.5)
        with pytest.raises(ClientError):
            model.feedback(float("nan"))
        model.close()
        device = client.profile.device_id
    mine = [e for e in registry.events() if e.get("device_id") == device]
    assert {"resolve", "download", "install", "load", "predict"} <= {e["event"] for e in mine}
    predicts = [e for e in mine if e["event"] == "predict"]
    assert len(predicts) == 2 and all(e["ms"] > 0 and e["variant"] == model.variant for e in predicts)
    assert predicts[0]["detail"].startswith("n=2 sampled=2 ")
    assert [e.get("ok") for e in mine if e["event"] in ("install", "load")] == [True, True]
    (feedback,) = [e for e in mine if e["event"] == "feedback"]
    assert (feedback["reward"], feedback["version"], feedback["variant"]) == (0.5, "1", model.variant)


def test_client_device_id_is_kept_in_the_cache(server: str, tmp_path: Path) -> None:
    first = Client(server, "mlp", cache_dir=tmp_path, profile=BOTH)
    second = Client(server, "mlp", cache_dir=tmp_path)
    assert first.profile.device_id == second.profile.device_id == (tmp_path / "device_id").read_text()
    first.close()
    second.close()


def test_detect_profile_finds_the_installed_runtimes(tmp_path: Path) -> None:
    profile = detect_profile(tmp_path)
    assert profile.platform == "linux" and profile.runtimes["onnxruntime"] == ort.__version__
    assert profile.runtimes["c"] == "c99" and "tflite" in profile.runtimes
    assert profile.memory_mb and profile.memory_mb > 0 and profile.storage_free_mb is not None


# --- (2) an interrupted download resumes ----------------------------------------------------------


def test_client_download_cut_midway_resumes_on_the_next_load(
    server: str, registry: Registry, cloud: Cloud, two_runtime_build: Path, tmp_path: Path
) -> None:
    x, y = reference(two_runtime_build)
    sha, size = _main(registry, "static-lib-fp32")
    path = f"/v1/artifacts/{sha}"
    with run_proxy(server) as proxy:
        proxy.cut[path] = size // 2
        with Client(proxy.url, "mlp", cache_dir=tmp_path, profile=C_ONLY, attempts=1) as client:
            first = client.load()  # the only local variant is cut off: the cloud serves meanwhile
        assert first.source == "cloud"
        assert (tmp_path / "artifacts" / f"{sha}.part").stat().st_size == size // 2
        with Client(proxy.url, "mlp", cache_dir=tmp_path, profile=C_ONLY, attempts=1) as client:
            second = client.load()
        assert (second.source, second.variant) == ("local", "static-lib-fp32")
        _close(y, second.predict(x))
    assert proxy.ranges[path] == [None, f"bytes={size // 2}-"]
    assert size <= proxy.sent[path] <= 1.05 * size
    first.close()


def test_client_download_cut_midway_resumes_within_one_load(server: str, registry: Registry, tmp_path: Path) -> None:
    sha, size = _main(registry, "static-lib-fp32")
    path = f"/v1/artifacts/{sha}"
    with run_proxy(server) as proxy:
        proxy.cut[path] = size // 3
        with Client(proxy.url, "mlp", cache_dir=tmp_path, profile=C_ONLY) as client:
            model = client.load()
    assert (model.source, model.variant) == ("local", "static-lib-fp32")
    assert proxy.ranges[path] == [None, f"bytes={size // 3}-"]
    assert size <= proxy.sent[path] <= 1.05 * size


def test_client_download_restarts_when_the_server_ignores_range(
    server: str, registry: Registry, tmp_path: Path
) -> None:
    sha, size = _main(registry, "static-lib-fp32")
    part = tmp_path / "artifacts" / f"{sha}.part"
    part.parent.mkdir(parents=True)
    part.write_bytes(b"\0" * (size // 2))  # a stale prefix: wrong bytes, which a 200 replaces
    with run_proxy(server) as proxy:
        proxy.whole = True
        with Client(proxy.url, "mlp", cache_dir=tmp_path, profile=C_ONLY) as client:
            assert client.load().variant == "static-lib-fp32"
    assert proxy.sent[f"/v1/artifacts/{sha}"] == size and not part.exists()


# --- (3) a flipped byte is refused ------------------------------------------------------------------


@pytest.fixture
def own(two_runtime_build: Path, cloud: Cloud, tmp_path: Path) -> Registry:
    """A registry of this test's own, for tests that change it."""
    return make_registry(two_runtime_build, tmp_path / "own", cloud.url)


def _flip(registry: Registry, sha: str) -> None:
    stored = registry.path / "artifacts" / "sha256" / sha
    stored.chmod(0o644)
    data = bytearray(stored.read_bytes())
    data[len(data) // 2] ^= 0x01
    stored.write_bytes(bytes(data))


def test_client_flipped_byte_is_deleted_and_the_next_variant_used(
    own: Registry, two_runtime_build: Path, tmp_path: Path
) -> None:
    x, y = reference(two_runtime_build)
    with run_server(own.app()) as url, Client(url, "mlp", cache_dir=tmp_path / "cache", profile=BOTH) as client:
        resolution = client.resolve()
        first = resolution["variant"]
        _flip(own, first["sha256"])
        with pytest.raises(IntegrityError, match="expected"):
            client.install(resolution, first)
        assert not list((tmp_path / "cache" / "artifacts").rglob(f"{first['sha256']}*"))
        model = client.load()
    assert model.source == "local" and model.variant == resolution["fallbacks"][0]["id"]
    _close(y, model.predict(x))
    assert not list((tmp_path / "cache" / "artifacts").rglob(f"{first['sha256']}*"))
    refused = [e for e in own.events() if e["event"] == "fallback" and e["variant"] == first["id"]]
    assert refused and "sha256" in refused[0]["detail"]


# --- (4) replayed metadata is refused ----------------------------------------------------------------


def test_client_with_pinned_root_refuses_a_replayed_timestamp(own: Registry, tmp_path: Path) -> None:
    stamp = own.path / "tuf" / "timestamp.json"
    old = stamp.read_bytes()
    with run_server(own.app()) as url:
        with Client(url, "mlp", cache_dir=tmp_path, profile=BOTH, root=own.root) as client:
            assert client.load().source == "local"
        rollout(LocalStore(own.path), "mlp", "1", percent=100, keys=own.keys)  # a newer signed state
        with Client(url, "mlp", cache_dir=tmp_path, profile=BOTH, root=own.root) as client:
            assert client.load().source == "local"  # trusts the newer timestamp from now on
        stamp.chmod(0o644)
        stamp.write_bytes(old)  # the server now replays the older, validly signed state
        with (
            Client(url, "mlp", cache_dir=tmp_path, profile=BOTH, root=own.root) as client,
            pytest.raises(VerificationError, match="signed metadata rejected"),
        ):
            client.load()
        with Client(url, "mlp", cache_dir=tmp_path / "fresh", profile=BOTH, root=own.root) as client:
            assert client.load().source == "local"  # a device that never saw the newer state takes it


def test_client_with_pinned_root_refuses_metadata_of_another_registry(
    own: Registry, registry: Registry, server: str, tmp_path: Path
) -> None:
    with (
        Client(server, "mlp", cache_dir=tmp_path, profile=BOTH, root=own.root) as client,
        pytest.raises(VerificationError),
    ):
        client.load()
    assert not list((tmp_path / "artifacts" / "sha256").iterdir())


# --- (5) offline start -------------------------------------------------------------------------------


def test_client_offline_start_uses_the_last_known_good(
    own: Registry, two_runtime_build: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    x, y = reference(two_runtime_build)
    with run_server(own.app()) as url, Client(url, "mlp", cache_dir=tmp_path, profile=C_ONLY, root=own.root) as c:
        online = c.load()
    with (
        caplog.at_level(logging.WARNING, logger="packager.client"),
        Client(url, "mlp", cache_dir=tmp_path, profile=C_ONLY, root=own.root) as client,
    ):
        offline = client.load()
    assert (offline.source, offline.variant, offline.version, offline.offline) == ("local", online.variant, "1", True)
    _close(y, offline.predict(x))
    assert "unreachable" in caplog.text and "last-known-good" in caplog.text


def test_client_offline_with_an_empty_cache_says_so(tmp_path: Path) -> None:
    with (
        Client(closed_port_url(), "mlp", cache_dir=tmp_path, profile=BOTH) as client,
        pytest.raises(OfflineError, match="unreachable") as caught,
    ):
        client.load()
    assert "connect once" in caught.value.hint


# --- (6) fallbacks: the next variant, then the cloud -----------------------------------------------------


def test_client_variant_that_fails_to_load_falls_back_to_the_next(
    two_runtime_build: Path, cloud: Cloud, tmp_path: Path
) -> None:
    x, y = reference(two_runtime_build)
    build = broken_build(two_runtime_build, tmp_path / "dist", lambda vid: vid == "onnx-fp32")
    reg = make_registry(build, tmp_path / "reg", cloud.url)
    with run_server(reg.app()) as url, Client(url, "mlp", cache_dir=tmp_path / "cache", profile=BOTH) as client:
        resolution = client.resolve()
        assert resolution["variant"]["id"] == "onnx-fp32"
        model = client.load()
    assert model.source == "local" and model.variant == resolution["fallbacks"][0]["id"]
    _close(y, model.predict(x))
    failed = [e for e in reg.events() if e["event"] == "load" and e["detail"].startswith("failed")]
    assert [e["variant"] for e in failed] == ["onnx-fp32"] and "onnxruntime" in failed[0]["detail"]


def test_client_falls_back_to_the_cloud_when_no_variant_loads(
    two_runtime_build: Path, cloud: Cloud, tmp_path: Path
) -> None:
    x, y = reference(two_runtime_build)
    build = broken_build(two_runtime_build, tmp_path / "dist", lambda vid: True)
    reg = make_registry(build, tmp_path / "reg", cloud.url)
    with run_server(reg.app()) as url, Client(url, "mlp", cache_dir=tmp_path / "cache", profile=BOTH) as client:
        tried = [v["id"] for v in [client.resolve()["variant"], *client.resolve()["fallbacks"]]]
        model = client.load()
        assert model.source == "cloud" and model.variant is None
        _close(y, model.predict(x), atol=1e-5)
        model.close()
    assert cloud.calls[-2:] == ["metadata", "infer"]
    failed = [e["variant"] for e in reg.events() if e["event"] == "load" and e["detail"].startswith("failed")]
    assert failed == tried and len(tried) == 6


def test_client_without_a_cloud_endpoint_raises_with_every_reason(two_runtime_build: Path, tmp_path: Path) -> None:
    build = broken_build(two_runtime_build, tmp_path / "dist", lambda vid: True)
    reg = make_registry(build, tmp_path / "reg", closed_port_url())
    with (
        run_server(reg.app()) as url,
        Client(url, "mlp", cache_dir=tmp_path / "cache", profile=C_ONLY) as client,
        pytest.raises(NoVariantError, match="static-lib-fp32: c could not load") as caught,
    ):
        client.load()
    assert "cloud:" in caught.value.message


# --- packager fetch ------------------------------------------------------------------------------------


def test_fetch_cli_installs_verifies_and_predicts(
    server: str, registry: Registry, two_runtime_build: Path, tmp_path: Path
) -> None:
    profile = tmp_path / "profile.json"
    profile.write_text(json.dumps(C_ONLY))
    args = ("fetch", "mlp", "--server", server, "--cache", tmp_path / "cache", "--root", registry.root,
            "--profile", profile)  # fmt: skip
    fetched = run_cli(*args)
    assert fetched.code == 0, fetched.err
    sha, _ = _main(registry, "static-lib-fp32")
    assert fetched.out.startswith("mlp 1: static-lib-fp32 (c), ") and sha in fetched.out
    predicted = run_cli(*args, "--predict", two_runtime_build / "validation" / "samples.npz")
    assert predicted.code == 0, predicted.err
    _, y = reference(two_runtime_build)
    first = y["logits"].argmax(axis=1)[:8].tolist()
    assert "mlp 1: local, static-lib-fp32 in c (ctypes)" in predicted.out
    assert "logits: float32 [200, 10]" in predicted.out and str(first) in predicted.out


def test_fetch_cli_unreachable_server_is_a_one_line_error(tmp_path: Path) -> None:
    done = run_cli("fetch", "mlp", "--server", closed_port_url(), "--cache", tmp_path)
    assert done.code == 14 and len(done.error_lines) == 1 and "unreachable" in done.error_lines[0]


# --- LiteRT: a tflite build, resolved, installed and run by ai-edge-litert ----------------------------


def test_client_runs_a_tflite_variant_in_litert(
    mlp_onnx: Path, mlp_samples: Path, cloud: Cloud, tmp_path: Path
) -> None:
    result = run_cli("build", mlp_onnx, "-t", "tflite", "--samples", mlp_samples, "--out", tmp_path / "dist")
    assert result.code == 0, result.err
    build = tmp_path / "dist" / "mlp" / "1"
    reg = make_registry(build, tmp_path / "reg", cloud.url)
    tflite = detect_profile(tmp_path).runtimes["tflite"]  # ai-edge-litert's version, as TensorFlow's
    profile = {"platform": "linux", "arch": "x86_64", "runtimes": {"tflite": tflite}}
    x, y = reference(build)
    before = len(cloud.calls)
    with run_server(reg.app()) as url, Client(url, "mlp", cache_dir=tmp_path / "cache", profile=profile,
                                              root=reg.root) as client:  # fmt: skip
        model = client.load()
        assert model.source == "local" and model.variant == "tflite-fp32"
        _close(y, model.predict(x))
        built = load_target("tflite").runner(build / "tflite" / "tflite-fp32", "model.tflite", tmp_path / "build")
        assert type(model.runner) is type(built) and type(built).__module__ == "packager.runtimes.tflite"
        checked = built.predict(x)
        for name, value in model.predict(x).items():
            np.testing.assert_array_equal(value, checked[name])  # the runner the build compared, bit for bit
    assert cloud.calls[before:] == []  # run on the device, not sent to the cloud endpoint
    loaded = [e for e in reg.events() if e["event"] == "load"]
    assert loaded and loaded[-1]["variant"] == "tflite-fp32"


def test_client_carries_a_streaming_models_state_between_calls(model_dir: Path, cloud: Cloud, tmp_path: Path) -> None:
    from conftest import models

    onnx_model = models.make_onnx_streaming(model_dir)
    samples = models.streaming_samples(tmp_path / "s.npz")
    result = run_cli("build", onnx_model, "--samples", samples, "-t", "onnx", "-p", "fp32", "--out", tmp_path / "dist")
    assert result.code == 0, result.err
    reg = make_registry(tmp_path / "dist" / "streaming" / "1", tmp_path / "reg", cloud.url)
    profile = {"platform": "linux", "arch": "x86_64", "runtimes": {"onnxruntime": ort.__version__}}
    session = ort.InferenceSession(str(onnx_model), providers=["CPUExecutionProvider"])
    chunks = [np.random.default_rng(i).standard_normal((1, 4)).astype(np.float32) for i in range(3)]
    sr = np.array(16000, np.int64)
    state = np.zeros((2, 1, 3), np.float32)
    expected = []
    for x in chunks:  # the stream run by hand: each call's stateN fed to the next
        y, state = session.run(["y", "stateN"], {"x": x, "state": state, "sr": sr})
        expected.append(y)
    with run_server(reg.app()) as url, Client(url, "streaming", cache_dir=tmp_path / "cache", profile=profile,
                                              root=reg.root) as client:  # fmt: skip
        model = client.load()
        assert [p["input"] for p in model.state] == ["state"]
        got = [model.predict({"x": x, "sr": sr})["y"] for x in chunks]
        model.reset()
        again = model.predict({"x": chunks[0], "sr": sr})["y"]
    for g, e in zip(got, expected, strict=True):
        np.testing.assert_allclose(g, e, atol=1e-6)
    np.testing.assert_allclose(again, expected[0], atol=1e-6)
    assert not np.allclose(expected[1], session.run(["y"], {"x": chunks[1], "state": np.zeros((2, 1, 3), np.float32),
                                                              "sr": sr})[0])  # the state matters  # fmt: skip


# --- inputs a user gets wrong (issue 14) -----------------------------------------------------


def test_client_predict_takes_a_bare_array_for_a_one_input_model(
    server: str, two_runtime_build: Path, tmp_path: Path
) -> None:
    x, y = reference(two_runtime_build)
    with Client(server, "mlp", cache_dir=tmp_path) as client:
        model = client.load()
        _close(y, model.predict(x["x"]))
        model.close()


@pytest.mark.parametrize("profile", [None, C_ONLY], ids=["onnxruntime", "c"])
def test_client_predict_names_the_input_a_wrong_name_dtype_or_shape_is_given_for(
    server: str, two_runtime_build: Path, tmp_path: Path, profile: dict | None
) -> None:
    x, _ = reference(two_runtime_build)
    with Client(server, "mlp", cache_dir=tmp_path, profile=profile) as client:
        model = client.load()
        with pytest.raises(ClientError, match=r"has no input 'xx'; did you mean 'x'\? \(it takes x\)"):
            model.predict({"xx": x["x"]})
        with pytest.raises(ClientError, match=r"input 'x' takes float32 \[\?, 64\], given float64 \[200, 64\]"):
            model.predict({"x": x["x"].astype(np.float64)})
        with pytest.raises(
            ClientError, match=r"input 'x' takes shape \[\?, 64\] \('\?': any\), given float32 \[200, 8, 8\]"
        ):
            model.predict({"x": x["x"].reshape(200, 8, 8)})
        model.close()


def test_fetch_cli_predict_takes_a_one_array_file_whatever_its_name(
    server: str, two_runtime_build: Path, tmp_path: Path
) -> None:
    x, _ = reference(two_runtime_build)
    np.savez(tmp_path / "rows.npz", pixels=x["x"][:4])
    args = ("fetch", "mlp", "--server", server, "--cache", tmp_path / "cache")
    predicted = run_cli(*args, "--predict", tmp_path / "rows.npz")
    assert predicted.code == 0, predicted.err
    assert "logits: float32 [4, 10]" in predicted.out
    np.savez(tmp_path / "two.npz", a=x["x"][:4], b=x["x"][:4])
    wrong = run_cli(*args, "--predict", tmp_path / "two.npz")
    assert wrong.code == 14 and "has no input 'a'" in wrong.err and "internal error" not in wrong.err


@pytest.mark.parametrize("runtimes", [{"c": "c99"}, {"onnxruntime": ort.__version__}], ids=["c", "onnxruntime"])
def test_client_runs_a_variant_with_the_runner_the_build_verified_it_with(
    server: str, registry: Registry, two_runtime_build: Path, tmp_path: Path, runtimes: dict[str, str]
) -> None:
    x, _ = reference(two_runtime_build)
    profile = {"platform": "linux", "arch": "x86_64", "runtimes": runtimes}
    with Client(server, "mlp", cache_dir=tmp_path / "cache", root=registry.root, profile=profile) as client:
        model = client.load()
        record = json.loads((two_runtime_build / "build.json").read_text())
        variant = next(v for v in record["variants"] if v["id"] == model.variant)
        main = Path(variant["main_file"])
        built = load_target(variant["target"]).runner(two_runtime_build / main.parent, main.name, tmp_path / "build")
        assert type(model.runner) is type(built), (type(model.runner), type(built))
        assert type(built).__module__.startswith("packager.runtimes.")
        got, checked = model.predict(x), built.predict(x)
        assert set(got) == set(checked)
        for name, value in checked.items():
            np.testing.assert_array_equal(got[name], value)  # bit for bit what the build compared
        built.close()
        model.close()
