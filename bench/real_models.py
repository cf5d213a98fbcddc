"""Every target on every corpus model: which builds, how close, how long. One run, no retries.

    python bench/real_models.py [--models a,b] [--targets onnx,tflite] [--timeout 900]
                                [--out bench/results/real_models.json] [--keep DIR]

The models are the real third-party ones of tests/corpus (fetched into its cache first). Each
(model, target) pair is one `packager build MODEL --target T --samples S` in a child process
with a wall-clock timeout, in a fresh output folder. Recorded per pair: the exit code (or the
signal that killed it, or the timeout), the last line it wrote to stderr, the wall seconds, and
from build.json (when it wrote one) each fp32 variant's fidelity status and max abs error. The
matrix goes to --out as JSON and to stdout as a markdown table. `packager inspect` runs once per
model too. A failure is a result to read, not an error of this script.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.corpus import models as corpus  # noqa: E402

TARGETS = ["onnx", "lambda-zip", "lambda-container", "ort-web", "triton", "tflite", "tfjs", "coreml", "static-lib"]
PACKAGER = Path(sys.executable).with_name("packager")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", default=",".join(corpus.BY_NAME), help="comma-separated corpus names")
    parser.add_argument("--targets", default=",".join(TARGETS), help="comma-separated target names")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per build")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "real_models.json")
    parser.add_argument("--keep", type=Path, help="keep each build's output and logs under this folder")
    parser.add_argument("--precision", default="fp32", help="comma-separated precisions to build (default: fp32)")
    parser.add_argument(
        "--merge",
        action="store_true",
        help="update only the pairs run now in an existing --out (rerun some targets after a fix)",
    )
    parser.add_argument("--readme", action="store_true", help="print --out as the README's compact matrix and exit")
    args = parser.parse_args()
    names, targets = _pick(args.models, corpus.BY_NAME), _pick(args.targets, TARGETS)
    if args.readme:
        print(_readme(json.loads(args.out.read_text())))
        return
    earlier = json.loads(args.out.read_text()) if args.merge and args.out.is_file() else None
    results = []
    for name in names:
        try:
            model = corpus.fetch(name, log=lambda line: print(f"corpus: {line}", file=sys.stderr, flush=True))
        except corpus.CorpusError as exc:
            print(f"corpus: {name}: {exc}", file=sys.stderr, flush=True)
            results.append({"model": name, "kind": corpus.entry(name).kind, "fetch_error": str(exc), "targets": {}})
            continue
        samples = corpus.fetch_samples(name)
        inspected = _run([str(PACKAGER), "inspect", str(model)], Path(tempfile.gettempdir()), args.timeout)
        row: dict = {"model": name, "kind": corpus.entry(name).kind, "inspect": _summary(inspected), "targets": {}}
        for target in targets:
            print(f"{name} x {target} ...", file=sys.stderr, flush=True)
            row["targets"][target] = _build(name, model, samples, target, args.timeout, args.keep,
                                            [p for p in args.precision.split(",") if p])  # fmt: skip
            print(f"  {_cell(row['targets'][target])}", file=sys.stderr, flush=True)
        results.append(row)
        if earlier is None:  # a run in progress leaves a whole file: merged as it goes under --merge
            _write(args.out, results, targets, args.timeout)
        else:
            _write(args.out, _merged(earlier, results), list(earlier["targets"]), args.timeout)
    if earlier is not None:
        results, targets = _merged(earlier, results), list(earlier["targets"])
    _write(args.out, results, targets, args.timeout)
    print(_table(results, targets))
    print(f"\nwrote {args.out}")


def _pick(given: str, known: dict | list) -> list[str]:
    picked = [x.strip() for x in given.split(",") if x.strip()]
    unknown = [x for x in picked if x not in known]
    if unknown:
        raise SystemExit(f"unknown: {', '.join(unknown)} (choose from: {', '.join(known)})")
    return picked


def _build(name: str, model: Path, samples: Path, target: str, timeout: float, keep: Path | None,
           precisions: list[str]) -> dict:  # fmt: skip
    work = Path(tempfile.mkdtemp(prefix=f"bench-real-{name}-{target}-"))
    try:
        cmd = [str(PACKAGER), "build", str(model), "--samples", str(samples), "--target", target,
               "--name", name, "--out", str(work / "dist"), "--no-latency"]  # fmt: skip
        for precision in precisions:
            cmd += ["--precision", precision]
        done = _run(cmd, work, timeout)
        result = _summary(done)
        record = next(iter(sorted((work / "dist").glob("*/*/build.json"))), None)
        result["build_json"] = record is not None
        if record is not None:
            result["fp32"] = _fp32(json.loads(record.read_text()), target)
        if keep is not None:
            dest = keep / name / target
            shutil.rmtree(dest, ignore_errors=True)
            dest.parent.mkdir(parents=True, exist_ok=True)
            (work / "stdout.log").write_text(done["stdout"])
            (work / "stderr.log").write_text(done["stderr"])
            shutil.copytree(work, dest)
        return result
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(cmd: list[str], cwd: Path, timeout: float) -> dict:
    """Run a child with its own session, so that a timeout ends its children too."""
    start = time.perf_counter()
    child = subprocess.Popen(cmd, cwd=cwd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                             text=True, start_new_session=True)  # fmt: skip
    timed_out = False
    try:
        stdout, stderr = child.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        timed_out = True
        _kill_group(child)
        stdout, stderr = child.communicate()
    return {"rc": child.returncode, "timed_out": timed_out, "seconds": round(time.perf_counter() - start, 1),
            "stdout": stdout, "stderr": stderr}  # fmt: skip


def _kill_group(child: subprocess.Popen) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(child.pid, signal.SIGKILL)


def _summary(done: dict) -> dict:
    rc = done["rc"]
    died = signal.Signals(-rc).name if rc is not None and rc < 0 else None
    last = _last_line(done["stderr"]) or _last_line(done["stdout"])
    return {"exit_code": rc, "signal": died, "timed_out": done["timed_out"], "seconds": done["seconds"],
            "traceback": "Traceback (most recent call last)" in done["stderr"], "last_stderr": last}  # fmt: skip


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    return lines[-1][:400] if lines else ""


def _fp32(record: dict, target: str) -> list[dict]:
    picked = []
    for v in record.get("variants", []):
        if v.get("target") == target and v.get("precision") == "fp32":
            fid = v.get("fidelity") or {}
            picked.append({"id": v.get("id"), "status": fid.get("status"), "max_abs_err": fid.get("max_abs_err"),
                           "reason": fid.get("reason")})  # fmt: skip
    return picked


def _cell(r: dict) -> str:
    if r["timed_out"]:
        head = f"timeout {r['seconds']:.0f}s"
    elif r["signal"]:
        head = f"{r['signal']} {r['seconds']:.0f}s"
    else:
        head = f"rc {r['exit_code']} {r['seconds']:.0f}s"
    fid = ", ".join(f"{v['status']}" + (f" {v['max_abs_err']:.2g}" if v.get("max_abs_err") is not None else "")
                    for v in r.get("fp32", []))  # fmt: skip
    return f"{head}; {fid}" if fid else head


def _table(results: list[dict], targets: list[str]) -> str:
    lines = ["| model | " + " | ".join(targets) + " |", "|---" * (len(targets) + 1) + "|"]
    for row in results:
        cells = [_cell(row["targets"][t]) if t in row["targets"] else "not fetched" for t in targets]
        lines.append(f"| {row['model']} | " + " | ".join(cells) + " |")
    failures = [(row["model"], t, row["targets"][t]) for row in results for t in targets
                if t in row["targets"] and row["targets"][t]["exit_code"] != 0]  # fmt: skip
    if failures:
        lines += ["", "Last stderr line of each build that did not exit 0:", ""]
        lines += [f"- {m} x {t}: `{r['last_stderr']}`" for m, t, r in failures]
    return "\n".join(lines)


def _merged(earlier: dict, fresh: list[dict]) -> list[dict]:
    """``earlier``'s rows with the pairs of ``fresh`` put in their place."""
    rows = {row["model"]: row for row in earlier["models"]}
    for row in fresh:
        if row["model"] in rows:
            rows[row["model"]]["targets"].update(row["targets"])
        else:
            rows[row["model"]] = row
    return list(rows.values())


VERDICTS = {4: "ops", 10: "size", 7: "converter", 8: "mismatch", 15: "partial"}


def _readme(doc: dict) -> str:
    """One cell per pair: ✓ and the fp32 max abs error, or the kind of refusal (reasons below)."""
    targets = doc["targets"]
    lines = ["| model | kind | " + " | ".join(targets) + " |", "|---" * (len(targets) + 2) + "|"]
    notes: list[str] = []
    for row in doc["models"]:
        cells = []
        for t in targets:
            r = row["targets"].get(t)
            ok = r and r["exit_code"] == 0 and r.get("fp32") and all(v["status"] == "verified" for v in r["fp32"])
            if ok:
                cells.append("✓ " + f"{max(v['max_abs_err'] for v in r['fp32']):.0e}")
            elif r and r["exit_code"] == 0 and r.get("fp32") and all(v["status"] == "unverified" for v in r["fp32"]):
                cells.append("spec ✓")  # Core ML: its spec checked, its numerics need macOS
            elif r is None:
                cells.append("—")
            else:
                cells.append(VERDICTS.get(r["exit_code"], f"exit {r['exit_code']}"))
                why = r["last_stderr"].removeprefix("error: ").split(" (hint:")[0]
                for cut in (": packager's C generator", ": [ONNXRuntimeError]", ", over the limit"):
                    why = why.split(cut)[0]
                notes.append(f"- {row['model']} × {t}: {why[:200]}")
        lines.append(f"| {row['model']} | {row['kind'].split(' (')[0]} | " + " | ".join(cells) + " |")
    return "\n".join([*lines, "", *notes])


def _write(out: Path, results: list[dict], targets: list[str], timeout: float) -> None:
    import packager

    out.parent.mkdir(parents=True, exist_ok=True)
    for row in results:  # the builds' temporary folders say nothing to a reader
        for r in row["targets"].values():
            if "last_stderr" in r:
                r["last_stderr"] = re.sub(r"/\S*/bench-real-[^/\s]+", "<build>", r["last_stderr"])
    doc = {"host": platform.machine(), "python": platform.python_version(), "packager": packager.__version__,
           "timeout_s": timeout, "targets": targets, "models": results}  # fmt: skip
    out.write_text(json.dumps(doc, indent=2) + "\n")


if __name__ == "__main__":
    main()
