"""``packager verify``: re-run every variant's validation from build.json."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from packager import samples, validate
from packager.config import Tolerance
from packager.errors import ModelInputError, PackagerError, VerifyError, first_line
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
    """Every file build.json records (the source model, the original, the validation samples and
    reference, each variant's files) against its sha256 and size, then every variant run again."""
    try:
        record = json.loads((vdir / "build.json").read_text())
    except (OSError, json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise VerifyError(f"cannot read {vdir / 'build.json'}: {first_line(exc)}") from exc
    if not isinstance(record, dict) or record.get("schema") != 1:
        schema = record.get("schema") if isinstance(record, dict) else None
        raise VerifyError(f"{vdir / 'build.json'} has schema {schema!r}; this packager reads 1")
    try:
        return _verify_record(vdir, record, cache_dir)
    except (KeyError, TypeError, ValueError) as exc:  # a build.json edited by hand, or truncated
        raise VerifyError(f"{vdir / 'build.json'} is not a build record packager wrote: {first_line(exc)}") from exc


def _verify_record(vdir: Path, record: dict[str, Any], cache_dir: Path) -> list[Outcome]:
    model, val = record["model"], record["validation"]
    entries = [model["canonical"], *model.get("original", []), *val.get("files", [])]
    broken = [Outcome(build=vdir, variant=e["path"], recorded="intact", now="failed", detail=problem)
              for e in entries if (problem := _file_problem(vdir, e))]  # fmt: skip
    if any(o.variant.startswith("validation/") for o in broken):  # nothing to run the variants on
        return broken
    try:
        inputs = samples.load_npz(vdir / val["samples"])
        reference = samples.load_npz(vdir / val["reference"])
    except PackagerError as exc:
        raise VerifyError(f"cannot read the validation files of {vdir}: {exc.message}") from exc
    signature = Signature.from_json(model["signature"])
    task = model.get("task")
    checked = [_verify_variant(vdir, v, inputs, reference, task, signature, cache_dir) for v in record["variants"]]
    return broken + checked


def _file_problem(vdir: Path, entry: dict[str, Any]) -> str:
    """Why a recorded file is not as the build wrote it ("" when it is)."""
    path = vdir / entry["path"]
    if not path.is_file():
        return f"missing file {entry['path']}"
    now = file_entry(path, vdir)
    if (now["sha256"], now["bytes"]) != (entry["sha256"], entry["bytes"]):
        return f"{entry['path']} changed since the build (sha256 differs)"
    return ""


def _verify_variant(vdir: Path, variant: dict[str, Any], inputs: dict, reference: dict,
                    task: str | None, signature: Signature, cache_dir: Path) -> Outcome:  # fmt: skip
    recorded = variant["fidelity"]["status"]
    if variant["fidelity"].get("stage") == "conversion":  # never built: nothing to check or run
        return Outcome(build=vdir, variant=variant["id"], recorded=recorded, now=recorded,
                       detail=variant["fidelity"].get("reason", "not built"))  # fmt: skip
    for entry in variant["files"]:
        problem = _file_problem(vdir, entry)
        if problem:
            return Outcome(build=vdir, variant=variant["id"], recorded=recorded, now="failed", detail=problem)
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
