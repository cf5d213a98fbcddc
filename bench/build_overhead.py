"""What a build costs beyond the converter calls it makes, and what an unchanged rebuild costs.

    python bench/build_overhead.py [MODEL --samples S] [--target all] [--out bench/results/build_overhead.json]

Default model: the demo's (examples/digits/build/digits.keras, made by `make demo`). Each run a
fresh process, cold and bare side by side for ``--rounds`` rounds (default 3; the ratio is
their median, and its range is kept: this machine's speed drifts by a tenth from run to run), then
warm once:

- ``cold``: ``packager build MODEL --target all --force``, the way `make demo` runs it: import,
  every target's steps (each in packager's worker process, its output in a log), every variant
  run in its own runtime against the source model, latency, report.
- ``bare``: the same converter calls, made directly in one plain process: the importer, then
  each planned step's own function, in order, with nothing around it (no worker, no logs, no
  validation, no latency, no report). This is what a user writing the conversions by hand would
  run, and the baseline of the ratio.
- ``warm``: the cold command again with nothing changed: packager keeps the build (see
  packager/rebuild.py).

Goals (issue 13): cold <= 1.3 x bare, warm <= 0.05 x cold. The ratios, measured in one run, are
the figures; the seconds depend on the machine. A cold build checks its variants on threads
beside the worker's conversions (packager/checking.py): on this 2-core machine the checks use the
core the conversions leave.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEMO = ROOT / "examples" / "digits"


def timed(cmd: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess[str]]:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, stdin=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start, proc


def bare(model: str, samples: str | None, targets: list[str], work: Path) -> dict[str, float]:
    """Run the importer and every planned step's function in this process; seconds per step."""
    os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "0")  # as packager's worker runs them
    from packager import config, importers, pipeline
    from packager.plugins import resolve_targets
    from packager.progress import Reporter
    from packager.target import StepContext

    cfg = config.load(Path.cwd())
    source = importers.detect(model)
    vdir = work / "build"
    (vdir / "source").mkdir(parents=True)
    seconds: dict[str, float] = {}
    start = time.perf_counter()
    # The importer called here, in this process, not sent to a worker.
    pipeline._import_model = lambda source, workdir, worker, log: importers.run_importer(source, workdir)
    spec, imported, _ = pipeline._import(source, Path(samples) if samples else None, cfg, "m", "1", vdir,
                                         Reporter(), {}, None, None)  # type: ignore[arg-type]  # fmt: skip
    pipeline._reference(spec, imported, Reporter())
    seconds["import"] = time.perf_counter() - start
    cli = {"precisions": None, "latency": None, "options": {}}
    plans, _, _ = pipeline._plan_targets(resolve_targets(targets), spec, cfg, cli, explicit="all" not in targets,
                                         strict=False, reporter=Reporter())  # fmt: skip
    for target, settings, steps in plans:
        artifacts: dict[str, Path] = {}
        for step in steps:
            if step.skipped or any(r not in artifacts for r in step.requires):
                continue
            out = work / target.name / step.name
            tmp = work / "tmp" / target.name / step.name
            out.mkdir(parents=True)
            tmp.mkdir(parents=True)
            inputs = {r: artifacts[r] for r in step.requires}
            if step.requires:
                inputs["model"] = artifacts[step.requires[0]]
            ctx = StepContext(spec=spec, options=settings.options, out_dir=out, tmp_dir=tmp, inputs=inputs,
                              log=lambda _text: None, cache_dir=cfg_cache())  # fmt: skip
            start = time.perf_counter()
            try:
                artifacts[step.name] = step.run(ctx)
            except Exception as exc:  # packager's build records such a step as failed too
                print(f"bare: {target.name}/{step.name} failed: {exc}", file=sys.stderr)
            seconds[f"{target.name}/{step.name}"] = time.perf_counter() - start
    return seconds


def cfg_cache() -> Path:
    from packager.config import cache_dir

    return cache_dir()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model", nargs="?", default=str(DEMO / "build" / "digits.keras"))
    parser.add_argument("--samples", default=None, help="default: the demo's samples with the demo's model")
    parser.add_argument("--target", action="append", dest="targets", default=None)
    parser.add_argument("--cwd", type=Path, default=None, help="where packager runs (its packager.toml); default: "
                        "the demo's folder with the demo's model, else here")  # fmt: skip
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "build_overhead.json")
    parser.add_argument("--rounds", type=int, default=3, help="cold and bare runs side by side (median ratio)")
    parser.add_argument("--bare-only", type=Path, help=argparse.SUPPRESS)  # the child process of the bare run
    args = parser.parse_args()
    targets = args.targets or ["all"]
    demo = args.model == str(DEMO / "build" / "digits.keras")
    samples = args.samples or (str(DEMO / "build" / "samples.npz") if demo else None)
    cwd = args.cwd or (DEMO if demo else Path.cwd())
    if args.bare_only:
        print(json.dumps(bare(args.model, samples, targets, args.bare_only)))
        return
    if not Path(args.model).exists():
        sys.exit(f"error: {args.model} does not exist (hint: `make demo-build` trains the demo's model)")
    rounds: list[dict[str, float]] = []
    with tempfile.TemporaryDirectory(prefix="packager-bench-") as tmp:
        out = Path(tmp) / "dist"
        cmd = [sys.executable, "-m", "packager", "build", args.model, "--out", str(out)]
        cmd += [a for t in targets for a in ("--target", t)] + (["--samples", samples] if samples else [])
        bare_cmd = [sys.executable, __file__, args.model, "--bare-only", ""]
        bare_cmd += ["--samples", samples] if samples else []
        bare_cmd += [a for t in targets for a in ("--target", t)]
        for i in range(args.rounds):  # cold and bare side by side, round after round: the machine drifts
            runs: dict[str, float] = {}
            runs["cold"], proc = timed([*cmd, "--force"], cwd)
            if proc.returncode not in (0, 15):
                sys.exit(f"error: the cold build failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
            # "  ✓ tfjs-fp32  1,636,043 B, verified, ...  (8.4s)": a step's conversion and its check
            packaged = {m[0]: float(m[1]) for m in re.findall(r"✓ (\S+) .*\(([0-9.]+)s\)$", proc.stderr, re.M)}
            bare_cmd[bare_cmd.index("--bare-only") + 1] = str(Path(tmp) / f"bare-{i}")
            runs["bare"], bare_proc = timed(bare_cmd, cwd)
            if bare_proc.returncode != 0:
                sys.exit(f"error: the bare run failed: {bare_proc.stderr.strip()[-500:]}")
            steps = json.loads(bare_proc.stdout.strip().splitlines()[-1])
            rounds.append(runs)
            print(f"round {i + 1}: cold {runs['cold']:.1f} s, bare {runs['bare']:.1f} s, "
                  f"{runs['cold'] / runs['bare']:.3f}x", file=sys.stderr)  # fmt: skip
        warm, warm_proc = timed(cmd, cwd)
        if "up to date" not in warm_proc.stderr:
            sys.exit(f"error: the unchanged rebuild was not up to date: {warm_proc.stderr.strip()[-500:]}")
        record = json.loads(next(out.glob("*/*/build.json")).read_text())
    ratios = sorted(r["cold"] / r["bare"] for r in rounds)
    middle = sorted(rounds, key=lambda r: r["cold"] / r["bare"])[len(rounds) // 2]
    result = {
        "host": {"machine": platform.machine(), "cpus": os.cpu_count()},
        "python": platform.python_version(),
        "model": Path(args.model).name,
        "targets": targets,
        "variants": len(record["variants"]),
        "rounds": [{k: round(v, 2) for k, v in r.items()} for r in rounds],
        "seconds": {"cold": round(middle["cold"], 2), "bare": round(middle["bare"], 2), "warm": round(warm, 2)},
        "ratios": {
            "cold_over_bare": round(statistics.median(ratios), 3),
            "cold_over_bare_range": [round(ratios[0], 3), round(ratios[-1], 3)],
            "warm_over_cold": round(warm / middle["cold"], 4),
        },
        "goals": {"cold_over_bare": 1.3, "warm_over_cold": 0.05},
        # Per step, from the last round: packager's time (the conversion in its worker and the
        # variant's check in its runtime, not their waits for a turn) beside the bare call.
        "steps": {
            k: {"packager": packaged.get(k.split("/")[-1]), "bare": round(v, 2)}
            for k, v in sorted(steps.items(), key=lambda kv: -(packaged.get(kv[0].split("/")[-1]) or 0))
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("seconds", "ratios", "goals")}, indent=2))


if __name__ == "__main__":
    main()
