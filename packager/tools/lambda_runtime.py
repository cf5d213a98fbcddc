"""Run a Lambda bundle here as Lambda runs it: the real runtime interface client (awslambdaric)
under the runtime's Python, polling a local Runtime API (2018-06-01) served from this process.
"""

from __future__ import annotations

import json
import os
import queue
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from packager.tools.local_server import QuietServer

PREFIX = "/2018-06-01/runtime"
# Puts the task root, the layers and the runtime client on sys.path (``-I`` ignores PYTHONPATH),
# then starts awslambdaric exactly as the Lambda bootstrap does.
BOOTSTRAP = """
import sys
sys.path[:0] = sys.argv[2:]
from awslambdaric.__main__ import main
main(["awslambdaric", sys.argv[1]])
"""


class LambdaInitError(RuntimeError):
    """The function failed before it could take an invocation."""


@dataclass
class _Invocation:
    id: str
    body: bytes
    done: threading.Event = field(default_factory=threading.Event)
    outcome: str = ""
    payload: bytes = b""


class RuntimeAPI:
    """The Runtime API on 127.0.0.1, one function process polling it."""

    def __init__(self, function_arn: str, timeout_s: float) -> None:
        self.function_arn = function_arn
        self.timeout_s = timeout_s
        self.pending: queue.Queue[_Invocation | None] = queue.Queue()
        self.active: dict[str, _Invocation] = {}
        self.first_poll = threading.Event()
        self.first_poll_at = 0.0
        self.init_error: bytes | None = None
        self.server: ThreadingHTTPServer = QuietServer(("127.0.0.1", 0), _handler_for(self))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        host, port = self.server.server_address[:2]
        return f"{host!s}:{port}"

    def invoke(self, event: Mapping[str, Any], timeout_s: float) -> tuple[str, Any]:
        item = _Invocation(id=str(uuid.uuid4()), body=json.dumps(event).encode())
        self.active[item.id] = item
        self.pending.put(item)
        if not item.done.wait(timeout_s):
            raise TimeoutError(f"the function did not answer within {timeout_s:.0f} s")
        del self.active[item.id]
        return item.outcome, json.loads(item.payload or b"null")

    def close(self) -> None:
        self.pending.put(None)
        self.server.shutdown()
        self.server.server_close()


def _handler_for(api: RuntimeAPI) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        wbufsize = -1  # buffer the response and send it in one write

        def setup(self) -> None:
            super().setup()
            # Without this, Nagle's algorithm holds small writes and each invoke costs ~40-90 ms.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def log_message(self, format: str, *args: Any) -> None:
            return

        def do_GET(self) -> None:
            if self.path != f"{PREFIX}/invocation/next":
                self._reply(404, b'{"errorMessage": "not found"}')
                return
            if not api.first_poll.is_set():
                api.first_poll_at = time.perf_counter()
                api.first_poll.set()
            item = api.pending.get()
            if item is None:  # shutting down
                api.pending.put(None)
                self.close_connection = True
                return
            deadline = int((time.time() + api.timeout_s) * 1000)
            self._reply(200, item.body, {
                "Lambda-Runtime-Aws-Request-Id": item.id,
                "Lambda-Runtime-Deadline-Ms": str(deadline),
                "Lambda-Runtime-Invoked-Function-Arn": api.function_arn,
                "Lambda-Runtime-Trace-Id": f"Root=1-{int(time.time()):08x}-{item.id.replace('-', '')[:24]}",
            })  # fmt: skip

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            parts = self.path.removeprefix(PREFIX).strip("/").split("/")
            if parts == ["init", "error"]:
                api.init_error = body
            elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                item = api.active.get(parts[1])
                if item is None:
                    self._reply(400, b'{"errorMessage": "unknown request id"}')
                    return
                item.outcome, item.payload = parts[2], body
                item.done.set()
            else:
                self._reply(404, b'{"errorMessage": "not found"}')
                return
            self._reply(202, b'{"status": "OK"}')

        def _reply(self, status: int, body: bytes, headers: Mapping[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

    return Handler


WALL_FACTOR = 6  # the wall-clock cap on an init, as a multiple of its CPU limit


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (Linux /proc), None where unreadable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


class LocalFunction:
    """A function started from an unpacked bundle; init time is measured to its first poll."""

    def __init__(self, *, python: Path, task_root: Path, paths: Sequence[Path], handler: str,
                 runtime: str, memory_mb: int, timeout_s: float, env: Mapping[str, str] | None = None,
                 init_limit_s: float = 10.0) -> None:  # fmt: skip
        name = "packager-local"
        self.api = RuntimeAPI(f"arn:aws:lambda:us-east-1:000000000000:function:{name}", timeout_s)
        environment = {
            "AWS_LAMBDA_RUNTIME_API": self.api.address, "LAMBDA_TASK_ROOT": str(task_root),
            "_HANDLER": handler, "AWS_EXECUTION_ENV": f"AWS_Lambda_{runtime}",
            "AWS_LAMBDA_FUNCTION_NAME": name, "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb), "AWS_REGION": "us-east-1",
            "AWS_DEFAULT_REGION": "us-east-1", "TZ": ":UTC", "LANG": "en_US.UTF-8", "PATH": "/usr/bin:/bin",
            "POWERTOOLS_METRICS_NAMESPACE": "packager-local", "LAMBDA_DISABLE_PREVIEW_WARN": "1",
            **(env or {}),
        }  # fmt: skip
        command = [str(python), "-I", "-c", BOOTSTRAP, handler, str(task_root), *map(str, paths)]
        self.log = (task_root.parent / "function.log").open("w+b")
        started = time.perf_counter()
        self.process = subprocess.Popen(command, cwd=task_root, env=environment, stdin=subprocess.DEVNULL,
                                        stdout=self.log, stderr=subprocess.STDOUT)  # fmt: skip
        self.init_ms = self._wait_for_init(started, init_limit_s)

    def _wait_for_init(self, started: float, limit_s: float) -> float:
        """The init's CPU milliseconds to its first poll; LambdaInitError past ``limit_s`` of it.

        Lambda's init phase has a whole vCPU for its 10 s. Here the wall clock also counts what
        else the machine runs (a test suite beside it, a browser), so the limit is applied to the
        init's own CPU time (user + system, from /proc), with the wall clock capped at
        ``WALL_FACTOR`` times the limit; ``init_wall_ms`` keeps the wall time. Without /proc the
        wall clock is the measure."""
        wall_deadline = started + limit_s * (WALL_FACTOR if _cpu_seconds(self.process.pid) is not None else 1)
        self.init_wall_ms = 0.0
        while time.perf_counter() < wall_deadline:
            if self.api.first_poll.wait(0.05):
                self.init_wall_ms = round((self.api.first_poll_at - started) * 1000.0, 1)
                used = _cpu_seconds(self.process.pid)
                return self.init_wall_ms if used is None else round(used * 1000.0, 1)
            if self.api.init_error is not None or self.process.poll() is not None:
                break
            used = _cpu_seconds(self.process.pid)
            if used is not None and used > limit_s:
                break
        reason = self._failure(f"did not finish init within {limit_s:.0f} s (Lambda's limit)")
        self.close()
        raise LambdaInitError(reason)

    def _failure(self, default: str) -> str:
        if self.api.init_error:
            try:
                error = json.loads(self.api.init_error)
                return f"init failed: {error.get('errorType')}: {error.get('errorMessage')}"
            except json.JSONDecodeError:
                pass
        self.log.seek(0)
        tail = self.log.read().decode(errors="replace").strip().splitlines()[-1:]
        return f"init failed: {tail[0][:300]}" if tail else default

    def invoke(self, event: Mapping[str, Any], timeout_s: float = 60.0) -> Any:
        outcome, payload = self.api.invoke(event, timeout_s)
        if outcome != "response":
            raise RuntimeError(f"the handler raised {payload.get('errorType')}: {payload.get('errorMessage')}")
        return payload

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.api.close()
        self.log.close()


def http_event(method: str, path: str, body: str | None = None) -> dict[str, Any]:
    """An API Gateway HTTP API (payload 2.0) event, as the HTTP API sends it."""
    now = time.time()
    event: dict[str, Any] = {
        "version": "2.0", "routeKey": "$default", "rawPath": path, "rawQueryString": "",
        "headers": {"content-type": "application/json", "host": "localhost"},
        "requestContext": {
            "accountId": "000000000000", "apiId": "local", "domainName": "localhost", "domainPrefix": "local",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                     "userAgent": "packager"},
            "requestId": str(uuid.uuid4()), "routeKey": "$default", "stage": "$default",
            "time": time.strftime("%d/%b/%Y:%H:%M:%S +0000", time.gmtime(now)), "timeEpoch": int(now * 1000),
        },
        "isBase64Encoded": False,
    }  # fmt: skip
    if body is not None:
        event["body"] = body
    return event
