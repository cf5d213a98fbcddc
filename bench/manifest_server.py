"""Resolve requests/s and p99 of `packager serve` against nginx serving a static JSON file of the
same size, on this machine, in one run: the ratio (ours / nginx) is the figure to compare.

    python bench/manifest_server.py [BUILD_DIR] [--seconds 10] [--connections 32] [--rounds 3]
                                    [--profiles 1000] [--out bench/results/manifest_server.json]

BUILD_DIR is a version folder holding build.json (default: a tiny onnx + static-lib build of the
tests' MLP, made in a temp folder). It is published as version 1 and, copied, as version 2, rolled
out to 10% of devices: every resolve hashes its device id into a cohort. wrk (one thread, the same
connections and duration for every server) POSTs device profiles drawn by the resolve tests'
generator (tests/server/profiles.py), each with its own device_id, in turn from a Lua table.

Servers, one worker each, all on 127.0.0.1:
  ours            `packager serve` (uvicorn on uvloop, one process, resolve answered by its protocol)
  nginx           a static file of our mean response's size, for the same POSTs (the same client
                  work per request as ours; error_page turns nginx's 405 for a POST into the file)
  nginx_get       the same file for a plain GET (no Lua): nginx's best case, and wrk's
  floor_protocol  a bare asyncio protocol on uvloop with httptools' parser that answers the same
                  bytes once the body is in: the ceiling of a Python handler on this event loop
  floor_asgi      a bare ASGI app on uvicorn (httptools, uvloop) that reads the body and answers
                  the same bytes: the ceiling of any ASGI app on one uvicorn worker
Each round runs every server once, in that order, after a warm-up; the figures are each server's
median round. The server's CPU time per request (its processes' user + system time over the run)
is less sensitive to what else the machine runs than requests/s; the load average before and
after is recorded for that reason. Needs wrk and nginx (`make system-tools`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
GOAL = 0.5  # resolve requests/s at least half of nginx's for the static file (issue 6)
FLOOR_APP = """
import asyncio
import sys

import httptools
import uvloop

RESPONSE = open(__file__.replace("floor.py", "www/resolve.json"), "rb").read()
HEAD = b"HTTP/1.1 200 OK\\r\\ncontent-type: application/json\\r\\ncontent-length: %d\\r\\n\\r\\n" % len(RESPONSE)
ASGI_HEADERS = [(b"content-type", b"application/json"), (b"content-length", str(len(RESPONSE)).encode())]


async def asgi(scope, receive, send):
    if scope["type"] != "http":
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    await send({"type": "http.response.start", "status": 200, "headers": ASGI_HEADERS})
    await send({"type": "http.response.body", "body": RESPONSE})


class Protocol(asyncio.Protocol):
    def connection_made(self, transport):
        self.transport, self.parser = transport, httptools.HttpRequestParser(self)

    def data_received(self, data):
        self.parser.feed_data(data)

    def on_message_complete(self):
        self.transport.write(HEAD + RESPONSE)


async def protocol(port):
    server = await asyncio.get_running_loop().create_server(Protocol, "127.0.0.1", port)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(protocol(int(sys.argv[1])))
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
  server {{
    listen 127.0.0.1:{port};
    root {tmp}/www;
    default_type application/json;
    location = {path} {{ error_page 405 =200 /resolve.json; return 405; }}
  }}
}}
"""
LUA = """wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local bodies = {{
{bodies}
}}
local requests = {{}}
local i = 0
init = function(args)
  for k, body in ipairs(bodies) do requests[k] = wrk.format(nil, nil, nil, body) end
end
request = function()
  i = i % #requests + 1
  return requests[i]
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for(url: str, proc: subprocess.Popen[bytes], data: bytes | None = None) -> bytes:
    deadline = time.monotonic() + 60
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


def make_registry(build: Path, tmp: Path) -> tuple[Path, str]:
    """``build`` as version 1 and a copy as version 2, rolled out to 10% of devices; and the model."""
    registry = tmp / "registry"
    second = tmp / "v2" / build.parent.name / "2"
    shutil.copytree(build, second)
    record = json.loads((second / "build.json").read_text())
    record["model"]["version"] = "2"
    (second / "build.json").write_text(json.dumps(record, indent=1))
    model = record["model"]["name"]
    for command in (["publish", str(build)], ["publish", str(second)], ["rollout", model, "--version", "2",
                                                                         "--percent", "10"]):  # fmt: skip
        extra = ["--cloud-url", "https://infer.example.com"] if command[0] == "publish" else []
        subprocess.run([sys.executable, "-m", "packager", *command, "--registry", str(registry), *extra], check=True,
                       stdout=subprocess.DEVNULL)  # fmt: skip
    return registry, model


def profiles(count: int) -> list[bytes]:
    sys.path.insert(0, str(ROOT / "tests" / "server"))
    from profiles import random_profile

    rng = random.Random(6)
    return [json.dumps(random_profile(rng, i), separators=(",", ":")).encode() for i in range(count)]


def lua_script(bodies: list[bytes]) -> str:
    for body in bodies:
        assert b"]=]" not in body
    return LUA.format(bodies="\n".join(f"  [=[{body.decode()}]=]," for body in bodies))


def cpu_seconds(pid: int) -> float:
    """User + system time of ``pid`` and its descendants (Linux /proc)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            children.setdefault(int(fields[1]), []).append(int(entry))
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        todo += children.get(current, [])
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])
        except OSError:
            continue
    return total / os.sysconf("SC_CLK_TCK")


def wrk(url: str, seconds: int, connections: int, script: Path | None, pid: int | None = None) -> dict[str, Any]:
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s", "--latency",
               *(["-s", str(script)] if script else []), url]  # fmt: skip
    before = cpu_seconds(pid) if pid else 0.0
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    used = cpu_seconds(pid) - before if pid else 0.0
    total = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p99 = re.search(r"99%\s+([\d.]+)(us|ms|s)", out)
    scale = {"us": 0.001, "ms": 1.0, "s": 1000.0}[p99.group(2)]  # type: ignore[union-attr]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    sockets = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    return {"requests_per_s": rps, "p99_ms": round(float(p99.group(1)) * scale, 3),  # type: ignore[union-attr]
            "server_cpu_us_per_request": round(used / total * 1e6, 1) if pid else None,
            "non_2xx": int(errors.group(1)) if errors else 0,
            "socket_errors": sum(int(n) for n in sockets.groups()) if sockets else 0}  # fmt: skip


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` (Linux /proc), in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError(f"no VmRSS for {pid}")


def median_round(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    ranked = sorted(rounds, key=lambda r: r["requests_per_s"])
    middle = ranked[(len(ranked) - 1) // 2]
    return {**middle, "rounds_requests_per_s": [r["requests_per_s"] for r in rounds],
            "rounds_p99_ms": [r["p99_ms"] for r in rounds]}  # fmt: skip


def versions() -> dict[str, str]:
    import httptools
    import uvicorn
    import uvloop

    nginx = subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True).stdout.splitlines()[0]
    return {"uvicorn": uvicorn.__version__, "httptools": httptools.__version__, "uvloop": uvloop.__version__,
            "nginx": nginx.removeprefix("nginx version: "),
            "wrk": wrk_version.split(" [")[0], "python": platform.python_version()}  # fmt: skip


def start(command: list[str], **kwargs: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen(command, start_new_session=True, **kwargs)


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    proc.wait(15)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("build", type=Path, nargs="?", help="a version folder holding build.json")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--profiles", type=int, default=1000)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "manifest_server.json")
    args = parser.parse_args()
    for tool in ("wrk", "nginx"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed: run `make system-tools`")
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        tmp.chmod(0o755)  # nginx's worker (nobody, when started as root) reads www/ under it
        registry, model = make_registry(args.build or make_build(tmp), tmp)
        bodies = profiles(args.profiles)
        script = tmp / "profiles.lua"
        script.write_text(lua_script(bodies))
        procs: list[subprocess.Popen[bytes]] = []
        try:
            result = run_servers(tmp, registry, f"/v1/models/{model}/resolve", bodies, script, args, procs)
        finally:
            for proc in procs:
                stop(proc)
    result["load_average_before_after"] = [round(load_before[0], 2), round(os.getloadavg()[0], 2)]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(json.dumps(result, indent=1))


def run_servers(tmp: Path, registry: Path, path: str, bodies: list[bytes], script: Path, args: argparse.Namespace,
                procs: list[subprocess.Popen[bytes]]) -> dict[str, Any]:  # fmt: skip
    ports = {name: free_port() for name in ("ours", "nginx", "floor_protocol", "floor_asgi")}
    ours = start([sys.executable, "-m", "packager", "serve", "--registry", str(registry), "--port", str(ports["ours"])])
    procs.append(ours)
    url = f"http://127.0.0.1:{ports['ours']}{path}"
    wait_for(url, ours, bodies[0])
    sizes = {}
    for body in bodies:  # every profile once: all answer 200, and the classes are warm
        sizes[body] = len(wait_for(url, ours, body))
    mean = sum(sizes.values()) / len(sizes)
    # an answer of ours at the mean size (answers are ~300 bytes or over 1 KB), padded with the blanks
    # JSON allows before its closing brace: nginx sends as many bytes per request as ours on average
    response = wait_for(url, ours, max((b for b in bodies if sizes[b] <= mean), key=lambda b: sizes[b]))
    response = response[:-1] + b" " * (round(mean) - len(response)) + response[-1:]
    (tmp / "www").mkdir()
    (tmp / "www" / "resolve.json").write_bytes(response)
    (tmp / "nginx.conf").write_text(NGINX_CONF.format(tmp=tmp, port=ports["nginx"], path=path))
    procs.append(nginx := start(["nginx", "-c", str(tmp / "nginx.conf"), "-p", str(tmp)]))
    static = f"http://127.0.0.1:{ports['nginx']}{path}"
    assert wait_for(static, nginx, b"{}") == response
    (tmp / "floor.py").write_text(FLOOR_APP)
    floors = {
        "floor_protocol": [sys.executable, str(tmp / "floor.py"), str(ports["floor_protocol"])],
        "floor_asgi": [sys.executable, "-m", "uvicorn", "--app-dir", str(tmp), "--port", str(ports["floor_asgi"]),
                       "--http", "httptools", "--loop", "uvloop", "--interface", "asgi3", "--lifespan", "off",
                       "--no-access-log", "--log-level", "warning", "floor:asgi"],
    }  # fmt: skip
    servers = {}
    for name, command in floors.items():
        procs.append(proc := start(command))
        servers[name] = (f"http://127.0.0.1:{ports[name]}{path}", proc)
        assert wait_for(servers[name][0], proc, bodies[0]) == response
    runs: dict[str, Callable[[int], dict[str, Any]]] = {
        "ours": lambda s: wrk(url, s, args.connections, script, ours.pid),
        "nginx": lambda s: wrk(static, s, args.connections, script, nginx.pid),
        "nginx_get": lambda s: wrk(static.replace(path, "/resolve.json"), s, args.connections, None, nginx.pid),
        **{name: (lambda s, u=u, p=p: wrk(u, s, args.connections, script, p.pid)) for name, (u, p) in servers.items()},
    }
    rounds: dict[str, list[dict[str, Any]]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            run(2)  # warm-up
            rounds[name].append(run(args.seconds))
    figures = {name: median_round(done) for name, done in rounds.items()}
    # the memory bar: after the rounds (warm), one 20 s run; RSS may grow at most 10%, with no error
    before = rss_mb(ours.pid)
    soak = wrk(url, 20, args.connections, script, ours.pid)
    after = rss_mb(ours.pid)
    memory = {"rss_mb_before": before, "rss_mb_after": after, "growth": round(after / before - 1, 4),
              "non_2xx": soak["non_2xx"], "socket_errors": soak["socket_errors"], "seconds": 20,
              "goal": "growth <= 0.10 with 0 errors",
              "goal_met": after <= before * 1.10 and soak["non_2xx"] == 0 and soak["socket_errors"] == 0}  # fmt: skip
    return {**report(figures, args, path, len(response), mean, bodies), "memory_20s": memory}


def report(figures: dict[str, dict[str, Any]], args: argparse.Namespace, path: str, response_bytes: int,
           mean: float, bodies: list[bytes]) -> dict[str, Any]:  # fmt: skip
    def ratio(a: str, b: str, key: str = "requests_per_s") -> float:
        return round(figures[a][key] / figures[b][key], 3)

    return {
        "what": f"POST {path} on `packager serve` (uvicorn on uvloop, one process, resolve in its protocol) with "
                f"{len(bodies)} generated device profiles (distinct device_ids, a 10% rollout in progress) vs nginx "
                "(one worker) answering the same POSTs with a static file of our mean response size; wrk, "
                "one thread, loopback",
        "machine": {"cpu_count": os.cpu_count(), "platform": platform.platform()}, "versions": versions(),
        "seconds": args.seconds, "connections": args.connections, "rounds": args.rounds,
        "response_bytes": response_bytes, "response_bytes_mean_ours": round(mean, 1),
        "request_bytes_median": sorted(map(len, bodies))[len(bodies) // 2],
        "goal_ratio_requests_per_s": GOAL,
        "ratio_requests_per_s": ratio("ours", "nginx"), "goal_met": ratio("ours", "nginx") >= GOAL,
        "ratio_p99": ratio("ours", "nginx", "p99_ms"),
        "ratio_requests_per_s_vs_nginx_get": ratio("ours", "nginx_get"),
        "ratio_floor_protocol_to_nginx": ratio("floor_protocol", "nginx"),
        "ratio_floor_asgi_to_nginx": ratio("floor_asgi", "nginx"),
        "ratio_ours_to_floor_protocol": ratio("ours", "floor_protocol"),
        **figures,
    }  # fmt: skip


if __name__ == "__main__":
    main()
