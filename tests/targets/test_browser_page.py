"""Pages of a build share one headless Chromium; each page is still its own origin and console."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

from packager.tools import browser

PAGE = """<!doctype html><script>
console.log("page {n} loaded");
window.packagerReady = Promise.resolve({{ n: {n}, origin: location.origin }});
window.packagerPredict = async (inputs) => {{
  const x = inputs.x;
  return {{ y: {{ shape: x.shape, dtype: "float32", data: x.data.map((v) => v * {n}) }} }};
}};
</script>"""


def _folder(root: Path, n: int) -> Path:
    folder = root / f"page{n}"
    folder.mkdir()
    (folder / "index.html").write_text(PAGE.format(n=n))
    return folder


def test_shared_pages_reuse_one_browser_and_stay_apart(tmp_path: Path) -> None:
    browser._close_idle()
    x = {"x": np.arange(6, dtype=np.float32).reshape(2, 3)}
    first = browser.BrowserPage(_folder(tmp_path, 2), "index.html", shared=True)
    try:
        np.testing.assert_array_equal(first.predict(x)["y"], x["x"] * 2)
        pid = first.process.pid
    finally:
        first.close()
    second = browser.BrowserPage(_folder(tmp_path, 3), "index.html", shared=True)
    try:
        assert second.process.pid == pid  # the same Chromium, a new page
        assert second.ready["n"] == 3 and second.ready["origin"] != first.ready["origin"]
        np.testing.assert_array_equal(second.predict(x)["y"], x["x"] * 3)
        answer = second._ask({"inputs": {}})  # the page fails: only its own console is shown
        assert "page 3 loaded" in " ".join(answer.get("console", []))
        assert "page 2 loaded" not in " ".join(answer.get("console", []))
    finally:
        second.close()


def test_a_shared_browser_that_died_is_started_again(tmp_path: Path) -> None:
    first = browser.BrowserPage(_folder(tmp_path, 2), "index.html", shared=True)
    first.close()
    first.process.kill()
    first.process.wait()
    again = browser.BrowserPage(_folder(tmp_path, 4), "index.html", shared=True)
    try:
        assert again.process.pid != first.process.pid and again.ready["n"] == 4
    finally:
        again.close()
    browser._close_idle()
    assert again.process.poll() is not None  # nothing left running


def _temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A temp folder of the test's own, where the drivers' Chromium profiles go."""
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    return temp


def test_a_page_of_its_own_closes_its_browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    temp = _temp(tmp_path, monkeypatch)
    page = browser.BrowserPage(_folder(tmp_path, 5), "index.html")
    assert [p.name.startswith("packager-chromium-") for p in temp.iterdir()] == [True]
    page.close()
    assert page.process.poll() is not None
    assert not list(temp.iterdir())  # its Chromium profile (~100 MB) removed with it


def test_a_shared_browser_leaves_no_profile_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    browser._close_idle()
    temp = _temp(tmp_path, monkeypatch)
    browser.BrowserPage(_folder(tmp_path, 6), "index.html", shared=True).close()
    assert len(list(temp.iterdir())) == 1  # kept open for the next shared page
    browser._close_idle()
    assert not list(temp.iterdir())


def test_a_hung_page_is_stopped_and_its_browser_not_reused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "hang"
    folder.mkdir()
    (folder / "index.html").write_text(
        "<script>window.packagerReady = Promise.resolve({});"
        "window.packagerPredict = () => new Promise(() => {});</script>"
    )
    temp = _temp(tmp_path, monkeypatch)
    page = browser.BrowserPage(folder, "index.html", shared=True)
    monkeypatch.setattr(browser, "ANSWER_TIMEOUT_S", 2.0)  # once open: starting Chromium may take longer
    try:
        with pytest.raises(RuntimeError, match="did not answer within 2 s"):
            page.predict({"x": np.zeros((1, 3), np.float32)})
        assert page.process.poll() is not None
    finally:
        page.close()
    assert all(p is not page.process for p in browser._idle)
    assert not list(temp.iterdir())


def test_a_page_loads_a_graph_models_many_weight_shards(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """tf.js loading 22 shards of 4 MB (MiniLM's weights) from a page served as the checks serve
    it: all arrive. Served "Cache-Control: no-store", Chromium stalled after six requests."""
    folder = tmp_path / "shards"
    folder.mkdir()
    count, floats = 22, 1 << 20
    rng = np.random.default_rng(0)
    for i in range(count):
        (folder / f"shard{i}.bin").write_bytes(rng.random(floats, dtype=np.float32).tobytes())
    weights = [{"name": f"w{i}", "shape": [floats], "dtype": "float32"} for i in range(count)]
    manifest = [{"paths": [f"shard{i}.bin" for i in range(count)], "weights": weights}]
    (folder / "manifest.json").write_text(json.dumps(manifest))
    shutil.copyfile(browser.npm_file("@tensorflow/tfjs", "dist", "tf.min.js"), folder / "tf.min.js")
    (folder / "index.html").write_text(
        '<script src="tf.min.js"></script><script>window.packagerReady = (async () => {'
        "const manifest = await (await fetch('manifest.json')).json();"
        "const weights = await tf.io.loadWeights(manifest, './');"
        "return {tensors: Object.keys(weights).length}; })();</script>"
    )
    monkeypatch.setattr(browser, "ANSWER_TIMEOUT_S", 60.0)
    page = browser.BrowserPage(folder, "index.html")
    try:
        assert page.ready["tensors"] == count
    finally:
        page.close()
