"""Routes for browsers: the loader (``GET /v1/client.js``), a demo page per model, the fleet
dashboard per model (``/dashboard/{m}``), and the scripts those pages load from this checkout's
``node_modules`` (``/vendor/...``: tf.js, onnxruntime-web, uPlot).

The loader and the pages are data in ``templates/browser/``. The vendored files exist only where
``npm ci`` ran next to the code (a development checkout): elsewhere the demo page says to load
tf.js or onnxruntime-web from a CDN, the dashboard loads uPlot from jsDelivr pinned by its
Subresource Integrity hash (``packager.server.fleet.UPLOT``: the version package.json installs, a
test checks the hashes), and ``/vendor/...`` answers 404 with that advice.
"""

from __future__ import annotations

import hashlib
import html
from functools import cache
from pathlib import Path
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import FileResponse, Response

from packager.resources import fill, template_path
from packager.server.fleet import cdn_chart_tags
from packager.server.http import etag_matches, quoted
from packager.server.service import not_found, path_name, service

CLIENT_CACHE = "public, max-age=600"  # the URL never changes: browsers revalidate with the ETag
VENDOR_CACHE = "public, max-age=86400"
NODE_MODULES = Path(__file__).resolve().parents[2] / "node_modules"
# package -> file -> path under node_modules: the runtimes the loader drives (the WASM builds:
# the ones every variant is validated with).
VENDOR = {
    "tfjs": {"tf.min.js": "@tensorflow/tfjs/dist/tf.min.js"},
    "onnxruntime-web": {name: f"onnxruntime-web/dist/{name}" for name in
                        ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")},
    "uplot": {name: f"uplot/dist/{name}" for name in ("uPlot.iife.min.js", "uPlot.min.css")},
}  # fmt: skip
MEDIA = {".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm", ".css": "text/css"}

# runtime -> the script tag of the demo page
SCRIPTS = {"tfjs": "/vendor/tfjs/tf.min.js", "onnxruntime-web": "/vendor/onnxruntime-web/ort.wasm.min.js"}
CDN = {"tfjs": "https://cdn.jsdelivr.net/npm/@tensorflow/tfjs/dist/tf.min.js",
       "onnxruntime-web": "https://cdn.jsdelivr.net/npm/onnxruntime-web/dist/ort.wasm.min.js"}  # fmt: skip


@cache
def client_js() -> tuple[bytes, str]:
    """The loader's bytes and their sha256 (its ETag): read once per process."""
    data = template_path("browser", "client.js").read_bytes()
    return data, hashlib.sha256(data).hexdigest()


async def client_route(request: Request) -> Response:
    data, tag = client_js()
    headers = {"ETag": quoted(tag), "Cache-Control": CLIENT_CACHE}
    if etag_matches(request.headers.get("if-none-match"), tag):
        return Response(status_code=304, headers=headers)
    return Response(data, media_type="text/javascript", headers=headers)


def vendor_path(package: str, name: str) -> Path | None:
    """A runtime file from node_modules, or None when it is not vendored or not installed."""
    relative = VENDOR.get(package, {}).get(name)
    path = NODE_MODULES / relative if relative else None
    return path if path is not None and path.is_file() else None


async def vendor_route(request: Request) -> Response:
    package, name = str(request.path_params["package"]), str(request.path_params["file"])
    path = vendor_path(package, name)
    if path is None:
        raise not_found(f"no vendored file {package[:40]}/{name[:80]}",
                        "only a checkout with node_modules (npm ci) serves the pages' scripts; "
                        "pages load tf.js, onnxruntime-web or uPlot from a CDN")  # fmt: skip
    return _WholeFile(path, media_type=MEDIA[path.suffix], headers={"Cache-Control": VENDOR_CACHE})


class _WholeFile(FileResponse):
    """The whole file, whatever Range the request sends: the demo's runtime files are small, and
    Starlette answers a malformed Range with a text/plain 400 (every refusal here is JSON)."""

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        headers = [(k, v) for k, v in scope.get("headers", []) if k.lower() not in (b"range", b"if-range")]
        await super().__call__({**scope, "headers": headers}, receive, send)


def demo_scripts(runtime: str | None) -> tuple[list[str], str]:
    """The runtime script tags of the demo page, and a note on what is missing."""
    wanted = [runtime] if runtime in SCRIPTS else list(SCRIPTS)
    tags, missing = [], []
    for name in wanted:
        package, file = SCRIPTS[name].split("/")[2:]
        if vendor_path(package, file) is not None:
            tags.append(f'<script src="{SCRIPTS[name]}"></script>')
        else:
            missing.append(name)
    note = ""
    if missing:
        note = (f"This server has no local copy of {' and '.join(missing)} (npm ci in the packager checkout); "
                f"a page of your own loads it from a CDN, e.g. {CDN[missing[0]]}.")  # fmt: skip
    return tags, note


async def demo_route(request: Request) -> Response:
    from packager.server.api import published

    model = path_name(request, "model", "m")
    view = service(request).view
    published(await run_in_threadpool(view.channel, model, "stable"), model, "stable")  # 404: nothing published
    runtime = request.query_params.get("runtime")
    tags, note = demo_scripts(runtime)
    page = fill(template_path("browser", "demo.html").read_text(),
                {"model": model, "runtime_scripts": "\n".join(tags), "note": html.escape(note)})  # fmt: skip
    return Response(page, media_type="text/html", headers={"Cache-Control": "no-cache"})


def chart_tags() -> tuple[str, str]:
    """The dashboard's uPlot stylesheet and script tags: this checkout's copy, else jsDelivr's
    pinned by its integrity hashes."""
    script, css = "uPlot.iife.min.js", "uPlot.min.css"
    if vendor_path("uplot", script) is not None and vendor_path("uplot", css) is not None:
        return (f'<link rel="stylesheet" href="/vendor/uplot/{css}">',
                f'<script src="/vendor/uplot/{script}"></script>')  # fmt: skip
    return cdn_chart_tags()
