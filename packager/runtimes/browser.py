"""The browser runtimes, ``tfjs`` and ``onnxruntime-web``: the variant's own index.html in headless
Chromium, predicting on request (``packager.tools.browser``). The build checks tfjs and ort-web
variants with them; a page loads the same files through the browser loader (client.js)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from packager.runtimes.tflite import to_variant
from packager.tools import browser


class BrowserRunner:
    """The variant's own index.html, open in headless Chromium, predicting on request."""

    def __init__(self, variant_dir: Path, page: str) -> None:
        self.page = browser.BrowserPage(variant_dir, page, shared=True)  # one Chromium for a build's pages
        ready = self.page.ready
        self.runtime_label = (
            f"{ready['runtime']} {ready['version']} ({ready['backend']}) in Chromium {self.page.chromium}"
        )

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        return self.page.predict(inputs)

    def close(self) -> None:
        self.page.close()


class LayoutBrowserRunner(BrowserRunner):
    """The page speaks the SavedModel's names and layout; map the samples to it and back."""

    def __init__(self, variant_dir: Path, page: str) -> None:
        super().__init__(variant_dir, page)
        self.layout = json.loads((variant_dir / "layout.json").read_text())
        self.batched = _takes_any_batch(variant_dir / "model" / "model.json", self.layout)

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        count = len(next(iter(inputs.values())))
        if count == 1 or self.batched:  # as it is: one sample, or a chunk the graph takes whole
            return self._one(inputs)
        rows = [self._one({k: v[i : i + 1] for k, v in inputs.items()}) for i in range(count)]
        return {name: np.concatenate([r[name] for r in rows]) for name in rows[0]}

    def _one(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        feeds = {e["name"]: to_variant(inputs[e["source"]], e["perm"]) for e in self.layout["inputs"]}
        result = self.page.predict(feeds)
        out = {}
        for e in self.layout["outputs"]:
            y = result[e["name"]]
            out[e["source"]] = np.transpose(y, e["perm"]) if e["perm"] else y
        return out


def _takes_any_batch(model_json: Path, layout: Mapping[str, list[dict[str, object]]]) -> bool:
    """Whether every input of the graph model has a free first dim that is the samples' batch axis
    (a Keras SavedModel's, not onnx2tf's batch of 1): then a chunk of samples runs as one call."""
    signature = json.loads(model_json.read_text()).get("signature", {}).get("inputs", {})
    by_name = {str(k): v for k, v in signature.items()}
    for entry in layout["inputs"]:
        dims = by_name.get(str(entry["name"]), {}).get("tensorShape", {}).get("dim", [])
        perm = entry["perm"]
        if not dims or str(dims[0].get("size")) != "-1" or (isinstance(perm, list) and perm and perm[0] != 0):
            return False
    return bool(layout["inputs"])
