"""The manifest server: a Starlette app over a registry store behind a front door that answers
resolve itself (``create_app``), served by ``packager serve`` on uvicorn. Endpoints and schemas:
``packager.server.openapi`` (``GET /openapi.json``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from packager.server.app import create_app

__all__ = ["create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":  # keep `import packager.server` light for the CLI
        from packager.server.app import create_app

        return create_app
    raise AttributeError(name)
