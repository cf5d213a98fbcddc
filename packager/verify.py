"""``packager verify``: re-run every variant's validation from build.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packager import samples, validate
from packager.config import Tolerance
from packager.errors import ModelInputError, VerifyError, first_line
from packager.output import file_entry
from packager.plugins import load_target
from packager.spec import Signature
from packager.target import RuntimeUnavailable


@dataclass(frozen=True, kw_only=True)
class Outcome:
    build: Path
    variant: str
    recorded: str
    now: str
    detail: str

    @property
    def ok(self) -> bool:
        if self.now == "unverified":  # no runtime here to re-run it: its files were checked
            return True
        return self.now == self.recorded or (self.recorded == "failed" and self.now == "verified")


def find_builds(dist: Path) -> list[Path]:
    if (dist / "build.json").is_file():
        return [dist]
    found = sorted(p.parent for p in dist.glob("*/*/build.json"))
    if not found:
        raise ModelInputError(
            f"no build.json in '{dist}' or in its <name>/<version>/ folders",
            hint="pass the --out folder of a build, or one of its version folders",
        )
    return found


def verify_build(vdir: Path, cache_dir: Path) -> list[Outcome]:
    try:
        record = json.loads((vdir / "build.json").read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise VerifyError(f"cannot read {vdir / 'build.json'}: {first_line(exc)}") from exc
    if record.get("schema") != 1:
        raise VerifyError(f"{vdir / 'build.json'} has schema {record.get('schema')!r}; this packager reads 1")
    val = record["validation"]
    inputs = samples.load_npz(vdir / val["samples"])
    reference = samples.load_npz(vdir / val["reference"])
    signature = Signature.from_json(record["model"]["signature"])
    task = record["model"].get("task")
    return [_verify_variant(vdir, v, inputs, reference, task, signature, cache_dir) for v in record["variants"]]


def _verify_variant(vdir: Path, variant: dict[str, Any], inputs: dict, reference: dict,
                    task: str | None, signature: Signature, cache_dir: Path) -> Outcome:  # fmt: skip
    recorded = variant["fidelity"]["status"]
    if variant["fidelity"].get("stage") == "conversion":  # never built: nothing to check or run
        return Outcome(build=vdir, variant=variant["id"], recorded=recorded, now=recorded,
                       detail=variant["fidelity"].get("reason", "not built"))  # fmt: skip
    for entry in variant["files"]:
        path = vdir / entry["path"]
        if not path.is_file():
            return Outcome(build=vdir, variant=variant["id"], recorded=recorded, now="failed",
                           detail=f"missing file {entry['path']}")  # fmt: skip
        now = file_entry(path, vdir)
        if (now["sha256"], now["bytes"]) != (entry["sha256"], entry["bytes"]):
            return Outcome(build=vdir, variant=variant["id"], recorded=recorded, now="failed",
                           detail=f"{entry['path']} changed since the build (sha256 differs)")  # fmt: skip
    if recorded == "unverified":
        return Outcome(build=vdir, variant=variant["id"], recorded=recorded, now="unverified",
                       detail="files intact; no runtime here to run it")  # fmt: skip
    target = load_target(variant["target"])
    variant_dir = vdir / variant["target"] / variant["id"]  # where the build wrote it
    main_file = Path(variant["main_file"]).relative_to(variant_dir.relative_to(vdir)).as_posix()
    tolerance = Tolerance(**variant["fidelity"]["tolerance"])
    try:
        runner = target.runner(variant_dir, main_file, cache_dir)
    except RuntimeUnavailable as exc:
        return Outcome(build=vdir, variant=variant["id"], recorded=recorded, now="unverified",
                       detail=f"files intact; {exc}")  # fmt: skip
    try:
        fid = validate.fidelity(runner, inputs, reference, tolerance, task, signature)
    finally:
        runner.close()
    detail = f"max abs err {fid['max_abs_err']:.3g} (recorded {variant['fidelity'].get('max_abs_err', 0):.3g})"
    if "top1_agreement" in fid:
        detail += f", top-1 {fid['top1_agreement']:.4f}"
    if fid.get("reason"):
        detail += f": {fid['reason']}"
    return Outcome(build=vdir, variant=variant["id"], recorded=recorded, now=fid["status"], detail=detail)
