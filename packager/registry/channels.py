"""Channel pointers: read the current one, and move it with a retried compare-and-swap.

On a signed registry the pointer of record is the one the TUF targets metadata signs (served
from its hash-prefixed copy), and a change commits when ``tuf/timestamp.json`` is swapped in;
the plain ``channels/<c>.json`` is then brought up to date (never moved backwards). On an
unsigned registry the plain pointer is swapped directly.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

from packager.errors import ConflictError, RegistryError, SigningError, UsageError, did_you_mean
from packager.registry import signing
from packager.registry.docs import Pointer, canonical_json, facts
from packager.registry.names import check_name, pointer_copy_key, pointer_key, version_key
from packager.registry.store import Store

Change = Callable[[Pointer], Pointer]


def current(store: Store, model: str, channel: str, state: signing.RepoState | None) -> tuple[Pointer, str | None]:
    """The pointer of record and, on an unsigned registry, the etag to swap it with."""
    key = pointer_key(model, channel)
    if state is not None:
        target = state.target(key)
        if target is None:
            return Pointer(model=model, channel=channel), None
        blob = store.get(pointer_copy_key(model, channel, target.hashes["sha256"]))
        if blob is None:
            raise SigningError(f"{store.url}: the signed copy of {key} is missing")
        return Pointer.from_json(json.loads(blob.data)), None
    plain = store.get(key)
    if plain is None:
        return Pointer(model=model, channel=channel), None
    return Pointer.from_json(json.loads(plain.data)), plain.etag


def read_pointer(store: Store, model: str, channel: str) -> Pointer:
    return current(store, model, channel, signing.read_state(store))[0]


def update(store: Store, model: str, channel: str, change: Change, *, keys: Path | None,
           extra_targets: Mapping[str, Any] | None = None, now: datetime) -> Pointer:  # fmt: skip
    """Apply ``change`` to the channel's pointer, retrying when another writer won the race.

    ``extra_targets`` (artifacts, a version document) are signed in the same commit.
    """
    return apply(store, model, channel, change, keys=keys, extra_targets=extra_targets, now=now)[0]


def apply(store: Store, model: str, channel: str, change: Change, *, keys: Path | None,
          extra_targets: Mapping[str, Any] | None = None, now: datetime) -> tuple[Pointer, bool]:  # fmt: skip
    """``update``, and whether anything was written: a change that keeps the pointer as it is,
    with every extra target already signed as given, writes and re-signs nothing."""
    for _ in range(int(facts()["writes"]["attempts"])):
        state = signing.read_state(store)
        signers = signers_for(store, state, keys)
        old, etag = current(store, model, channel, state)
        new = change(old)
        data = canonical_json(new.to_json())
        add = {**(extra_targets or {}), pointer_key(model, channel): signing.target_file(pointer_key(model, channel),
                                                                                        data)}  # fmt: skip
        signed = state is not None and all(state.target(k) == v for k, v in add.items())
        if new is old and (signed or (state is None and etag is not None)):
            if signed:  # a writer killed after its commit may have left the plain pointer behind
                mirror(store, old)
            return old, False
        try:
            if state is None:
                store.put(pointer_key(model, channel), data, if_match=etag)
            else:
                store.put_immutable(pointer_copy_key(model, channel, hashlib.sha256(data).hexdigest()), data)
                signing.commit(store, signers, state, add, now)
                mirror(store, new)
        except ConflictError:
            continue
        return new, True
    raise ConflictError(f"{model}/{channel}: other writers kept changing the registry; gave up after retries")


def signers_for(store: Store, state: signing.RepoState | None, keys: Path | None) -> Mapping[str, Any]:
    if state is None:
        if keys is not None:
            raise SigningError(f"{store.url} is not signed, but --keys was given",
                               hint=f"run `packager keys init --keys {keys} --registry {store.url}` first")  # fmt: skip
        return {}
    if keys is None:
        raise SigningError(f"{store.url} is signed: this change needs its signing keys",
                           hint="pass --keys DIR (the folder `packager keys init` wrote)")  # fmt: skip
    return signing.load_signers(keys, state.root)


def mirror(store: Store, pointer: Pointer) -> None:
    """Bring the plain pointer up to ``pointer``, unless a newer generation is already there."""
    key = pointer_key(pointer.model, pointer.channel)
    data = canonical_json(pointer.to_json())
    for _ in range(int(facts()["writes"]["attempts"])):
        plain = store.get(key)
        if plain is not None and json.loads(plain.data).get("generation", -1) >= pointer.generation:
            return
        try:
            store.put(key, data, if_match=plain.etag if plain else None)
            return
        except ConflictError:
            continue


def require_version(store: Store, model: str, version: str) -> None:
    """A RegistryError naming what is published (the closest model or version) when it is not."""
    if store.size(version_key(model, version)) is not None:
        return
    models = sorted({key.split("/")[1] for key in store.list("models/") if key.count("/") >= 3})
    if model not in models:
        raise RegistryError(f"model '{model}' is not published in {store.url}{did_you_mean(model, models)}",
                            hint=f"published: {', '.join(models) or 'none'}")  # fmt: skip
    prefix = f"models/{model}/versions/"
    versions = sorted(k[len(prefix) : -len(".json")] for k in store.list(prefix) if k.endswith(".json"))
    raise RegistryError(f"{model} version {version} is not published in {store.url}{did_you_mean(version, versions)}",
                        hint=f"published versions of {model}: {', '.join(versions) or 'none'}")  # fmt: skip


def after_publish(version: str, now: datetime) -> Change:
    """A first publish makes ``version`` stable; later ones make it the candidate at 0%."""

    def change(old: Pointer) -> Pointer:
        if old.stable is None:
            return old.next("publish", now, stable=version, candidate=None, percent=0)
        if version in (old.stable, old.candidate):
            return old  # republishing the same build changes nothing
        return old.next("publish", now, candidate=version, percent=0)

    return change


def rollout_change(version: str, percent: int, now: datetime, plan: Mapping[str, Any] | None = None) -> Change:
    """Candidate ``version`` to ``percent`` of devices; 100 promotes it to stable. ``plan``: a
    gated rollout's (``packager.fleet``), which the controller then moves; without one a rollout
    by hand ends any plan."""
    if not 0 <= percent <= 100:
        raise UsageError(f"--percent {percent} is outside 0..100")
    check_name("version", version)

    def change(old: Pointer) -> Pointer:
        if old.stable is None and percent < 100:
            raise UsageError(f"channel {old.channel} has no stable version yet",
                             hint="roll the first version out with --percent 100")  # fmt: skip
        if old.experiment is not None:
            raise UsageError(f"{old.model}/{old.channel} runs an experiment: end it before a rollout",
                             hint=f"packager experiment {old.model} --off --channel {old.channel} ...")  # fmt: skip
        if percent == 100:
            return old.next("promote", now, stable=version, candidate=None, percent=0, plan=None,
                            shadow=None if old.in_shadow(version) else old.shadow)  # fmt: skip
        if version == old.stable:
            raise UsageError(f"{old.model} {version} is already stable on {old.channel}")
        return old.next("rollout", now, candidate=version, percent=percent, plan=plan)

    return change


def rollback_change(now: datetime) -> Change:
    """Drop a running rollout; with none, point stable back at the previous stable version."""

    def change(old: Pointer) -> Pointer:
        if old.stable is None:
            raise RegistryError(f"{old.model} has no channel {old.channel} to roll back",
                                hint="publish a version first")  # fmt: skip
        if old.candidate is not None:
            return old.next("rollback", now, candidate=None, percent=0, plan=None, record={"from": old.candidate},
                            shadow=None if old.in_shadow(old.candidate) else old.shadow)  # fmt: skip
        previous = previous_stable(old)
        if previous is None:
            raise UsageError(f"{old.model}/{old.channel} has no earlier stable version to roll back to")
        return old.next("rollback", now, stable=previous, plan=None, record={"from": old.stable})

    return change


def shadow_change(settings: Mapping[str, Any] | None, now: datetime) -> Change:
    """Start (or change) a shadow run with ``settings`` (``docs.shadow_settings``), or end it (None)."""

    def change(old: Pointer) -> Pointer:
        if settings is None:
            if old.shadow is None:
                return old
            return old.next("shadow", now, shadow=None, record={"shadow": None})
        if old.stable is None:
            raise UsageError(f"channel {old.channel} has no stable version to shadow",
                             hint="publish and roll out a first version")  # fmt: skip
        if settings["version"] == old.stable:
            raise UsageError(f"{old.model} {settings['version']} is the stable version: shadow a newer one")
        if old.shadow == settings:
            return old
        return old.next("shadow", now, shadow=dict(settings), record={"shadow": dict(settings)})

    return change


def experiment_change(settings: Mapping[str, Any] | None, now: datetime) -> Change:
    """Start an experiment with ``settings`` (``docs.experiment_settings``), or end it (None):
    devices go back to the channel's stable version."""

    def change(old: Pointer) -> Pointer:
        if settings is None:
            if old.experiment is None:
                return old
            return old.next("experiment", now, experiment=None, record={"experiment": None})
        if old.stable is None:
            raise UsageError(f"channel {old.channel} has no stable version yet", hint="publish a version first")
        if old.candidate is not None and old.percent > 0:
            raise UsageError(f"{old.model}/{old.channel} is rolling out {old.candidate}: an experiment needs the "
                             "channel to itself", hint="finish or roll back the rollout first")  # fmt: skip
        if old.experiment is not None:
            raise UsageError(f"{old.model}/{old.channel} already runs an experiment",
                             hint="end it with --off first")  # fmt: skip
        return old.next("experiment", now, experiment=dict(settings),
                        record={"experiment": {k: settings[k] for k in ("arms", "policy", "allocation")}})  # fmt: skip

    return change


def previous_stable(pointer: Pointer) -> str | None:
    """The latest earlier stable version that was not itself rolled back from."""
    withdrawn = {h.get("from") for h in pointer.history if h.get("action") == "rollback"} | {pointer.stable}
    for entry in reversed(pointer.history):
        if entry.get("stable") and entry["stable"] not in withdrawn:
            return str(entry["stable"])
    return None
