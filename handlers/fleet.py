"""The fleet on AWS Lambda: the rollout controller on a schedule, and the fleet's read routes.

Runs in the FleetFunction of templates/service.yaml, with two kinds of event:

- a scheduled event (EventBridge, ``rate(5 minutes)``): one controller pass over the registry
  bucket, ``packager fleet tick`` as it is (``packager.fleet.controller.tick``): gated rollouts
  advance, hold or halt, Thompson experiments get their next epoch, each decision a new signed
  pointer;
- API Gateway HTTP API events for ``GET /v1/models/{m}/fleet``, ``GET /v1/models/{m}/dashboard``
  and ``GET /dashboard/{m}``: ``packager.server.fleet.FleetApi``, the code ``packager serve``
  answers them with (the page loads uPlot from jsDelivr, pinned by its integrity hash).

`sam build` runs handlers/Makefile (build-FleetFunction): packager's registry, server and fleet
modules copied as they are beside this file, DuckDB and python-tuf installed for the function's
platform; nothing from the converters.

The signing keys of the online roles (targets, snapshot, timestamp; never root) and the tokens
file come from one Secrets Manager secret, read once per container: its SecretString is what
``packager fleet secret --keys K --tokens T`` prints. They are written to a 0700 folder under
/tmp for the container's life. A registry that is not signed needs no keys; without tokens, the
read routes refuse every request (403).

Environment: REGISTRY_BUCKET, REGISTRY_PREFIX (may be empty), FLEET_SECRET_ID (the secret's ARN
or name), TICK_MINUTES (the schedule's period, what the gates' look count is taken from),
PACKAGER_S3_ENDPOINT_URL (an S3-compatible server instead of AWS, for tests) and
FLEET_SECRET_FILE (the secret's JSON in a file instead of Secrets Manager: ``sam local invoke``
and tests).
"""

from __future__ import annotations

import json
import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger

from packager.registry.s3 import S3Store
from packager.server.api import error_answer
from packager.server.apigw import call_of, refused_call, result_of, store_from_env
from packager.server.fleet import FleetApi
from packager.server.tokens import Tokens

ONLINE_KEYS = ("targets.pem", "snapshot.pem", "timestamp.pem")
BODY_LIMIT = 4096  # the fleet's routes are all GETs
logger = Logger(service=os.environ.get("POWERTOOLS_SERVICE_NAME", "packager-fleet"))


def read_secret() -> dict[str, Any]:
    """The secret's JSON: from FLEET_SECRET_FILE, else Secrets Manager's FLEET_SECRET_ID, else {}."""
    path = os.environ.get("FLEET_SECRET_FILE", "")
    if path:
        return dict(json.loads(Path(path).read_text()))
    secret_id = os.environ.get("FLEET_SECRET_ID", "")
    if not secret_id:
        return {}
    import boto3

    answer = boto3.client("secretsmanager").get_secret_value(SecretId=secret_id)
    return dict(json.loads(answer["SecretString"]))


def unpack(secret: dict[str, Any], folder: Path) -> tuple[Path | None, Path | None]:
    """The keys folder and the tokens file the secret holds, written under ``folder`` (0600)."""
    if secret.get("schema", 1) != 1:
        raise RuntimeError(f"the fleet secret has schema {secret.get('schema')!r}; this function reads schema 1")
    keys: Path | None = None
    pems = secret.get("keys") or {}
    if pems:
        unknown = sorted(set(pems) - set(ONLINE_KEYS))
        if unknown:
            raise RuntimeError(f"the fleet secret holds {unknown}: only {', '.join(ONLINE_KEYS)} belong there "
                               "(the root key stays offline)")  # fmt: skip
        keys = folder / "keys"
        keys.mkdir(mode=0o700)
        for name, text in pems.items():
            _write(keys / name, str(text))
    tokens: Path | None = None
    if secret.get("tokens"):
        tokens = folder / "tokens.json"
        _write(tokens, json.dumps(secret["tokens"]))
    return keys, tokens


def _write(path: Path, text: str) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _open() -> tuple[S3Store, Path | None, FleetApi, float]:
    store = store_from_env()
    keys, tokens = unpack(read_secret(), Path(tempfile.mkdtemp(prefix="packager-fleet-")))
    minutes = float(os.environ.get("TICK_MINUTES") or 5)
    return store, keys, FleetApi(store, Tokens(tokens), tick_minutes=minutes), minutes


# Once per container, at init: the S3 client, the keys and the tokens live as long as it does.
STORE, KEYS, API, TICK_MINUTES = _open()


def tick_now(now: datetime | None = None) -> dict[str, Any]:
    """One controller pass; what it decided, as the function's result (and one log line each)."""
    from packager.fleet.controller import tick

    decided = tick(STORE, keys=KEYS, now=now or datetime.now(UTC), tick_minutes=TICK_MINUTES)
    records = [{"model": d.model, "channel": d.channel, "action": d.action, "percent": d.percent,
                "reason": d.reason} for d in decided]  # fmt: skip
    for record in records:
        if record["action"] != "hold":
            logger.info("decision", extra=record)
    return {"decisions": records}


def is_scheduled(event: dict[str, Any]) -> bool:
    return event.get("source") == "aws.events" and event.get("detail-type") == "Scheduled Event"


@logger.inject_lambda_context
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if is_scheduled(event):
        return tick_now()
    call = call_of(event, BODY_LIMIT)
    if isinstance(call, Exception):
        refused = refused_call(event)
        return result_of(error_answer(call, refused.method, refused.path))
    return result_of(API.answer(call))
