"""A publish killed (SIGKILL) at random points leaves a registry that verifies."""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from registry_helpers import copy_build

from packager.registry import signing
from packager.registry.channels import read_pointer
from packager.registry.publish import init_keys, publish
from packager.registry.store import LocalStore
from packager.registry.verify import verify_store

KILLS = 30
DELAY_S = 0.03  # per write, so that the kills land between and inside writes


def _release(version: str) -> Any:
    """An edit giving each version one file of its own (a new artifact to upload)."""

    def edit(record: dict[str, Any], folder: Path) -> None:
        path = folder / "onnx" / "onnx-fp32" / "release.txt"
        path.write_text(f"release {version}\n")
        data = path.read_bytes()
        entry = {"path": "onnx/onnx-fp32/release.txt", "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
        variant = next(v for v in record["variants"] if v["id"] == "onnx-fp32")
        variant["files"].append(entry)
        variant["bytes"] += len(data)

    return edit


def _killed_publish(folder: Path, registry: Path, keys: Path, after: float) -> int:
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    script = Path(__file__).parent / "slow_publish.py"
    args = [
        sys.executable,
        str(script),
        str(DELAY_S),
        "publish",
        str(folder),
        "--registry",
        str(registry),
        "--keys",
        str(keys),
    ]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env)
    assert proc.stdout is not None and proc.stdout.readline().strip() == b"ready"
    time.sleep(after)
    proc.send_signal(signal.SIGKILL)
    return proc.wait(30)


def test_publish_killed_at_random_points_leaves_a_registry_that_verifies(built_mlp: Path, tmp_path: Path) -> None:
    store = LocalStore(tmp_path / "reg")
    keys = tmp_path / "keys"
    root = init_keys(keys, store).read_bytes()
    publish(copy_build(built_mlp, tmp_path / "dist", "1", _release("1")), store, keys=keys)
    done = {"1": store.get("models/mlp/versions/1.json").data}  # type: ignore[union-attr]
    rng = random.Random(6)
    outcomes = {"killed before the commit": 0, "killed after the commit": 0, "finished": 0}
    for i in range(2, KILLS + 2):
        version = str(i)
        folder = copy_build(built_mlp, tmp_path / "dist", version, _release(version))
        before = signing.read_state(store)
        code = _killed_publish(folder, store.root, keys, rng.uniform(0.0, 20 * DELAY_S))
        report = verify_store(store, root)  # signatures, every signed target's bytes, artifacts
        for old, data in done.items():
            assert f"models/mlp/versions/{old}.json" in report.versions
            assert store.get(f"models/mlp/versions/{old}.json").data == data  # type: ignore[union-attr]
        after = signing.read_state(store)
        assert before is not None and after is not None
        committed = after.timestamp_version > before.timestamp_version
        key = "finished" if code == 0 else "killed after the commit" if committed else "killed before the commit"
        outcomes[key] += 1
        publish(folder, store, keys=keys)  # a rerun finishes the job
        done[version] = store.get(f"models/mlp/versions/{version}.json").data  # type: ignore[union-attr]
        assert verify_store(store, root).lagging_pointers == []
    pointer = read_pointer(store, "mlp", "stable")
    assert pointer.stable == "1" and pointer.candidate == str(KILLS + 1)
    assert sum(outcomes.values()) == KILLS and outcomes["killed before the commit"] > 0, outcomes
    print(json.dumps(outcomes))
