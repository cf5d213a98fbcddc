"""Headless Chromium running a page of a bundle, as a browser would load it: the page is served
from 127.0.0.1 and loads the runtime with a <script> tag; playwright-core (npm) drives it."""

from __future__ import annotations

import atexit
import functools
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping
from http.server import SimpleHTTPRequestHandler
from pathlib import Path
from typing import Any

import numpy as np

from packager.target import RuntimeUnavailable
from packager.tools.local_server import QuietServer

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).resolve().parents[1] / "resources" / "browser_driver.mjs"
CHROMIUM = ("chromium", "chromium-browser", "google-chrome")
ANSWER_TIMEOUT_S = 300.0  # a page that takes longer to load or to answer one request is stopped


def node_modules() -> Path | None:
    """The npm packages the set-up installed (package.json at the checkout's root)."""
    folder = ROOT / "node_modules"
    return folder if (folder / "playwright-core").is_dir() else None


def npm_file(package: str, *parts: str) -> Path:
    folder = node_modules()
    path = folder.joinpath(package, *parts) if folder else None
    if path is None or not path.is_file():
        from packager.errors import MissingDependencyError

        raise MissingDependencyError(
            f"the npm package {package} is not installed (needed: {'/'.join(parts)})",
            hint="run `npm ci` in the packager checkout (make setup does)",
        )
    return path


def npm_version(package: str) -> str:
    folder = node_modules()
    if folder is None:
        return "?"
    return str(json.loads((folder / package / "package.json").read_text())["version"])


def find_chromium() -> str | None:
    for name in CHROMIUM:
        found = shutil.which(name)
        if found:
            return found
    return None


@functools.cache
def chromium_version(executable: str) -> str:
    """'156.0.8078.79' from ``chromium --version`` (the user agent hides the minor numbers)."""
    try:
        done = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=30, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return "?"
    words = [w for w in done.stdout.split() if w[:1].isdigit()]
    return words[0] if words else "?"


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        return

    def end_headers(self) -> None:
        # Revalidate, never store: with "no-store", headless Chromium stalled loading a model of
        # more than six 4 MB shards (MiniLM's 22: six requests reached the server, then nothing
        # for 300 s); with "no-cache" it loads in a second. Each page's own origin keeps pages apart.
        self.send_header("Cache-Control", "no-cache")
        super().end_headers()


_idle: list[subprocess.Popen[str]] = []  # shared browsers no page holds (at most one is kept)
_idle_lock = threading.Lock()


@atexit.register
def _close_idle() -> None:
    with _idle_lock:
        while _idle:
            _stop(_idle.pop())


_profiles: dict[int, str] = {}  # driver pid -> its Chromium profile folder, removed once it has stopped


def _stop(process: subprocess.Popen[str]) -> None:
    if process.poll() is None:
        if process.stdin:
            process.stdin.close()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            _kill(process)
    _reap(process)


def _kill(process: subprocess.Popen[str]) -> None:
    """Stop the driver and the Chromium it started, so nothing is left running or writing to the
    profile: SIGTERM first (Playwright then closes the browser, which runs in a process group of
    its own), then SIGKILL to the driver's group."""
    process.terminate()
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            process.kill()


def _reap(process: subprocess.Popen[str]) -> None:
    """Wait for a stopped driver and remove its profile folder (Chromium writes ~100 MB there)."""
    process.wait()
    profile = _profiles.pop(process.pid, "")
    for _ in range(20 if profile else 0):  # Chromium's last processes may still be closing files
        shutil.rmtree(profile, ignore_errors=True)
        if not os.path.exists(profile):
            break
        time.sleep(0.1)


class BrowserPage:
    """A static folder served on 127.0.0.1 and one page of it open in headless Chromium; or, with
    ``folder=None``, the page at the URL ``page`` (served by someone else).

    ``shared=True`` opens the page in a browser an earlier shared page left open, when there is
    one, and leaves the browser open for the next one on close: starting Chromium costs more than
    checking a small model in it. Each folder is served from a new origin with ``no-cache``, so
    nothing of one page is cached for another. Pages that test the browser's own caches (Cache
    Storage, a second load) use a browser of their own (the default).
    """

    def __init__(self, folder: Path | None, page: str, *, shared: bool = False) -> None:
        chromium, node = find_chromium(), shutil.which("node")
        if chromium is None:
            raise RuntimeUnavailable("no Chromium here (apt-get install chromium) to run the page in")
        if node is None or node_modules() is None:
            raise RuntimeUnavailable("no Node.js with playwright-core here (npm ci) to drive Chromium")
        self.server: QuietServer | None = None
        url = page
        if folder is not None:
            handler = functools.partial(_QuietHandler, directory=str(folder))
            self.server = QuietServer(("127.0.0.1", 0), handler)
            threading.Thread(target=self.server.serve_forever, daemon=True).start()
            url = f"http://127.0.0.1:{self.server.server_address[1]}/{page}"
        self.shared = shared
        reused = None
        if shared:
            with _idle_lock:
                while _idle and reused is None:
                    candidate = _idle.pop()
                    if candidate.poll() is None:
                        reused = candidate
                    else:  # it died while idle: its profile goes
                        _reap(candidate)
        if reused is not None:
            self.process = reused
            first = self._ask({"goto": url})
        else:
            # The driver answers errors on stdout; its stderr, a pipe no one reads, would fill and
            # stop it mid-answer.
            profile = tempfile.mkdtemp(prefix="packager-chromium-")
            self.process = subprocess.Popen([node, str(DRIVER), url, chromium, profile], cwd=ROOT,
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                                            text=True, start_new_session=True)  # fmt: skip
            _profiles[self.process.pid] = profile
            first = self._read()
        if "ready" not in first:
            self.close()
            raise RuntimeError(first.get("error", "the browser page failed") + _console(first))
        self.ready: dict[str, Any] = first["ready"]
        self.chromium = chromium_version(chromium)

    def goto(self, url: str) -> dict[str, Any]:
        """Open ``url`` in the same browser profile (its caches and storage kept); its ready value."""
        answer = self._ask({"goto": url})
        if "ready" not in answer:
            raise RuntimeError(answer.get("error", "the browser page failed") + _console(answer))
        self.ready = answer["ready"]
        return self.ready

    def _ask(self, request: Mapping[str, Any]) -> dict[str, Any]:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(request) + "\n")
        self.process.stdin.flush()
        return self._read()

    def _read(self) -> dict[str, Any]:
        """The driver's next answer (one line); a hang in the page is stopped after ANSWER_TIMEOUT_S."""
        assert self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], ANSWER_TIMEOUT_S)
        if not ready:
            _kill(self.process)  # never handed to another page
            _reap(self.process)
            return {"error": f"the page did not answer within {ANSWER_TIMEOUT_S:g} s (the browser was stopped)"}
        line = self.process.stdout.readline()
        if not line:
            _reap(self.process)
            return {"error": "the browser driver exited with no answer"}
        return json.loads(line)

    def screenshot(self, path: Path) -> Path:
        """The whole page as a PNG at ``path`` (CSS pixels: the page's viewport is at scale 1)."""
        answer = self._ask({"screenshot": str(path)})
        if "saved" not in answer:
            raise RuntimeError(answer.get("error", "no screenshot from the page") + _console(answer))
        return path

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        answer = self._ask({"inputs": _payload(inputs)})
        if "outputs" not in answer:
            raise RuntimeError(answer.get("error", "no answer from the page") + _console(answer))
        return _arrays(answer["outputs"])

    def close(self) -> None:
        kept = False
        if self.shared and self.process.poll() is None:
            with _idle_lock:
                if not _idle:
                    _idle.append(self.process)
                    kept = True
        if not kept:
            _stop(self.process)
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


def prelaunch() -> None:
    """Start the shared browser now (on a blank page), for the shared pages opened later."""
    with _idle_lock:
        if _idle:
            return
    BrowserPage(None, "about:blank", shared=True).close()


def _payload(inputs: Mapping[str, np.ndarray]) -> dict[str, Any]:
    return {name: {"shape": list(a.shape), "dtype": a.dtype.name, "data": a.reshape(-1).tolist()}
            for name, a in inputs.items()}  # fmt: skip


def _arrays(outputs: Mapping[str, Any]) -> dict[str, np.ndarray]:
    return {name: np.asarray(o["data"], dtype=o.get("dtype", "float32")).reshape(o["shape"])
            for name, o in outputs.items()}  # fmt: skip


def _console(answer: Mapping[str, Any]) -> str:
    lines = answer.get("console") or []
    return f" (page console: {' | '.join(lines)})" if lines else ""
