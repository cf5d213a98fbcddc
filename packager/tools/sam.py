"""The AWS template checkers, cfn-lint and the SAM CLI, run offline.

They live in their own virtual environment (``.venv-aws``, made by ``make setup`` from
requirements-aws-tools.txt) or anywhere on PATH.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

REPO_TOOLS = Path(__file__).resolve().parents[2] / ".venv-aws" / "bin"


def find(name: str) -> Path | None:
    """``cfn-lint`` or ``sam``: on PATH, else in the checkout's .venv-aws."""
    found = shutil.which(name)
    if found:
        return Path(found)
    local = REPO_TOOLS / name
    return local if local.is_file() else None


def verify() -> dict[str, str | None]:
    """Which checkers are here (None when missing)."""
    return {name: (str(path) if (path := find(name)) else None) for name in ("cfn-lint", "sam")}


def offline_env() -> dict[str, str]:
    """No telemetry, no credentials lookup on the instance metadata address, no update check."""
    app_dir = Path(tempfile.gettempdir()) / "packager-sam-cli"
    app_dir.mkdir(exist_ok=True)
    metadata = app_dir / "metadata.json"
    if not metadata.is_file():  # a last update check far in the future: sam then asks nobody
        metadata.write_text(json.dumps({"telemetryEnabled": False, "lastVersionCheck": 4102444800.0}))
    return {"PATH": "/usr/bin:/bin", "HOME": str(app_dir), "SAM_CLI_TELEMETRY": "0",
            "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true",
            "__SAM_CLI_APP_DIR": str(app_dir), "LANG": "C.UTF-8"}  # fmt: skip


def cfn_lint(template: Path) -> tuple[int, str] | None:
    """(exit code, findings) from cfn-lint, or None when it is not installed. 0 means clean."""
    tool = find("cfn-lint")
    if tool is None:
        return None
    done = subprocess.run([str(tool), template.name], capture_output=True, text=True,
                          env=offline_env(), cwd=template.parent, timeout=300, check=False)  # fmt: skip
    return done.returncode, (done.stdout + done.stderr).strip()


def sam_validate(template: Path, *, lint: bool) -> tuple[int, str] | None:
    tool = find("sam")
    if tool is None:
        return None
    command = [str(tool), "validate", "-t", template.name, *(["--lint"] if lint else [])]
    done = subprocess.run(command, capture_output=True, text=True, env=offline_env(), cwd=template.parent,
                          timeout=300, check=False)  # fmt: skip
    return done.returncode, (done.stdout + done.stderr).strip()
