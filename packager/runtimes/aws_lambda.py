"""The ``lambda`` runtime: a Lambda bundle started by the real runtime interface client
(awslambdaric) under the runtime's Python, against a local Runtime API, and called with the
Open Inference Protocol as a client of the endpoint calls it. The build checks lambda-zip and
lambda-container variants with it; devices call the deployed function, not this."""

from __future__ import annotations

import functools
import json
import platform
import shutil
import tempfile
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from packager import batching, cache
from packager.resources import read_toml
from packager.runtimes import RuntimeUnavailable
from packager.runtimes.open_inference import decode, encode
from packager.spec import Signature
from packager.tools import pip
from packager.tools.lambda_runtime import LambdaInitError, LocalFunction, http_event
from packager.tools.pythons import find_python, full_version


class LambdaRunner:
    """A bundle started by awslambdaric under the runtime's Python, as Lambda would start it."""

    def __init__(self, *, work: Path, task: Path, paths: list[Path], cache_dir: Path) -> None:
        signature = json.loads((task / "model" / "signature.json").read_text())
        self.model, self.work, self.max_batch = signature["name"], work, int(signature["max_batch"])
        self.signature = Signature.from_json(signature)
        runtime, arch = signature["runtime"], signature["arch"]
        native = signature.get("engine") == "native"
        python, version = runtime_python(runtime, arch)
        # The native handler must run on the standard library alone: no Powertools on its path.
        tools = local_tools(python, version, cache_dir, powertools=not native)
        try:
            self.function = LocalFunction(python=python, task_root=task, paths=[*paths, *tools],
                                          handler=signature.get("handler", "inference.handler"), runtime=runtime,
                                          memory_mb=1024, timeout_s=60)  # fmt: skip
        except LambdaInitError as exc:
            shutil.rmtree(work, ignore_errors=True)
            raise RuntimeError(str(exc)) from exc
        engine = ", native engine" if native else ""
        self.runtime_label = f"awslambdaric on Python {full_version(python)} ({runtime} {arch}{engine})"

    @classmethod
    def from_zip(cls, variant_dir: Path, cache_dir: Path) -> LambdaRunner:
        """Unpack function.zip (and layer.zip into /opt's place) as Lambda does."""
        with zipfile.ZipFile(variant_dir / "function.zip") as archive:
            signature = json.loads(archive.read("model/signature.json"))
        runtime_python(signature["runtime"], signature["arch"])  # refuse early, before unpacking
        work = Path(tempfile.mkdtemp(prefix="packager-lambda-"))
        task, opt = work / "task", work / "opt"
        _unzip(variant_dir / "function.zip", task)
        if (variant_dir / "layer.zip").is_file():
            _unzip(variant_dir / "layer.zip", opt)
        if (variant_dir / "model.onnx").is_file():  # model_from_s3: what S3 would serve
            shutil.copyfile(variant_dir / "model.onnx", task / "model" / "model.onnx")
        return cls(work=work, task=task, paths=[opt / "python"], cache_dir=cache_dir)

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """One invocation per max_batch samples, as a client of the endpoint must send them."""
        count = batching.count(inputs, self.signature.inputs)
        if count <= self.max_batch:
            return self._invoke(inputs)
        parts = [self._invoke(batching.take(inputs, self.signature.inputs, i, i + self.max_batch))
                 for i in range(0, count, self.max_batch)]  # fmt: skip
        return batching.join(parts, self.signature.outputs)

    def _invoke(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        tensors = [encode(name, value, None) for name, value in inputs.items()]
        event = http_event("POST", f"/v2/models/{self.model}/infer", json.dumps({"inputs": tensors}))
        answer = self.function.invoke(event)
        body = json.loads(answer["body"])
        if answer["statusCode"] != 200:
            raise RuntimeError(f"HTTP {answer['statusCode']}: {body.get('error', body)}")
        return {o["name"]: decode(o) for o in body["outputs"]}

    def details(self) -> dict[str, Any]:
        return {"init_ms": self.function.init_ms, "init_wall_ms": self.function.init_wall_ms}

    def close(self) -> None:
        self.function.close()
        shutil.rmtree(self.work, ignore_errors=True)


def runtime_python(runtime: str, arch: str) -> tuple[Path, str]:
    """The interpreter to run a bundle for ``runtime`` with, or RuntimeUnavailable saying why not."""
    host = "arm64" if platform.machine() == "aarch64" else platform.machine()
    if arch != host:
        raise RuntimeUnavailable(f"a {arch} bundle cannot run on this {host} host; its sizes were checked")
    version = read_toml("lambda.toml")["runtimes"][runtime]["python"]
    python = find_python(version)
    if python is None:
        raise RuntimeUnavailable(f"no Python {version} here to run the {runtime} bundle with")
    return python, version


def _unzip(archive: Path, into: Path) -> None:
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(into)


def _install_site(python: Path, reqs: Sequence[str], staging: Path) -> None:
    pip.install_for_interpreter(python, reqs, staging / "site")


def local_tools(python: Path, version: str, cache_dir: Path, *, powertools: bool = True) -> list[Path]:
    """awslambdaric (and Powertools, what AWS's layer gives) installed for ``python``, once, in the cache."""
    facts = read_toml("lambda.toml")
    paths = []
    wanted = [("powertools", facts["powertools"]["local"])] if powertools else []
    for name, reqs in [*wanted, ("ric", facts["runtime_client"]["local"])]:
        folder = cache_dir / "lambda-local" / f"{name}-{cache.key(version, reqs)}"
        try:
            cache.cached(folder, functools.partial(_install_site, python, reqs))
        except Exception as exc:
            raise RuntimeUnavailable(f"could not install {', '.join(reqs)} for Python {version}: {exc}") from exc
        paths.append(folder / "site")
    return paths
