"""Resolve requests/s and p99 of `packager serve` against nginx serving a static JSON file of the
same size, on this machine, in one run: the ratio (ours / nginx) is the figure to compare.

    python bench/manifest_server.py [BUILD_DIR] [--seconds 10] [--connections 32]
                                    [--out bench/results/manifest_server.json]

BUILD_DIR is a version folder holding build.json (default: a tiny onnx + static-lib build of the
tests' MLP, made in a temp folder). Both servers run one worker on 127.0.0.1; wrk (one thread)
drives each in turn for the same duration and connections. Ours answers POST /resolve with a
device profile (a wrk Lua script); nginx answers GET of a file holding the same response bytes.
A third server frames the result: a bare ASGI app on the same uvicorn (uvloop + httptools) that
answers the same POST with the same bytes and does nothing else, the ceiling of any Python
service on this stack with one worker. Needs wrk and nginx (`make system-tools`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PROFILE = {"platform": "linux", "arch": "x86_64", "device_id": "bench-device", "memory_mb": 2048,
           "runtimes": {"onnxruntime": "1.20", "c": "c99"}, "latency_budget_ms": 5}  # fmt: skip
FLOOR_APP = """
RESPONSE = open(__file__.replace("floor.py", "www/resolve.json"), "rb").read()
HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(RESPONSE)).encode())]


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": RESPONSE})
"""
NGINX_CONF = """daemon off;
worker_processes 1;
pid {tmp}/nginx.pid;
error_log {tmp}/error.log warn;
events {{ worker_connections 1024; }}
http {{
  access_log off;
  client_body_temp_path {tmp}/body; proxy_temp_path {tmp}/proxy; fastcgi_temp_path {tmp}/fastcgi;
  uwsgi_temp_path {tmp}/uwsgi; scgi_temp_path {tmp}/scgi;
  types {{ application/json json; }}
  server {{ listen 127.0.0.1:{port}; root {tmp}/www; }}
}}
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, proc: subprocess.Popen[bytes], data: bytes | None = None) -> bytes:
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, data=data), timeout=5) as response:
                return bytes(response.read())
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{url} did not come up") from None
            time.sleep(0.1)


def make_build(tmp: Path) -> Path:
    sys.path.insert(0, str(ROOT / "tests" / "data"))
    import models
    import numpy as np

    model = models.make_onnx_mlp(tmp)
    x, _ = models.digits(200)
    np.savez(tmp / "samples.npz", x=x / 16.0)
    subprocess.run([sys.executable, "-m", "packager", "build", str(model), "-t", "onnx", "-t", "static-lib",
                    "--samples", str(tmp / "samples.npz"), "--out", str(tmp / "dist")], check=True)  # fmt: skip
    return tmp / "dist" / "mlp" / "1"


def wrk(url: str, seconds: int, connections: int, script: Path | None) -> dict[str, Any]:
    command = [
        "wrk",
        "-t1",
        f"-c{connections}",
        f"-d{seconds}s",
        "--latency",
        *(["-s", str(script)] if script else []),
        url,
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return {"requests_per_s": rps, "p99_ms": float(p99.group(1)) * scale,  # type: ignore[union-attr]
            "non_2xx": int(errors.group(1)) if errors else 0, "wrk": out}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("build", type=Path, nargs="?", help="a version folder holding build.json")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "manifest_server.json")
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: run `make system-tools`")
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)  # nginx's worker (nobody, when started as root) reads www/ under it
        build = args.build or make_build(tmp)
        registry = tmp / "registry"
        subprocess.run([sys.executable, "-m", "packager", "publish", str(build), "--registry", str(registry),
                        "--cloud-url", "https://infer.example.com"], check=True, stdout=subprocess.DEVNULL)  # fmt: skip
        ours_port, nginx_port = free_port(), free_port()
        serve = subprocess.Popen([sys.executable, "-m", "packager", "serve", "--registry", str(registry),
                                  "--port", str(ours_port)], env={**os.environ, "PYTHONHASHSEED": "0"})  # fmt: skip
        nginx = floor = None
        try:
            url = f"http://127.0.0.1:{ours_port}/v1/models/mlp/resolve"
            body = json.dumps(PROFILE)
            response = wait_for(url, serve, body.encode())
            (tmp / "www").mkdir()
            (tmp / "www" / "resolve.json").write_bytes(response)
            (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, port=nginx_port))
            nginx = subprocess.Popen(["nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp)])
            static = f"http://127.0.0.1:{nginx_port}/resolve.json"
            assert wait_for(static, nginx) == response
            (tmp / "floor.py").write_text(FLOOR_APP)
            floor_port = free_port()
            floor = subprocess.Popen([sys.executable, "-m", "uvicorn", "floor:app", "--app-dir", str(tmp), "--host",
                                      "127.0.0.1", "--port", str(floor_port), "--loop", "uvloop", "--http",
                                      "httptools", "--no-access-log", "--log-level", "warning"])  # fmt: skip
            bare = f"http://127.0.0.1:{floor_port}/"
            assert wait_for(bare, floor, body.encode()) == response
            script = tmp / "post.lua"
            script.write_text(f'wrk.method = "POST"\nwrk.body = {json.dumps(body)}\n'
                              'wrk.headers["Content-Type"] = "application/json"\n')  # fmt: skip
            wrk(url, 2, args.connections, script)  # warm-up
            ours = wrk(url, args.seconds, args.connections, script)
            theirs = wrk(static, args.seconds, args.connections, None)
            wrk(bare, 2, args.connections, script)
            ceiling = wrk(bare, args.seconds, args.connections, script)
        finally:
            for proc in (serve, nginx, floor):
                if proc is not None:
                    proc.terminate()
                    proc.wait(15)
    result = {
        "what": "POST /v1/models/mlp/resolve on `packager serve` (uvicorn, one worker) vs nginx (one worker) "
                "serving a static file of the same bytes; wrk, one thread, loopback",
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "seconds": args.seconds, "connections": args.connections, "response_bytes": len(response),
        "ours": {k: v for k, v in ours.items() if k != "wrk"}, "nginx": {k: v for k, v in theirs.items() if k != "wrk"},
        "ratio_requests_per_s": round(ours["requests_per_s"] / theirs["requests_per_s"], 3),
        "ratio_p99": round(ours["p99_ms"] / theirs["p99_ms"], 3), "goal_ratio_requests_per_s": 0.5,
        "python_floor": {k: v for k, v in ceiling.items() if k != "wrk"},
        "ratio_python_floor_to_nginx": round(ceiling["requests_per_s"] / theirs["requests_per_s"], 3),
        "ratio_ours_to_python_floor": round(ours["requests_per_s"] / ceiling["requests_per_s"], 3),
    }  # fmt: skip
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
