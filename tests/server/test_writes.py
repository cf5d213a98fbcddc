"""The write API: tokens refuse and change nothing; publish (tar), rollout and rollback work,
also through `packager publish/rollout/rollback --registry http://…`."""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import pytest
from conftest import run_cli
from server_helpers import Served, copy_build, fresh, snapshot, tokens_file, two_runtime_build

from packager.registry.remote import build_tar
from packager.registry.store import LocalStore
from packager.registry.verify import verify_store

__all__ = ["fresh", "tokens_file", "two_runtime_build"]
BAD = ["", "Basic dXNlcjpwYXNz", "Bearer nonsense", "Bearer pkt_0123456789abcdef_" + "A" * 43]


def _tar(folder: Path) -> bytes:
    out = io.BytesIO()
    build_tar(folder, out)
    return out.getvalue()


def _writes(fresh: Served, build: Path, tmp: Path) -> list[tuple[str, str, dict[str, Any]]]:
    v3 = _tar(copy_build(build, tmp / "dist3", "3"))
    return [
        ("POST", "/v1/models/mlp/versions", {"content": v3, "headers": {"Content-Type": "application/x-tar"}}),
        ("PUT", "/v1/models/mlp/channels/stable", {"json": {"version": "2", "percent": 50}}),
        ("POST", "/v1/models/mlp/channels/stable/rollback", {}),
    ]


def _call(fresh: Served, method: str, path: str, kwargs: dict[str, Any], authorization: str | None) -> Any:
    headers = dict(kwargs.get("headers", {}))
    if authorization is not None:
        headers["Authorization"] = authorization
    return fresh.client.request(method, path, **{**kwargs, "headers": headers})


def test_writes_refuse_missing_wrong_and_out_of_scope_tokens_and_change_nothing(
    fresh: Served, two_runtime_build: Path, tmp_path: Path
) -> None:
    before = snapshot(fresh.registry)
    for method, path, kwargs in _writes(fresh, two_runtime_build, tmp_path):
        missing = _call(fresh, method, path, kwargs, None)
        assert missing.status_code == 401 and missing.headers["www-authenticate"].startswith("Bearer")
        assert missing.json()["error"]["code"] == "unauthorized"
        for header in BAD:
            refused = _call(fresh, method, path, kwargs, header)
            assert refused.status_code == (401 if header.split(" ")[0] != "Bearer" else 403), (path, header)
        scoped = _call(fresh, method, path, kwargs, f"Bearer {fresh.tokens['other']}")
        assert scoped.status_code == 403 and "may not write model 'mlp'" in scoped.json()["error"]["message"]
        assert snapshot(fresh.registry) == before, f"{method} {path} changed the registry"
    for method, path, kwargs in _writes(fresh, two_runtime_build, tmp_path / "ok"):  # the same requests, allowed
        done = _call(fresh, method, path, kwargs, f"Bearer {fresh.tokens['mlp']}")
        assert done.status_code in (200, 201), done.text
    assert snapshot(fresh.registry) != before


def test_publish_over_http_signs_and_serves_the_new_version(fresh: Served, two_runtime_build: Path,
                                                            tmp_path: Path) -> None:  # fmt: skip
    folder = copy_build(two_runtime_build, tmp_path / "dist", "3")
    headers = {"Content-Type": "application/x-tar", "Authorization": f"Bearer {fresh.tokens['mlp']}"}
    response = fresh.client.post("/v1/models/mlp/versions?channel=beta&cloud_url=https://cloud.example.com",
                                 content=_tar(folder), headers=headers)  # fmt: skip
    assert response.status_code == 201, response.text
    done = response.json()
    assert (done["version"], done["channel"], done["pointer"]["stable"]) == ("3", "beta", "3")
    assert done["uploaded"] == 0  # the same files as version 1: content-addressed
    report = verify_store(LocalStore(fresh.registry), fresh.root)
    assert "models/mlp/versions/3.json" in report.versions
    manifest = fresh.client.get("/v1/models/mlp/manifest?channel=beta").json()
    assert manifest["versions"]["3"]["cloud"]["url"] == "https://cloud.example.com"


def _evil_tar(name: str, data: bytes = b"x", kind: bytes = tarfile.REGTYPE) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as tar:
        info = tarfile.TarInfo(name)
        info.type, info.size = kind, 0 if kind != tarfile.REGTYPE else len(data)
        if kind == tarfile.SYMTYPE:
            info.linkname = "/etc/passwd"
        tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)
    return out.getvalue()


@pytest.mark.parametrize("body", [
    _evil_tar("../escape.json"), _evil_tar("/abs/build.json"), _evil_tar("build.json", kind=tarfile.SYMTYPE),
    _evil_tar("build.json", b"{not json"), _evil_tar("other.txt"), b"not a tar at all",
], ids=["parent", "absolute", "symlink", "bad-json", "no-build-json", "not-tar"])  # fmt: skip
def test_publish_refuses_bad_archives_and_changes_nothing(fresh: Served, body: bytes) -> None:
    before = snapshot(fresh.registry)
    response = fresh.client.post("/v1/models/mlp/versions", content=body,
                                 headers={"Authorization": f"Bearer {fresh.tokens['mlp']}"})  # fmt: skip
    assert 400 <= response.status_code < 500 and "error" in response.json(), response.text
    assert not re.search(r"""(^|[\s'"(=])/[A-Za-z]""", response.json()["error"]["message"]), response.text  # no path
    assert snapshot(fresh.registry) == before


def test_publish_of_the_same_build_again_is_a_200_that_writes_nothing(fresh: Served, two_runtime_build: Path,
                                                                      tmp_path: Path) -> None:  # fmt: skip
    headers = {"Content-Type": "application/x-tar", "Authorization": f"Bearer {fresh.tokens['mlp']}"}
    body = _tar(copy_build(two_runtime_build, tmp_path / "dist", "3"))
    first = fresh.client.post("/v1/models/mlp/versions", content=body, headers=headers)
    assert first.status_code == 201 and first.json()["changed"] is True, first.text
    before = snapshot(fresh.registry)
    for _ in range(2):
        again = fresh.client.post("/v1/models/mlp/versions", content=body, headers=headers)
        assert again.status_code == 200 and again.json()["changed"] is False, again.text
        assert again.json()["pointer"] == first.json()["pointer"]
    assert snapshot(fresh.registry) == before  # nothing re-signed

    def relabel(record: dict[str, Any], folder: Path) -> None:
        record["model"]["labels"] = ["other"] * 10

    other = _tar(copy_build(two_runtime_build, tmp_path / "dist-other", "3", relabel))
    conflict = fresh.client.post("/v1/models/mlp/versions", content=other, headers=headers)
    assert conflict.status_code == 409 and "already published" in conflict.json()["error"]["message"]
    assert snapshot(fresh.registry) == before


def test_publish_of_another_models_build_is_refused(fresh: Served, two_runtime_build: Path) -> None:
    response = fresh.client.post("/v1/models/digits/versions", content=_tar(two_runtime_build),
                                 headers={"Authorization": f"Bearer {fresh.tokens['admin']}"})  # fmt: skip
    assert response.status_code == 400 and response.json()["error"]["code"] == "model_mismatch"


def test_rollout_and_rollback_errors_are_4xx(fresh: Served) -> None:
    auth = {"Authorization": f"Bearer {fresh.tokens['admin']}"}
    missing = fresh.client.put("/v1/models/mlp/channels/stable", json={"version": "9", "percent": 5}, headers=auth)
    assert missing.status_code == 404
    bad = fresh.client.put("/v1/models/mlp/channels/stable", json={"version": "2", "percent": 101}, headers=auth)
    assert bad.status_code == 400
    stable = fresh.client.put("/v1/models/mlp/channels/stable", json={"version": "1", "percent": 5}, headers=auth)
    assert stable.status_code == 409 and stable.json()["error"]["code"] == "invalid_state"
    assert fresh.client.post("/v1/models/mlp/channels/nope/rollback", headers=auth).status_code == 404
    assert fresh.client.post("/v1/models/mlp/channels/stable/rollback", headers=auth).status_code == 200
    again = fresh.client.post("/v1/models/mlp/channels/stable/rollback", headers=auth)
    assert again.status_code == 409 and "no earlier stable" in again.json()["error"]["message"]


def test_cli_publish_rollout_rollback_through_the_server(fresh: Served, two_runtime_build: Path,
                                                         tmp_path: Path) -> None:  # fmt: skip
    dist = tmp_path / "cli-dist"
    copy_build(two_runtime_build, dist, "3")
    env = {"PACKAGER_TOKEN": fresh.tokens["mlp"]}
    done = run_cli("publish", dist, "--registry", fresh.url, env=env)
    assert done.code == 0 and "published mlp 3: 6 variants, 0 new artifacts" in done.out, done.err
    assert "candidate 3 at 0%" in done.out
    rolled = run_cli("rollout", "mlp", "--version", "3", "--percent", "20", "--registry", fresh.url, env=env)
    assert rolled.code == 0 and "candidate 3 at 20%" in rolled.out, rolled.err
    back = run_cli("rollback", "mlp", "--registry", fresh.url, env=env)
    assert back.code == 0 and "stable 1 (generation 5)" in back.out, back.err
    pointer = json.loads(fresh.client.get("/v1/models/mlp/channels/stable").content)
    assert pointer["history"][-1] == {**pointer["history"][-1], "action": "rollback", "from": "3"}


def test_cli_server_registry_errors_are_one_line(fresh: Served, two_runtime_build: Path) -> None:
    no_token = run_cli("rollback", "mlp", "--registry", fresh.url)
    assert no_token.code == 2 and "needs a token" in no_token.error_lines[0]
    wrong = run_cli("rollback", "mlp", "--registry", fresh.url, "--token", "pkt_0123456789abcdef_" + "A" * 43)
    assert wrong.code == 11 and "403 forbidden" in wrong.error_lines[0] and "Traceback" not in wrong.err
    keys = run_cli("rollback", "mlp", "--registry", fresh.url, "--token", "t", "--keys", fresh.keys)
    assert keys.code == 2 and "--keys is for a folder or S3 registry" in keys.error_lines[0]
