"""The registry on S3 (or any S3-compatible server) with conditional writes.

Create-only writes send ``If-None-Match: *`` and compare-and-swap sends ``If-Match: <etag>``
(S3 has honoured both on PutObject since 2024; SeaweedFS 4.x does too, which the tests check
against a real server). A 412 means the precondition failed (ConflictError); a 409 means a
concurrent conditional write was in flight, which is retried here a few times first.
"""

from __future__ import annotations

import time
from typing import Any

from packager.errors import ConflictError, RegistryError, UsageError, require
from packager.registry.names import check_key
from packager.registry.store import Blob, Data

_RETRY_409 = 4
_IMMUTABLE = "published objects never change; publish a new --version instead"


class S3Store:
    """Objects under ``s3://bucket/prefix``; etags are S3's (quoted as S3 returns them)."""

    def __init__(self, client: Any, bucket: str, prefix: str, url: str) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix
        self.url = url

    @classmethod
    def from_url(cls, url: str, *, endpoint_url: str | None = None) -> S3Store:
        require("boto3", "registry")
        import boto3
        from botocore.config import Config

        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise UsageError(f"{url!r} names no bucket", hint="use s3://bucket or s3://bucket/prefix")
        prefix = prefix.strip("/")
        if prefix:
            check_key(prefix)
        config = Config(retries={"max_attempts": 3, "mode": "standard"},
                        s3={"addressing_style": "path"} if endpoint_url else {})  # fmt: skip
        session = boto3.session.Session()
        client = session.client("s3", endpoint_url=endpoint_url, config=config,
                                region_name=session.region_name or "us-east-1")  # fmt: skip
        return cls(client, bucket, prefix + "/" if prefix else "", url)

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    def get(self, key: str) -> Blob | None:
        try:
            response = self._call("get_object", key, Bucket=self.bucket, Key=self._key(key))
        except _Missing:
            return None
        return Blob(data=response["Body"].read(), etag=response["ETag"])

    def get_range(self, key: str, start: int, length: int) -> bytes:
        if length <= 0:
            return b""
        try:
            response = self._call("get_object", key, Bucket=self.bucket, Key=self._key(key),
                                  Range=f"bytes={start}-{start + length - 1}")  # fmt: skip
        except _Missing as exc:
            raise RegistryError(f"{key} is not in {self.url}") from exc
        data: bytes = response["Body"].read()
        return data

    def size(self, key: str) -> int | None:
        try:
            response = self._call("head_object", key, Bucket=self.bucket, Key=self._key(key))
        except _Missing:
            return None
        return int(response["ContentLength"])

    def list(self, prefix: str) -> list[str]:
        keys: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        try:
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                keys.extend(item["Key"][len(self.prefix) :] for item in page.get("Contents", []))
        except Exception as exc:
            raise _translate(exc, prefix, self.url) from exc
        return sorted(keys)

    def put_immutable(self, key: str, data: Data) -> bool:
        body = data if isinstance(data, bytes) else data.read()
        try:
            self._put(key, body, IfNoneMatch="*")
            return True
        except ConflictError:
            existing = self.get(key)
            if existing is not None and existing.data == body:
                return False
            raise ConflictError(f"{key} already exists in {self.url} with other bytes", hint=_IMMUTABLE) from None

    def put(self, key: str, data: bytes, *, if_match: str | None) -> str:
        condition = {"IfMatch": if_match} if if_match is not None else {"IfNoneMatch": "*"}
        return self._put(key, data, **condition)

    def _put(self, key: str, body: bytes, **condition: str) -> str:
        for attempt in range(_RETRY_409):
            try:
                response = self._call("put_object", key, Bucket=self.bucket, Key=self._key(key), Body=body,
                                      ContentType=_content_type(key), **condition)  # fmt: skip
                return str(response["ETag"])
            except _Busy:
                time.sleep(0.05 * (attempt + 1))
        raise ConflictError(f"{key} in {self.url} kept failing with 409: concurrent writes")

    def _call(self, method: str, key: str, **kwargs: Any) -> Any:
        try:
            return getattr(self.client, method)(**kwargs)
        except Exception as exc:
            raise _translate(exc, key, self.url) from exc


class _Missing(RegistryError):
    pass


class _Busy(RegistryError):
    pass


def _translate(exc: Exception, key: str, url: str) -> Exception:
    """botocore's errors as the registry's: missing, precondition, busy, auth, other."""
    response = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return RegistryError(f"cannot reach {url}: {type(exc).__name__}: {exc}")
    code = str(response.get("Error", {}).get("Code", ""))
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    if code in {"NoSuchKey", "404", "NotFound"} or (status == 404 and code != "NoSuchBucket"):
        return _Missing(f"{key} is not in {url}")
    if status == 412 or code == "PreconditionFailed":
        return ConflictError(f"{key} in {url} changed since it was read (412 Precondition Failed)")
    if status == 409:
        return _Busy(f"{key} in {url}: 409 {code}")
    if status == 403 or code in {"SignatureDoesNotMatch", "InvalidAccessKeyId", "AccessDenied"}:
        return RegistryError(f"{url} refused the credentials: {code}",
                             hint="check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or the AWS profile)")  # fmt: skip
    return RegistryError(f"{url}: {key}: {code or status}: {response.get('Error', {}).get('Message', '')}")


def _content_type(key: str) -> str:
    return "application/json" if key.endswith(".json") else "application/octet-stream"
