"""The ``ort-web`` target: ONNX for onnxruntime-web (WebAssembly) with the files a page needs.

Each variant folder is a static site: ``index.html`` (loads ``ort.wasm.min.js`` with a script
tag, runs one prediction on ``sample.json``), ``model.onnx``, and the runtime files
(``ort.wasm.min.js``, ``ort-wasm-simd-threaded.mjs``/``.wasm``: about 14 MB, not the 28 MB
WebGPU build). Validation serves that folder on 127.0.0.1 and runs the samples through the
same page in headless Chromium.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from packager import batching
from packager.resources import fill, template_path
from packager.runtimes.browser import BrowserRunner
from packager.spec import ModelSpec
from packager.target import Step, StepContext, Target, VariantInfo
from packager.targets import onnx as onnx_target
from packager.tools import browser

RUNTIME_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")


class OrtWebTarget(Target):
    name = "ort-web"
    slow_checks = True  # each variant is checked in headless Chromium
    summary = "ONNX + onnxruntime-web (WebAssembly) as a static page; validated in headless Chromium"
    emits = "index.html, model.onnx, ort.wasm.min.js + .mjs/.wasm"
    precisions = ("fp32", "int8")
    extra = "onnx"

    def check(self, spec: ModelSpec) -> None:
        onnx_target.OnnxTarget().check(spec)

    def plan(self, spec: ModelSpec, options: object, precisions: tuple[str, ...]) -> list[Step]:
        version = browser.npm_version("onnxruntime-web")
        steps = onnx_target.model_steps("ort-web", spec, precisions)
        for precision in precisions:
            model_step = "ort-web-model" if precision == "fp32" else "ort-web-model-int8"
            variant = VariantInfo(id=f"ort-web-{precision}", precision=precision, runtime="onnxruntime-web",
                                  min_version=".".join(version.split(".")[:2]), main_file="index.html")  # fmt: skip
            steps.append(Step(name=variant.id, variant=variant, run=_site, requires=(model_step,),
                              description=f"static page with onnxruntime-web {version} (wasm)"))  # fmt: skip
        return steps

    def warm_up(self) -> None:
        browser.prelaunch()

    def runner(self, variant_dir: Path, main_file: str, cache_dir: Path) -> BrowserRunner:
        return BrowserRunner(variant_dir, main_file)

    def peak_memory_mb(self, spec: ModelSpec, variant_dir: Path, main_file: str) -> float | None:
        return onnx_target.estimate_memory_mb(variant_dir / "model.onnx")


def _site(ctx: StepContext) -> Path:
    shutil.copyfile(ctx.inputs["model"], ctx.out_dir / "model.onnx")
    for name in RUNTIME_FILES:
        shutil.copyfile(browser.npm_file("onnxruntime-web", "dist", name), ctx.out_dir / name)
    write_sample(ctx.spec, ctx.out_dir / "sample.json")
    values = {"model": ctx.spec.name, "version": ctx.spec.version, "variant": ctx.out_dir.name}
    (ctx.out_dir / "index.html").write_text(fill(template_path("browser", "ort-web.html").read_text(), values))
    return ctx.out_dir / "index.html"


def write_sample(spec: ModelSpec, path: Path, perms: Mapping[str, list[int] | None] | None = None,
                 names: Mapping[str, str] | None = None) -> None:  # fmt: skip
    """The first sample as the page's demo feeds it: the variant's input names and layout."""
    sample = {}
    for name, one in batching.take(spec.samples, spec.signature.inputs, 0, 1).items():
        if perms and perms.get(name):
            one = np.transpose(one, perms[name])
        key = names.get(name, name) if names else name
        sample[key] = {"shape": list(one.shape), "dtype": one.dtype.name, "data": one.reshape(-1).tolist()}
    path.write_text(json.dumps(sample) + "\n")
