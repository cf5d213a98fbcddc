"""Artifacts (Range, ETag, immutable caching), the catalog (ETag/304), TUF metadata over HTTP."""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from server_helpers import Served, served, tokens_file, two_runtime_build

from packager.registry.verify import VerificationError, verify_metadata

__all__ = ["served", "tokens_file", "two_runtime_build"]


def _largest(served: Served) -> dict[str, Any]:
    doc = served.client.get("/v1/models/mlp/versions/1").json()
    return dict(max((f for v in doc["variants"] for f in v["files"]), key=lambda f: f["bytes"]))


def test_artifact_whole_is_its_sha256_with_immutable_caching(served: Served) -> None:
    entry = _largest(served)
    response = served.client.get(f"/v1/artifacts/{entry['sha256']}")
    assert response.status_code == 200 and hashlib.sha256(response.content).hexdigest() == entry["sha256"]
    assert response.headers["etag"] == f'"{entry["sha256"]}"'
    assert response.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert response.headers["accept-ranges"] == "bytes" and int(response.headers["content-length"]) == entry["bytes"]
    again = served.client.get(f"/v1/artifacts/{entry['sha256']}", headers={"If-None-Match": response.headers["etag"]})
    assert again.status_code == 304 and again.content == b""


def test_artifact_ranges_first_half_then_the_rest_add_up(served: Served) -> None:
    entry = _largest(served)
    url, size = f"/v1/artifacts/{entry['sha256']}", entry["bytes"]
    half = size // 2
    first = served.client.get(url, headers={"Range": f"bytes=0-{half - 1}"})
    assert first.status_code == 206 and first.headers["content-range"] == f"bytes 0-{half - 1}/{size}"
    rest = served.client.get(url, headers={"Range": f"bytes={half}-"})
    assert rest.status_code == 206 and rest.headers["content-range"] == f"bytes {half}-{size - 1}/{size}"
    assert len(first.content) + len(rest.content) == size
    assert hashlib.sha256(first.content + rest.content).hexdigest() == entry["sha256"]


def test_artifact_suffix_ranges_and_clamped_ends(served: Served) -> None:
    entry = _largest(served)
    url, size = f"/v1/artifacts/{entry['sha256']}", entry["bytes"]
    whole = served.client.get(url).content
    tail = served.client.get(url, headers={"Range": "bytes=-100"})
    assert tail.status_code == 206 and tail.content == whole[-100:]
    assert tail.headers["content-range"] == f"bytes {size - 100}-{size - 1}/{size}"
    more = served.client.get(url, headers={"Range": f"bytes=-{size * 3}"})
    assert more.status_code == 206 and more.content == whole
    clamped = served.client.get(url, headers={"Range": f"bytes=10-{size * 2}"})
    assert clamped.status_code == 206 and clamped.content == whole[10:]


@pytest.mark.parametrize("header", ["bytes={size}-", "bytes={size}-{size2}", "bytes=-0"])
def test_artifact_unsatisfiable_range_is_416(served: Served, header: str) -> None:
    entry = _largest(served)
    size = entry["bytes"]
    response = served.client.get(f"/v1/artifacts/{entry['sha256']}",
                                 headers={"Range": header.format(size=size, size2=size + 5)})  # fmt: skip
    assert response.status_code == 416 and response.headers["content-range"] == f"bytes */{size}"
    assert response.json()["error"]["code"] == "range_not_satisfiable"


def test_artifact_multiple_or_invalid_ranges_send_it_whole(served: Served) -> None:
    entry = _largest(served)
    for header in ("bytes=0-1,5-9", "items=0-4", "bytes=9-3"):
        response = served.client.get(f"/v1/artifacts/{entry['sha256']}", headers={"Range": header})
        assert response.status_code == 200 and len(response.content) == entry["bytes"]


def test_artifact_names_are_checked(served: Served) -> None:
    assert served.client.get("/v1/artifacts/" + "0" * 64).status_code == 404
    bad = served.client.get("/v1/artifacts/..%2F..%2Fkeys")
    assert bad.status_code in (400, 404) and "error" in bad.json()
    assert served.client.get("/v1/artifacts/" + "A" * 64).json()["error"]["code"] == "invalid_name"


def test_manifest_lists_both_versions_with_requirements_and_tuf_locations(served: Served) -> None:
    manifest = served.client.get("/v1/models/mlp/manifest?channel=stable").json()
    assert (manifest["stable"], manifest["candidate"], manifest["percent"]) == ("1", "2", 0)
    assert set(manifest["versions"]) == {"1", "2"}
    variants = manifest["versions"]["1"]["variants"]
    assert {v["runtime"]["name"] for v in variants} == {"onnxruntime", "c"}
    static = next(v for v in variants if v["runtime"]["name"] == "c")
    assert static["platforms"] == ["linux"] and static["arch"] and static["main"]["url"].startswith("/v1/artifacts/")
    assert manifest["tuf"]["root"] == "/v1/tuf/root.json"
    assert manifest["tuf"]["version_targets"]["2"] == "models/mlp/versions/2.json"


def test_manifest_etag_gives_304_until_the_channel_moves(served: Served) -> None:
    first = served.client.get("/v1/models/mlp/manifest")
    tag = first.headers["etag"]
    assert first.headers["cache-control"] == "no-cache"
    assert served.client.get("/v1/models/mlp/manifest", headers={"If-None-Match": tag}).status_code == 304
    assert served.client.get("/v1/models/mlp/manifest", headers={"If-None-Match": f'"x", W/{tag}'}).status_code == 304
    moved = served.client.put("/v1/models/mlp/channels/stable", json={"version": "2", "percent": 5},
                              headers={"Authorization": f"Bearer {served.tokens['admin']}"})  # fmt: skip
    assert moved.status_code == 200
    after = served.client.get("/v1/models/mlp/manifest", headers={"If-None-Match": tag})
    assert after.status_code == 200 and after.headers["etag"] != tag and after.json()["percent"] == 5


def _http_fetch(served: Served) -> Any:
    def fetch(key: str) -> bytes | None:
        response = served.client.get(f"/v1/{key}")
        return response.content if response.status_code == 200 else None

    return fetch


def test_tuf_metadata_over_http_verifies_the_served_documents(served: Served) -> None:
    verified = verify_metadata(_http_fetch(served), served.root)
    for version in ("1", "2"):
        verified.check(f"models/mlp/versions/{version}.json",
                       served.client.get(f"/v1/models/mlp/versions/{version}").content)  # fmt: skip
    verified.check("models/mlp/channels/stable.json", served.client.get("/v1/models/mlp/channels/stable").content)
    entry = _largest(served)
    verified.check(f"artifacts/sha256/{entry['sha256']}", served.client.get(f"/v1/artifacts/{entry['sha256']}").content)
    with pytest.raises(VerificationError):
        verified.check("models/mlp/versions/1.json", served.client.get("/v1/models/mlp/versions/2").content)


def test_tuf_names_are_checked(served: Served) -> None:
    assert served.client.get("/v1/tuf/1.root.json").status_code == 200
    assert served.client.get("/v1/tuf/999.targets.json").status_code == 404
    assert served.client.get("/v1/tuf/keys.pem").json()["error"]["code"] == "not_found"


def test_healthz_and_metrics_count_requests_by_route_and_status(served: Served) -> None:
    assert served.client.get("/healthz").json() == {"status": "ok", "store": "folder", "signed": True}
    served.client.post("/v1/models/mlp/resolve", json={"platform": "linux"})
    served.client.post("/v1/models/mlp/resolve", json={"platform": "mars"})
    text = served.client.get("/metrics").text
    assert 'packager_http_requests_total{method="POST",route="/v1/models/{m}/resolve",status="200"}' in text
    assert 'packager_http_requests_total{method="POST",route="/v1/models/{m}/resolve",status="422"}' in text
    assert 'packager_http_request_seconds_bucket{le="0.005",method="POST",route="/v1/models/{m}/resolve"}' in text


def test_cross_origin_reads_are_allowed_for_browser_loaders(served: Served) -> None:
    origin = {"Origin": "https://app.example.com"}
    asks = {"Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "content-type"}
    preflight = served.client.options("/v1/models/mlp/resolve", headers={**origin, **asks})
    assert preflight.status_code == 200 and "POST" in preflight.headers["access-control-allow-methods"]
    entry = _largest(served)
    ranged = served.client.get(f"/v1/artifacts/{entry['sha256']}", headers={**origin, "Range": "bytes=0-9"})
    assert ranged.status_code == 206 and ranged.headers["access-control-allow-origin"] == "*"
    assert "content-range" in ranged.headers["access-control-expose-headers"].lower()
