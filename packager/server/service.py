"""What the Starlette routes need: the cached registry view, tokens, signing keys, limits, URLs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from starlette.requests import Request

from packager.errors import PackagerError, ServiceError
from packager.registry.names import check_name, check_sha256
from packager.server.telemetry import TelemetrySink
from packager.server.tokens import Tokens
from packager.server.views import RegistryView


@dataclass(frozen=True, kw_only=True)
class Service:
    view: RegistryView
    tokens: Tokens
    keys: Path | None
    base_url: str  # prefix of artifact URLs in resolutions ("" keeps them relative)
    telemetry: TelemetrySink
    limits: dict[str, int]

    def artifact_url(self, sha256: str) -> str:
        return f"{self.base_url}/v1/artifacts/{sha256}"


def service(request: Request) -> Service:
    found: Service = request.app.state.service
    return found


def path_name(request: Request, kind: str, param: str) -> str:
    """A model, channel or version from the path, validated (400 otherwise)."""
    try:
        return check_name(kind, str(request.path_params[param]))
    except PackagerError as exc:
        raise ServiceError(400, "invalid_name", exc.message) from exc


def query_channel(request: Request) -> str:
    try:
        return check_name("channel", request.query_params.get("channel", "stable"))
    except PackagerError as exc:
        raise ServiceError(400, "invalid_name", exc.message) from exc


def path_sha256(request: Request) -> str:
    try:
        return check_sha256(str(request.path_params["sha256"]))
    except PackagerError as exc:
        raise ServiceError(400, "invalid_name", exc.message) from exc


def not_found(what: str, hint: str = "") -> ServiceError:
    return ServiceError(404, "not_found", f"{what}{'; ' + hint if hint else ''}")


def require_object(doc: Any, what: str) -> dict[str, Any]:
    if not isinstance(doc, dict):
        raise ServiceError(400, "bad_request", f"{what} must be a JSON object")
    return doc
