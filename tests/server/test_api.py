"""The read API without a transport (packager/server/api.py): routing, the store reads of a call
that may not block, telemetry run whole, and the registry view reading signed pointers without
python-tuf (what the Lambda function ships without)."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from server_helpers import CLOUD_URL, copy_build, two_runtime_build

from packager.registry.channels import read_pointer
from packager.registry.docs import canonical_json
from packager.registry.publish import init_keys, publish, rollout
from packager.registry.store import LocalStore
from packager.server.api import WRITE, Answer, Call, Io, Pending, match, run_load
from packager.server.app import create_app
from packager.server.front import Front

__all__ = ["two_runtime_build"]
LINUX = json.dumps({"platform": "linux", "arch": "x86_64", "runtimes": {"onnxruntime": "1.20"}}).encode()


@pytest.fixture(scope="module")
def signed_store(two_runtime_build: Path, tmp_path_factory: pytest.TempPathFactory) -> LocalStore:
    """A signed registry: version 1 stable, 2 at 30%."""
    work = tmp_path_factory.mktemp("api")
    store = LocalStore(work / "registry")
    keys = work / "keys"
    init_keys(keys, store)
    publish(two_runtime_build, store, keys=keys, cloud_url=CLOUD_URL)
    publish(copy_build(two_runtime_build, work / "dist", "2"), store, keys=keys, cloud_url=CLOUD_URL)
    rollout(store, "mlp", "2", percent=30, keys=keys)
    return store


def answered(app: Front, call: Call) -> tuple[Answer, int]:
    """The answer of a call that may not block, its store reads run here: and how many it made."""
    io, reads = Io(blocking=False), 0
    while True:
        try:
            return app.api.answer(call, io), reads
        except Pending as need:
            io.done[need.key] = run_load(need.load)  # as the ASGI adapter does, in a worker thread
            reads += 1


def test_api_match_tells_reads_writes_wrong_methods_and_unknown_paths() -> None:
    assert match("GET", "/v1/models/m/manifest") == ("/v1/models/{m}/manifest", "manifest", ("m",))
    assert match("HEAD", "/v1/artifacts/abc") == ("/v1/artifacts/{sha256}", "artifact", ("abc",))
    assert match("PUT", "/v1/models/m/channels/stable") == WRITE
    assert match("DELETE", "/v1/models/m/channels/stable") == "GET, PUT"
    assert match("GET", "/v1/models/m/manifest/extra") is None


READS = ["/v1/models/mlp/manifest", "/v1/models/mlp/channels/stable", "/healthz", "/v1/tuf/timestamp.json",
         "/v1/models/mlp/versions/2", "/v1/models/nope/manifest"]  # fmt: skip


@pytest.mark.parametrize("path", READS)
def test_api_answers_alike_whether_it_may_block_or_not(signed_store: LocalStore, path: str) -> None:
    app = create_app(signed_store, pointer_seconds=0)
    later, reads = answered(app, Call("GET", path))
    now = app.api.answer(Call("GET", path))
    assert reads >= 1 and (later.status, later.body) == (now.status, now.body)
    assert dict(later.headers) == dict(now.headers)


def test_api_resolve_reads_the_store_after_it_checked_the_body(signed_store: LocalStore) -> None:
    app = create_app(signed_store, pointer_seconds=0)
    refused, reads = answered(app, Call("POST", "/v1/models/mlp/resolve", body=b'{"platform": "toaster"}'))
    assert refused.status == 422 and reads == 0  # a bad profile costs no store read
    ok, reads = answered(app, Call("POST", "/v1/models/mlp/resolve", body=LINUX))
    assert ok.status == 200 and reads == 1 and json.loads(ok.body)["model"] == "mlp"  # type: ignore[arg-type]


def test_api_a_failed_store_read_is_answered_where_it_asked(signed_store: LocalStore,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:  # fmt: skip
    app = create_app(signed_store, pointer_seconds=0)

    def broken(*args: object) -> None:
        raise OSError("the disk went away")

    monkeypatch.setattr(app.api.view, "channel", broken)
    answer, _ = answered(app, Call("GET", "/v1/models/mlp/manifest"))
    assert answer.status == 500 and json.loads(answer.body)["error"]["code"] == "internal"  # type: ignore[arg-type]
    assert b"disk" not in answer.body  # type: ignore[operator]


def test_api_telemetry_runs_whole_in_one_read(signed_store: LocalStore) -> None:
    """Telemetry changes buckets and writes segments: a call that may not block hands all of it over
    at once, so running it never counts a request twice."""
    app = create_app(signed_store, overrides={"telemetry": {"address_burst": 1, "address_requests_per_second": 0.001}})
    body = json.dumps({"events": [{"event": "load", "model": "mlp"}]}).encode()
    first, reads = answered(app, Call("POST", "/v1/telemetry", body=body, client="203.0.113.9"))
    assert first.status == 202 and reads == 1
    second, _ = answered(app, Call("POST", "/v1/telemetry", body=body, client="203.0.113.9"))
    assert second.status == 429 and second.header("retry-after")


def test_api_view_reads_signed_pointers_without_python_tuf(signed_store: LocalStore) -> None:
    """The view walks timestamp -> snapshot -> targets as JSON; python-tuf is barred from importing."""
    script = (
        "import sys, json\n"
        "sys.modules['tuf'] = None\n"  # any `import tuf...` now fails
        "from pathlib import Path\n"
        "from packager.registry.store import LocalStore\n"
        "from packager.server.views import RegistryView\n"
        f"view = RegistryView(LocalStore(Path({str(signed_store.root)!r})), pointer_seconds=0, versions=8, derived=8)\n"
        "found = view.channel('mlp', 'stable')\n"
        "print(json.dumps([found.key, found.signed, view.signed()]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    key, signed, view_signed = json.loads(done.stdout)
    assert signed and view_signed
    assert key == canonical_json(read_pointer(signed_store, "mlp", "stable").to_json()).decode()  # python-tuf's


def test_api_telemetry_takes_the_time_from_the_apps_clock(signed_store: LocalStore, tmp_path: Path) -> None:
    """A simulation's clock (bench/fleet.py) stamps what is received and dates the segments."""
    at = datetime(2031, 2, 3, 4, 5, 6, tzinfo=UTC)
    store = LocalStore(tmp_path / "registry")
    shutil.copytree(signed_store.root, store.root, dirs_exist_ok=True)
    app = create_app(store, clock=lambda: at)
    body = json.dumps({"events": [{"event": "load", "model": "mlp", "version": "1", "ok": True}]}).encode()
    answer = app.api.answer(Call("POST", "/v1/telemetry", body=body, client="127.0.0.1"))
    assert answer.status == 202
    app.state.service.telemetry.flush()
    (key,) = [k for k in store.list("telemetry/") if k.startswith("telemetry/model=mlp/date=2031-02-03/040506-")]
    (line,) = gzip.decompress(store.get(key).data).splitlines()  # type: ignore[union-attr]
    assert json.loads(line)["received"] == "2031-02-03T04:05:06Z"
