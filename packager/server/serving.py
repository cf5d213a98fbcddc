"""``packager serve``: the app on uvicorn, in this process, one event loop (uvloop), HTTP/1.1 by
``packager.server.protocol`` (uvicorn's httptools protocol, answering resolve in its callbacks).

The command builds the app before anything listens, so a wrong registry or signing key fails it
with its own message. Ctrl-C and SIGTERM stop the server gracefully (uvicorn's signal handling:
requests in flight are answered, then the lifespan's shutdown runs).
"""

from __future__ import annotations

import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packager.errors import UsageError
from packager.resources import read_toml
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


def config(app: Any, *, host: str, port: int, loop: str = "uvloop") -> Any:
    """The uvicorn configuration ``packager serve`` runs ``app`` with (the tests' servers too)."""
    import uvicorn

    from packager.server.protocol import ResolveProtocol

    # proxy_headers off: the app does not read the client's address, so nothing is gained by
    # trusting X-Forwarded-* from whoever connects; no websockets route, so no websockets protocol
    conf = uvicorn.Config(app, host=host, port=port, http=ResolveProtocol, loop=loop, interface="asgi3", ws="none",
                          lifespan="on", proxy_headers=False, access_log=False, log_level="warning")  # fmt: skip
    # the slow-client bounds ResolveProtocol reads from its config (server.toml's [connections])
    for name, value in read_toml("server.toml")["connections"].items():
        setattr(conf, name, value)
    return conf


def run(app: Front, *, host: str, port: int) -> None:
    """Serve ``app`` until interrupted (Ctrl-C, SIGTERM); ``check_port`` first, for a clear error."""
    import uvicorn

    uvicorn.Server(config(app, host=host, port=port)).run()


def check_port(host: str, port: int) -> None:
    """UsageError unless ``host:port`` is free: said before the app is built and the server starts."""
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
