"""The fleet dashboard: GET /v1/models/{m}/dashboard (its numbers, behind the model's token) and
/dashboard/{m} (the page), drawn by headless Chromium from five hours of a real registry's
history (tests/server/fleet_history.py) and checked on a screenshot."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from fleet_history import SHIFTED, write_history
from server_helpers import Served, make_registry, run_server, tokens_file

from packager.registry.store import LocalStore
from packager.server.app import create_app
from packager.server.fleet import UPLOT, UPLOT_VERSION, cdn_chart_tags
from packager.target import RuntimeUnavailable
from packager.tools.browser import BrowserPage, node_modules

__all__ = ["tokens_file"]
ROOT = Path(__file__).resolve().parents[2]
CHARTS = ("rollout", "load_failures", "p95", "outputs", "drift", "arms")
# what each chart must show, in the page's own colours (stable blue, candidate red, reference grey)
COLOURS = {"rollout": ["#d1242f"], "load_failures": ["#1f6feb"], "p95": ["#1f6feb"], "outputs": ["#afb8c1", "#1f6feb"],
           "drift": ["#d1242f", "#9a6700"], "arms": ["#1f6feb", "#d1242f"]}  # fmt: skip


@pytest.fixture(scope="module")
def history(built_mlp: Path, tmp_path_factory: pytest.TempPathFactory,
            tokens_file: tuple[Path, dict[str, str]]) -> Iterator[Served]:  # fmt: skip
    folder = tmp_path_factory.mktemp("dashboard")
    registry, keys, root = make_registry(built_mlp, folder)
    write_history(registry, keys, datetime.now(UTC).replace(microsecond=0))
    app = create_app(LocalStore(registry), tokens=tokens_file[0], keys=keys, pointer_seconds=0.5)
    with run_server(app) as url, httpx.Client(base_url=url, timeout=60) as client:
        yield Served(url=url, registry=registry, keys=keys, root=root, tokens=tokens_file[1], client=client)


def data(served: Served, **params: str) -> httpx.Response:
    return served.client.get("/v1/models/mlp/dashboard", params=params,
                             headers={"Authorization": f"Bearer {served.tokens['mlp']}"})  # fmt: skip


def test_dashboard_data_needs_the_models_token(history: Served) -> None:
    assert history.client.get("/v1/models/mlp/dashboard").status_code == 401
    other = {"Authorization": f"Bearer {history.tokens['other']}"}
    assert history.client.get("/v1/models/mlp/dashboard", headers=other).status_code == 403
    for params in ({"window": "1y"}, {"window": "1h", "step": "1s"}, {"window": "31d", "step": "1m"}):
        refused = data(history, **params)
        assert refused.status_code == 400 and refused.json()["error"]["message"], params


def test_dashboard_data_holds_the_rollout_series_arms_and_drift(history: Served) -> None:
    answer = data(history, window="6h")
    assert answer.status_code == 200, answer.text
    doc = answer.json()
    assert (doc["stable"], doc["candidate"]) == ("2", None)  # the controller promoted it
    changes = [s for s in doc["rollout"]["timeline"] if s["action"] not in (None, "publish")]
    assert [(s["action"], s["percent"]) for s in changes][:5] == [("rollout", 1), ("advance", 5), ("advance", 25),
                                                                  ("promote", 0), ("experiment", 0)]  # fmt: skip
    assert changes[1]["reason"] == "every gate passed at 1%"
    series = doc["series"]
    assert series["step_seconds"] == 300 and len(series["times"]) == 73
    p95 = [x for x in series["versions"]["2"]["p95_ms"] if x is not None]
    assert len(p95) == 19 and 20 < float(np.median(p95)) < 35
    epochs = doc["allocations"]["epochs"]
    assert doc["allocations"]["arms"] == ["1", "2"] and len(epochs) >= 3 and epochs[0]["allocation"] == [0.5, 0.5]
    assert epochs[-1]["allocation"][1] > 0.5  # rewards 0.16 against 0.10
    drifted = doc["drift"]["versions"]["2"]["drifted"]
    assert len(drifted) == SHIFTED and all(f.startswith("in:") for f in drifted), drifted
    out = doc["outputs"]["2"]
    (name,) = out
    assert abs(sum(out[name]["reference"]) - 1) < 1e-3 and out[name]["count"] > 0


def test_dashboard_page_is_only_for_published_models_and_holds_no_numbers(history: Served) -> None:
    assert history.client.get("/dashboard/nothing-here").status_code == 404
    page = history.client.get("/dashboard/mlp")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "connect-src 'self'" in page.headers["content-security-policy"]
    assert "/vendor/uplot/uPlot.iife.min.js" in page.text and "p95_ms" not in page.text.split("<script>")[0]


def test_uplot_pins_match_the_installed_package() -> None:
    folder = node_modules()
    if folder is None:
        pytest.skip("no node_modules here (npm ci)")
    assert json.loads((ROOT / "package.json").read_text())["dependencies"]["uplot"] == UPLOT_VERSION
    for name, integrity in UPLOT.items():
        digest = hashlib.sha384((folder / "uplot" / "dist" / name).read_bytes()).digest()
        assert integrity == "sha384-" + base64.b64encode(digest).decode(), name


def test_dashboard_page_without_node_modules_loads_uplot_pinned_by_its_hash(monkeypatch: pytest.MonkeyPatch) -> None:
    from packager.server import browser

    monkeypatch.setattr(browser, "vendor_path", lambda package, name: None)
    css, script = browser.chart_tags()
    assert (css, script) == cdn_chart_tags()
    assert f"uplot@{UPLOT_VERSION}/dist/uPlot.iife.min.js" in script and UPLOT["uPlot.iife.min.js"] in script
    assert UPLOT["uPlot.min.css"] in css and 'crossorigin="anonymous"' in css


def _open(url: str) -> BrowserPage:
    try:
        return BrowserPage(None, url)
    except RuntimeUnavailable as exc:
        pytest.skip(str(exc))


def _pixels(png: Path, box: list[float], colour: str) -> int:
    """Pixels of ``png`` in ``box`` (x, y, width, height) within a few levels of ``colour``."""
    from PIL import Image

    image = np.asarray(Image.open(png).convert("RGB"), dtype=np.int16)
    x, y, w, h = (round(v) for v in box)
    region = image[y : y + h, x : x + w]
    want = np.array([int(colour[i : i + 2], 16) for i in (1, 3, 5)], dtype=np.int16)
    return int((np.abs(region - want).max(axis=-1) <= 12).sum())


def test_dashboard_draws_every_chart_in_chromium(history: Served, tmp_path: Path) -> None:
    page = _open(f"{history.url}/dashboard/mlp?window=6h#token={history.tokens['mlp']}")
    try:
        ready: dict[str, Any] = page.ready
        assert "error" not in ready, ready
        png = page.screenshot(tmp_path / "dashboard.png")
    finally:
        page.close()
    assert set(ready["charts"]) == set(CHARTS) and all(ready["charts"][c]["drawn"] for c in CHARTS), ready
    assert len(ready["drifted"]) == SHIFTED
    for chart in CHARTS:
        for colour in COLOURS[chart]:
            assert _pixels(png, ready["charts"][chart]["box"], colour) > 150, (chart, colour)
    # a chart's colours are its own: the rollout's red is not in the p95 chart (stable is blue)
    assert _pixels(png, ready["charts"]["p95"]["box"], "#d1242f") < 20


def test_dashboard_page_asks_for_a_token_and_refuses_a_wrong_one(history: Served) -> None:
    page = _open(f"{history.url}/dashboard/mlp")
    try:
        assert page.ready["error"] == "no token" and "charts" not in page.ready
        wrong = page.goto(f"{history.url}/dashboard/mlp#token={history.tokens['other']}")
    finally:
        page.close()
    assert "error" in wrong and "charts" not in wrong
