"""Steps run in a child process: a converter that crashes, hangs or prints costs its step only.

One worker process serves a build's steps one at a time, so TensorFlow or torch is imported
once per build, not once per step. Each step's stdout and stderr (down to the descriptors, where
TensorFlow's C++ logging writes) go to that step's log file; its working folder and TMPDIR are a
private folder inside the build's scratch area, so converters that write next to themselves
leave nothing outside ``--out``. A step that raises a PackagerError raises it again here as it
was; any other exception becomes a ConversionError naming the step. A signal (SIGILL from a
kernel this CPU lacks, SIGSEGV) or a timeout kills the worker; the next step gets a new one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import multiprocessing
import os
import pickle
import signal
import sys
import tempfile
import traceback
from collections.abc import Iterator
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from packager.errors import ConversionError, PackagerError, first_line
from packager.target import Step, StepContext

# Set in the worker before any converter is imported. oneDNN's kernels are TensorFlow's default
# on x86, and some of them (transposed convolutions) die with SIGILL on AVX-512 server CPUs.
WORKER_ENV = {
    "TF_ENABLE_ONEDNN_OPTS": "0",
    "TF_CPP_MIN_LOG_LEVEL": "3",
    "TFDF_DISABLE_WELCOME_MESSAGE": "1",
    "PYTHONWARNINGS": "ignore",
    "CUDA_VISIBLE_DEVICES": "",
}


@dataclass(frozen=True, kw_only=True)
class Outcome:
    """What a step run in the worker gives back."""

    artifact: Path
    notes: list[str] = field(default_factory=list)
    checks: list[dict[str, Any]] = field(default_factory=list)


def isolatable(step: Step) -> bool:
    """Whether the step's function can be sent to another process (a plugin's closure cannot)."""
    try:
        pickle.dumps(step.run)
    except (pickle.PicklingError, AttributeError, TypeError):
        return False
    return True


def _discard(text: str) -> None:
    """The log of a context on its way to the worker, which puts its own in place."""


class Worker:
    """A child process that runs steps; started on first use, replaced after a crash."""

    def __init__(self, home: Path, timeout_s: float) -> None:
        self.home = home
        self.timeout_s = timeout_s
        self._process: Any = None
        self._conn: Connection | None = None

    def run(self, step: Step, ctx: StepContext, log_path: Path) -> Outcome:
        """Run ``step`` with ``ctx`` in the worker; raise a PackagerError when it fails."""
        with _naming_log(log_path):
            return self._run(step, ctx, log_path)

    def call(self, label: str, fn: Any, args: tuple[Any, ...], log_path: Path, cwd: Path) -> Any:
        """``fn(*args)`` in the worker, in ``cwd``, its output in ``log_path``: how the importer and
        the source model's reference run reach the frameworks (torch, TensorFlow, scikit-learn)
        without the parent importing them. Fails as a step does."""
        with _naming_log(log_path):
            return self._send(label, ("call", fn, args), log_path, cwd)[0]

    def _run(self, step: Step, ctx: StepContext, log_path: Path) -> Outcome:
        self.home.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=f"{step.name}-", dir=self.home))
        sent = dataclasses.replace(ctx, log=_discard, checks=[])
        artifact, notes, checks = self._send(step.name, ("step", step.run, sent), log_path, workdir, ctx.log)
        return Outcome(artifact=Path(artifact), notes=notes, checks=checks)

    def _send(self, label: str, task: tuple[Any, ...], log_path: Path, workdir: Path,
              log: Any = _discard) -> tuple[Any, ...]:  # fmt: skip
        """Send one task; the ``ok`` reply's values, or the failure raised as a PackagerError."""
        self.home.mkdir(parents=True, exist_ok=True)
        conn = self._connection()
        try:
            conn.send((*task, str(log_path), str(workdir)))
        except (pickle.PicklingError, AttributeError, TypeError) as exc:
            raise ConversionError(f"step '{label}' cannot be sent to the worker: {first_line(exc)}") from exc
        reply = self._wait(label, log_path)
        kind = reply[0]
        if kind == "ok":
            return tuple(reply[1:])
        notes = reply[-1]
        for note in notes:
            log(note)
        if kind == "error":
            error_type, message, hint = reply[1], reply[2], reply[3]
            raise error_type(message, hint=hint)
        name, text = reply[1], reply[2]
        raise ConversionError(
            f"step '{label}' failed: {name}: {text}",
            hint=f"the converter's output is in {log_path}",
        )

    def _wait(self, label: str, log_path: Path) -> tuple[Any, ...]:
        conn = self._conn
        assert conn is not None
        try:
            ready = conn.poll(self.timeout_s)
            if ready:
                return tuple(conn.recv())
        except (EOFError, OSError):
            ready = True  # the worker died while answering
        if not ready:
            self.close()
            raise ConversionError(
                f"step '{label}' timed out after {self.timeout_s:g} s and was stopped",
                hint=f"raise step_timeout in [tool.packager] if it needs longer; its output is in {log_path}",
            )
        code = self._reap()
        raise ConversionError(f"step '{label}' {_death(code)}", hint=f"its output is in {log_path}")

    def _connection(self) -> Connection:
        if self._process is not None and self._process.is_alive() and self._conn is not None:
            return self._conn
        self.close()
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        process = context.Process(target=_serve, args=(child, dict(WORKER_ENV), str(self.home)), daemon=True)
        with _environment(WORKER_ENV):  # the interpreter itself starts with them, before any import
            process.start()
        child.close()
        self._process, self._conn = process, parent
        return parent

    def _reap(self) -> int | None:
        process = self._process
        if process is None:
            return None
        process.join(5)
        code = process.exitcode
        self.close()
        return code

    def close(self) -> None:
        """Stop the worker (a kill: it may be hung in native code)."""
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.close()
            self._conn = None
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join(10)
            self._process = None


@contextlib.contextmanager
def _naming_log(log_path: Path) -> Iterator[None]:
    """A ConversionError carries ``log``, the step's log file, which a failed build keeps."""
    try:
        yield
    except ConversionError as exc:
        exc.log = log_path  # type: ignore[attr-defined]
        if str(log_path) not in exc.hint:
            exc.hint = f"{exc.hint}; log: {log_path}" if exc.hint else f"log: {log_path}"
        raise


def _death(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        why = " (an instruction this CPU does not have)" if name == "SIGILL" else ""
        return f"was killed by {name}{why}"
    return f"ended its worker process (exit code {code})"


@contextlib.contextmanager
def _environment(values: dict[str, str]) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


# --- the worker's side -----------------------------------------------------------------------


def _serve(conn: Connection, env: dict[str, str], home: str) -> None:
    os.environ.update(env)
    os.environ["TMPDIR"] = home
    tempfile.tempdir = home
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    while True:
        try:
            task = conn.recv()
        except (EOFError, OSError):
            return
        kind, fn, arg, log_path, workdir = task
        conn.send(_run_one(kind, fn, arg, Path(log_path), Path(workdir)))


def _run_one(kind: str, fn: Any, arg: Any, log_path: Path, workdir: Path) -> tuple[Any, ...]:
    notes: list[str] = []
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log, _redirected(log.fileno()):
        os.chdir(workdir)
        try:
            if kind == "call":
                return ("ok", fn(*arg))
            ctx = dataclasses.replace(arg, log=notes.append)
            artifact = fn(ctx)
            return ("ok", str(artifact), notes, list(ctx.checks))
        except PackagerError as exc:
            traceback.print_exc()
            return ("error", type(exc), exc.message, exc.hint, notes)
        except BaseException as exc:  # a converter's own failure: the step's, not the build's
            traceback.print_exc()
            return ("crash", type(exc).__name__, first_line(exc), notes)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()


@contextlib.contextmanager
def _redirected(fd: int) -> Iterator[None]:
    """Point descriptors 1 and 2 (and Python's streams) at ``fd`` while a step runs."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    os.dup2(fd, 1)
    os.dup2(fd, 2)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for copy in saved:
            os.close(copy)
