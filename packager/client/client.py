"""The device client: resolve, download, verify, install, load, predict; offline and fallbacks.

``Client.load()`` asks the manifest server which variant fits this device, installs it (Range
resume, sha256, TUF when a root is pinned, atomic rename into a content-addressed cache) and
loads it in its runtime. A variant that does not install or load gives way to the next of the
resolution's fallbacks, then to the cloud endpoint. When the server cannot be reached, the last
variant that installed and loaded (the last-known-good) is used. Telemetry is best-effort.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import random
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any

import httpx
import numpy as np

from packager.client import runtimes
from packager.client.cache import Cache
from packager.client.download import Wanted, download
from packager.client.profile import detect_profile, settings
from packager.client.shadow import Shadow
from packager.client.telemetry import Telemetry
from packager.client.trust import Trust
from packager.errors import ClientError, CloudError, NoVariantError, OfflineError, PackagerError, did_you_mean
from packager.fleet.drift import counts
from packager.registry.names import check_name
from packager.registry.profile import DeviceProfile
from packager.runtimes.open_inference import CloudRunner

log = logging.getLogger("packager.client")


class _Unreachable(Exception):
    """The manifest server did not answer (network down, refused, 5xx)."""


class Model:
    """A loaded model. ``source`` is "local" (a variant in a runtime here) or "cloud" (the OIP
    endpoint); ``offline`` is True when the server was unreachable and the last-known-good was used."""

    def __init__(self, runner: runtimes.Runner, *, model: str, version: str, variant: str | None, source: str,
                 telemetry: Telemetry, offline: bool = False, reason: str = "",
                 state: Sequence[Mapping[str, Any]] = ()) -> None:  # fmt: skip
        self.runner, self.telemetry = runner, telemetry
        self.model, self.version, self.variant, self.source = model, version, variant, source
        self.offline, self.reason = offline, reason
        self.runtime = runner.runtime_label
        self.state = tuple(state)  # a streaming model's (input, output) pairs, as the build found them
        self._carried: dict[str, np.ndarray] = {}
        self.shadow: Shadow | None = None  # the candidate run beside this one, when the pointer asks
        self.reference: Mapping[str, Any] | None = None  # the build's reference bins, for drift
        self.inputs_sample = 0.0
        self._random = random.Random()

    def predict(self, inputs: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        """Run the model on ``{input name: array}``, or on a bare array when the model takes one
        input. Names, dtypes and shapes are checked against what the loaded variant takes: a
        mismatch is a ClientError naming the input. A streaming model's state input left out is
        carried: the state the last such call returned (zeros at first, or after ``reset``). A
        call that passes the state itself is its own and changes nothing carried."""
        inputs = self._checked(inputs)
        feeds = dict(inputs)
        left = [pair for pair in self.state if pair["input"] not in inputs]
        for pair in left:
            feeds[pair["input"]] = self._carried.get(pair["input"], _zero_state(pair, feeds))
        start = time.perf_counter()
        outputs = self.runner.predict(feeds)
        ms = (time.perf_counter() - start) * 1000
        self.telemetry.predicted(ms, version=self.version, variant=self.variant)
        if self.shadow is not None:
            self.shadow.offer(feeds, outputs, ms)
        if self.reference is not None and self._random.random() < self.inputs_sample:
            self.telemetry.counted(counts(self.reference, inputs, outputs), version=self.version, variant=self.variant)
        for pair in left:
            if pair["output"] in outputs:
                self._carried[pair["input"]] = np.asarray(outputs[pair["output"]])
        return outputs

    def _checked(self, inputs: Mapping[str, np.ndarray] | np.ndarray) -> dict[str, np.ndarray]:
        specs: list[runtimes.InputSpec] | None = getattr(self.runner, "input_specs", None)
        carried = {pair["input"] for pair in self.state}
        if not isinstance(inputs, Mapping):
            free = [spec.name for spec in specs or () if spec.name not in carried]
            if len(free) != 1:
                takes = f"takes {len(free)} inputs ({', '.join(free)})" if specs else "does not say what it takes"
                raise ClientError(f"{self.model} {takes}: pass a dict of input name -> array, not one array")
            inputs = {free[0]: inputs}
        given = {str(name): np.asarray(value) for name, value in inputs.items()}
        if not specs:
            return given
        known = {spec.name: spec for spec in specs}
        for name in given:
            if name not in known:
                raise ClientError(f"{self.model} has no input '{name}'{did_you_mean(name, known)} "
                                  f"(it takes {', '.join(known)})")  # fmt: skip
        missing = [spec.name for spec in specs if spec.name not in given and spec.name not in carried]
        if missing:
            raise ClientError(f"{self.model}: input {', '.join(repr(m) for m in missing)} is missing "
                              f"(it takes {', '.join(known)})")  # fmt: skip
        for name, value in given.items():
            _check_input(self.model, known[name], value)
        return given

    def reset(self) -> None:
        """Forget the carried state: the next call starts a new stream."""
        self._carried.clear()

    def feedback(self, reward: float) -> None:
        """Report how well the last answers served the app (an experiment's reward): sent with
        the telemetry, tagged with this version and variant."""
        if isinstance(reward, bool) or not isinstance(reward, int | float) or not math.isfinite(reward):
            raise ClientError(f"feedback takes a finite number, given {reward!r}")
        self.telemetry.record("feedback", version=self.version, variant=self.variant, reward=float(reward))

    def flush(self) -> int:
        """Send the telemetry gathered so far (after the shadow has run what it was handed)."""
        if self.shadow is not None:
            self.shadow.drain()
        return self.telemetry.flush()

    def close(self) -> None:
        if self.shadow is not None:
            self.shadow.close()
        self.runner.close()
        self.telemetry.flush()

    def __repr__(self) -> str:
        where = f"{self.variant} in {self.runtime}" if self.source == "local" else self.runtime
        return f"<Model {self.model} {self.version}: {where}{' (offline)' if self.offline else ''}>"


def _check_input(model: str, spec: runtimes.InputSpec, value: np.ndarray) -> None:
    """The input's dtype and shape against what the variant takes (None: anything)."""
    wanted = "[" + ", ".join("?" if d is None else str(d) for d in spec.shape) + "]" if spec.shape is not None else ""
    given = f"{value.dtype} {list(value.shape)}"
    if spec.dtype is not None and value.dtype != np.dtype(spec.dtype):
        raise ClientError(f"{model}: input '{spec.name}' takes {spec.dtype} {wanted}, given {given}",
                          hint=f"convert it, e.g. array.astype(np.{spec.dtype})")  # fmt: skip
    if spec.shape is None:
        return
    same_rank = len(value.shape) == len(spec.shape)
    if not same_rank or any(w is not None and w != g for w, g in zip(spec.shape, value.shape, strict=True)):
        raise ClientError(f"{model}: input '{spec.name}' takes shape {wanted} ('?': any), given {given}")


def _zero_state(pair: Mapping[str, Any], feeds: Mapping[str, np.ndarray]) -> np.ndarray:
    """A stream's first state: zeros of the pair's shape, its batch as the other inputs' batch."""
    batch = next((int(np.shape(v)[0]) for v in feeds.values() if np.ndim(v)), 1)
    shape = [batch if d == "batch" else (d if isinstance(d, int) else 1) for d in pair["shape"]]
    return np.zeros(shape, np.dtype(pair["dtype"]))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Installed:
    """One variant installed in the cache: what ``fetch`` returns and ``load`` runs."""

    model: str
    version: str
    variant: Mapping[str, Any]  # as the resolution served it, plus "needed": the files installed
    files: runtimes.Files
    downloaded: int  # bytes moved over the network for it (0: it was in the cache)


class Client:
    """A device's view of one model on a manifest server.

    ``profile``: a DeviceProfile (or its JSON object); None detects this host. ``root``: the
    registry's TUF root.json (a path, or its bytes) to pin; then every document and artifact is
    verified against signed metadata before use. The device id is kept in ``cache_dir``.
    """

    def __init__(self, server: str, model: str, *, cache_dir: Path | str, profile: DeviceProfile | Mapping[str, Any]
                 | None = None, channel: str = "stable", root: Path | str | bytes | None = None,
                 attempts: int | None = None) -> None:  # fmt: skip
        self.model, self.channel = check_name("model", model), check_name("channel", channel)
        self.cache = Cache(Path(cache_dir))
        conf = settings()
        self.attempts = int(attempts if attempts is not None else conf["http"]["attempts"])
        timeout = httpx.Timeout(float(conf["http"]["read_seconds"]), connect=float(conf["http"]["connect_seconds"]))
        self.http = httpx.Client(base_url=server.rstrip("/"), timeout=timeout)
        self.profile = _profile(profile, self.cache)
        self.trust = None if root is None else Trust(_root_bytes(root), self.cache)
        tele = conf["telemetry"]
        self.telemetry = Telemetry(self.http, model=self.model, device_id=self.profile.device_id or "",
                                   queue=int(tele["queue"]), batch=int(tele["batch"]),
                                   seconds=float(tele["seconds"]))  # fmt: skip

    # --- resolve and install -----------------------------------------------------------------

    def resolve(self) -> dict[str, Any]:
        """The server's Resolution for this device (verified when a root is pinned)."""
        start = time.perf_counter()
        try:
            response = self.http.post(f"/v1/models/{self.model}/resolve", params={"channel": self.channel},
                                      json=self.profile.to_json())  # fmt: skip
        except httpx.TransportError as exc:
            raise _Unreachable(f"{type(exc).__name__}: {exc}") from exc
        if response.status_code >= 500:
            raise _Unreachable(f"the server answered {response.status_code}")
        if response.status_code != 200:
            raise ClientError(f"resolving {self.model} failed ({response.status_code}): {_error_text(response)}")
        resolution: dict[str, Any] = response.json()
        if self.trust is not None:
            self.trust.check_resolution(self.http, resolution, self.channel)
        chosen = (resolution.get("variant") or {}).get("id")
        self.telemetry.record("resolve", version=resolution["version"], variant=chosen,
                              ms=(time.perf_counter() - start) * 1000, detail=resolution.get("reason"))  # fmt: skip
        return resolution

    def install(self, resolution: Mapping[str, Any], variant: Mapping[str, Any]) -> Installed:
        """Download (resuming), verify and install the files ``variant`` needs to run."""
        needed = needed_files(variant)
        paths, moved = {}, 0
        for entry in needed:
            path, got = self._artifact(entry)
            paths[entry["path"]], moved = path, moved + got
        self.telemetry.record("install", version=resolution["version"], variant=variant["id"], bytes=moved, ok=True)
        return Installed(model=self.model, version=resolution["version"], variant={**variant, "needed": needed},
                         files=runtimes.Files(main=variant["path"], paths=paths), downloaded=moved)  # fmt: skip

    def _artifact(self, entry: Mapping[str, Any]) -> tuple[Path, int]:
        sha, size = entry["sha256"], int(entry["bytes"])
        check = None if self.trust is None else self.trust.check_artifact
        found = self.cache.installed(sha, size)
        if found is not None:
            if check is not None:
                check(sha, size)
            return found, 0
        part = self.cache.part(sha)
        wanted = Wanted(url=entry.get("url") or f"/v1/artifacts/{sha}", sha256=sha, size=size)
        fetched = download(self.http, wanted, part, attempts=self.attempts, check=check)
        self.telemetry.record(
            "download",
            bytes=fetched.bytes,
            ms=fetched.ms,
            detail=f"{sha[:12]} resumed from {fetched.resumed_from}, {fetched.requests} requests",
            ok=True,
        )
        return self.cache.install(sha, part), fetched.bytes

    def fetch(self) -> Installed:
        """Resolve and install the first variant that installs (no runtime is loaded)."""
        try:
            resolution = self.resolve()
            failures: list[str] = []
            for variant in candidates(resolution):
                try:
                    installed = self.install(resolution, variant)
                except ClientError as exc:
                    failures.append(f"{variant['id']}: {exc.message}")
                    continue
                self._remember(resolution, installed, loaded=False)
                return installed
            raise NoVariantError(_none_text(resolution, failures))
        except _Unreachable as exc:
            raise OfflineError(f"{self.http.base_url} is unreachable: {exc}") from exc
        finally:
            self.telemetry.flush()

    # --- load ---------------------------------------------------------------------------------

    def load(self) -> Model:
        """A loaded model: the resolved variant, else its fallbacks, else the cloud endpoint;
        the last-known-good when the server is unreachable."""
        try:
            try:
                resolution = self.resolve()
            except _Unreachable as exc:
                return self._offline(str(exc))
            return self._load_resolved(resolution)
        finally:
            self.telemetry.flush()

    def _load_resolved(self, resolution: Mapping[str, Any]) -> Model:
        failures: list[str] = []
        for variant in candidates(resolution):
            try:
                installed = self.install(resolution, variant)
                model = self._run(installed, reason=str(resolution.get("reason", "")))
            except ClientError as exc:
                failures.append(f"{variant['id']}: {exc.message}")
                log.warning("variant %s of %s is not usable, trying the next: %s", variant["id"], self.model,
                            exc.message)  # fmt: skip
                self.telemetry.record("fallback", version=resolution["version"], variant=variant["id"],
                                      detail=exc.message)  # fmt: skip
                continue
            self._remember(resolution, installed, loaded=True)
            model.shadow = self._shadow(resolution, model)
            model.reference = self._reference(installed.version)
            model.inputs_sample = float(settings()["telemetry"]["inputs_sample"])
            return model
        cloud = resolution.get("cloud")
        if cloud:
            try:
                return self._cloud(resolution, cloud, failures)
            except CloudError as exc:
                failures.append(f"cloud: {exc.message}")
        raise NoVariantError(_none_text(resolution, failures))

    def _run(self, installed: Installed, *, reason: str = "", offline: bool = False) -> Model:
        runtime = installed.variant["runtime"]["name"]
        start = time.perf_counter()
        try:
            runner = runtimes.load(runtime, installed.files)
        except ClientError as exc:
            self.telemetry.record("load", version=installed.version, variant=installed.variant["id"], ok=False,
                                  detail=f"failed in {runtime}: {exc.message}")  # fmt: skip
            raise
        self.telemetry.record("load", version=installed.version, variant=installed.variant["id"], ok=True,
                              ms=(time.perf_counter() - start) * 1000, detail=f"ok {runner.runtime_label}")  # fmt: skip
        log.info("%s %s: loaded %s in %s", self.model, installed.version, installed.variant["id"], runner.runtime_label)
        return Model(runner, model=self.model, version=installed.version, variant=installed.variant["id"],
                     source="local", telemetry=self.telemetry, offline=offline, reason=reason,
                     state=installed.variant.get("state", ()))  # fmt: skip

    def _reference(self, version: str) -> Mapping[str, Any] | None:
        """The version's reference bins (its immutable document, kept in the cache once read);
        None when it has none or it cannot be read now (drift counts are best-effort)."""
        try:
            path = self.cache.root / "references" / self.model / f"{check_name('version', version)}.json"
        except PackagerError:  # a name the server should never have sent: no file is made of it
            return None
        with contextlib.suppress(OSError, ValueError):
            return json.loads(path.read_text()) or None
        try:
            response = self.http.get(f"/v1/models/{self.model}/versions/{version}")
            found = response.json()["model"].get("reference") if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(found or {}))
        return found or None

    def _shadow(self, resolution: Mapping[str, Any], model: Model) -> Shadow | None:
        """The resolution's shadow variant, installed and loaded; None when there is none or it
        fails (a failure is the candidate's telemetry: its load counts as failed)."""
        shadow = resolution.get("shadow")
        if not shadow:
            return None
        if model.state:
            log.info("%s: no shadow run for a streaming model (its state would differ)", self.model)
            return None
        version, variant = str(shadow["version"]), shadow["variant"]
        try:
            installed = self.install({**resolution, "version": version}, variant)
            runner = self._run(installed).runner
        except ClientError as exc:
            log.info("%s: the shadow %s %s is not usable: %s", self.model, version, variant["id"], exc.message)
            return None
        return Shadow(runner, version=version, variant=variant["id"], sample=float(shadow["sample"]),
                      cpu_budget=float(shadow["cpu_budget"]), telemetry=self.telemetry)  # fmt: skip

    def _cloud(self, resolution: Mapping[str, Any], cloud: Mapping[str, Any], failures: list[str]) -> Model:
        http = httpx.Client(timeout=self.http.timeout)
        try:
            runner = CloudRunner(http, str(cloud["url"]), self.model)
        except CloudError:
            http.close()
            raise
        why = "; ".join(failures) or str(resolution.get("reason", ""))
        log.warning("%s %s: using the cloud endpoint %s (%s)", self.model, resolution["version"], runner.url, why)
        self.telemetry.record("load", version=resolution["version"], ok=True, detail=f"ok cloud {runner.url}"[:256])
        return Model(runner, model=self.model, version=resolution["version"], variant=None, source="cloud",
                     telemetry=self.telemetry, reason=why)  # fmt: skip

    # --- last-known-good ------------------------------------------------------------------------

    def _remember(self, resolution: Mapping[str, Any], installed: Installed, *, loaded: bool) -> None:
        record = {"model": self.model, "channel": self.channel, "version": installed.version,
                  "variant": dict(installed.variant), "loaded": loaded, "reason": resolution.get("reason"),
                  "at": datetime.now(UTC).isoformat(timespec="seconds")}  # fmt: skip
        self.cache.save_last_known_good(self.model, self.channel, record)

    def _offline(self, why: str) -> Model:
        record = self.cache.last_known_good(self.model, self.channel)
        if record is None:
            raise OfflineError(f"{self.http.base_url} is unreachable ({why}) and no variant of {self.model} "
                               f"is installed in {self.cache.root}")  # fmt: skip
        variant = record["variant"]
        paths = {f["path"]: self.cache.artifact(f["sha256"]) for f in variant["needed"]}
        installed = Installed(model=self.model, version=record["version"], variant=variant,
                              files=runtimes.Files(main=variant["path"], paths=paths), downloaded=0)  # fmt: skip
        log.warning("%s is unreachable (%s): using the last-known-good %s %s (%s, installed %s)", self.http.base_url,
                    why, self.model, record["version"], variant["id"], record["at"])  # fmt: skip
        try:
            return self._run(installed, reason=f"offline: last-known-good from {record['at']}", offline=True)
        except ClientError as exc:
            raise OfflineError(f"{self.http.base_url} is unreachable ({why}) and the last-known-good "
                               f"{variant['id']} does not load: {exc.message}") from exc  # fmt: skip

    # --- lifetime -----------------------------------------------------------------------------

    def close(self) -> None:
        self.telemetry.flush()
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()


def candidates(resolution: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The resolved variant, then its fallbacks, in the server's order."""
    first = resolution.get("variant")
    return ([first] if first else []) + list(resolution.get("fallbacks") or [])


def needed_files(variant: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The main file and the sidecars its runtime reads (client.toml [sidecars]), beside it."""
    main = PurePosixPath(variant["path"])
    runtime = variant["runtime"]["name"]
    names = [n.format(prefix=runtimes.c_prefix(str(main)) if runtime == "c" else "")
             for n in settings()["sidecars"].get(runtime, [])]  # fmt: skip
    main_entry = {"path": variant["path"], "sha256": variant["sha256"], "bytes": variant["bytes"],
                  "url": variant.get("url")}  # fmt: skip
    beside = [dict(f) for f in variant.get("files", []) if PurePosixPath(f["path"]).parent == main.parent]
    sidecars = [f for f in beside if PurePosixPath(f["path"]).name in names]
    return [main_entry, *sidecars]


def _profile(profile: DeviceProfile | Mapping[str, Any] | None, cache: Cache) -> DeviceProfile:
    if profile is None:
        return detect_profile(cache.root, cache.device_id())
    parsed = profile if isinstance(profile, DeviceProfile) else DeviceProfile.from_json(dict(profile))
    return parsed if parsed.device_id else dataclasses.replace(parsed, device_id=cache.device_id())


def _root_bytes(root: Path | str | bytes) -> bytes:
    if isinstance(root, bytes):
        return root
    try:
        data = Path(root).read_bytes()
        json.loads(data)
    except (OSError, ValueError) as exc:
        hint = "pass the root.json that `packager keys init` printed (KEYS/root.json)"
        raise ClientError(f"cannot read the pinned root {root}: {exc}", hint=hint) from exc
    return data


def _error_text(response: httpx.Response) -> str:
    with contextlib.suppress(ValueError, KeyError, TypeError):
        return str(response.json()["error"]["message"])
    return response.text[:200]


def _none_text(resolution: Mapping[str, Any], failures: list[str]) -> str:
    tried = "; ".join(failures) if failures else "nothing was tried"
    return (f"no variant of {resolution.get('model')} {resolution.get('version')} could be used here "
            f"({resolution.get('reason', '')}); tried: {tried}")  # fmt: skip
