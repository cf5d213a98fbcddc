"""``packager serve``: the app on granian, one worker process speaking RSGI (``packager.server.front``).

Granian starts its worker as a child process, which builds its own app from ``Options`` (a
picklable value, so it works whatever multiprocessing's start method is): nothing opened in the
parent (an S3 client's connections) is shared with the worker. The parent builds the app once
first, so a wrong registry or signing key fails the command before anything listens. Ctrl-C and
SIGTERM stop the worker gracefully (granian's signal handling).
"""

from __future__ import annotations

import functools
import socket
from dataclasses import dataclass
from pathlib import Path

from packager.errors import UsageError
from packager.server.front import Front


@dataclass(frozen=True, kw_only=True)
class Options:
    registry: str
    tokens: Path | None = None
    keys: Path | None = None
    base_url: str = ""
    telemetry: Path | None = None
    cors_origins: tuple[str, ...] = ("*",)


def build(options: Options) -> Front:
    """The app of ``options`` (``create_app`` over the opened store)."""
    from packager.registry.store import open_store
    from packager.server.app import create_app

    return create_app(open_store(options.registry), tokens=options.tokens, keys=options.keys, base_url=options.base_url,
                      telemetry=options.telemetry, cors_origins=options.cors_origins)  # fmt: skip


def run(options: Options, *, host: str, port: int) -> None:
    """Serve until interrupted (Ctrl-C, SIGTERM); ``check_port`` first, for a clear error."""
    from granian.constants import HTTPModes, Interfaces
    from granian.log import LogLevels
    from granian.server import Server

    granian = Server("packager.server.serving:build", address=host, port=port, interface=Interfaces.RSGI,
                     workers=1, http=HTTPModes.auto, websockets=False, log_level=LogLevels.warning)  # fmt: skip
    granian.serve(target_loader=functools.partial(build, options), wrap_loader=False)


def check_port(host: str, port: int) -> None:
    """UsageError unless ``host:port`` is free. Granian listens with SO_REUSEPORT, so a second
    server on a busy port would share its connections instead of failing; this bind does not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                                             flags=socket.AI_PASSIVE)[0]  # fmt: skip
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT left by an earlier server is fine
            sock.bind(address)
    except OSError as exc:
        raise UsageError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            hint="another server listens there: stop it or choose --port",
        ) from exc
