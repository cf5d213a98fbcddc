"""The command line: a thin click layer over the pipeline. Errors become exit codes here only."""

from __future__ import annotations

import os
import sys
import time
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any

import click

from packager import __version__
from packager.errors import PackagerError, first_line
from packager.progress import Reporter
from packager.vocab import PRECISIONS

INTERNAL_ERROR = 70


def _console(stderr: bool = True) -> Any:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def _esc(text: str) -> str:
    """User and model text may hold brackets ([batch, 64]); rich must not read them as markup."""
    from rich.markup import escape

    return escape(text)


def _progress_console() -> Any:
    """A console on a copy of stderr's descriptor: converters that silence native stderr
    (TensorFlow's C++ logging) while they load do not swallow our progress lines."""
    from rich.console import Console

    stream: Any
    try:
        stream = os.fdopen(os.dup(sys.stderr.fileno()), "w", buffering=1, encoding="utf-8", errors="replace")
    except (OSError, ValueError, AttributeError):  # no real descriptor (captured by a test)
        stream = sys.stderr
    return Console(file=stream, highlight=False, force_terminal=sys.stderr.isatty() or None)


class ConsoleReporter(Reporter):
    """Progress on stderr: a spinner while a step runs, one line when it is done."""

    def __init__(self) -> None:
        self.console = _progress_console()

    def step(self, label: str, description: str) -> AbstractContextManager[Any]:
        return self.console.status(f"[bold]{_esc(label)}[/]: {_esc(description)}…", spinner="dots")

    def done(self, label: str, detail: str, seconds: float) -> None:
        self.console.print(
            f"  [green]✓[/] [bold]{_esc(label)}[/]  {_esc(detail)}  [dim]({seconds:.1f}s)[/]", soft_wrap=True
        )

    def note(self, text: str) -> None:
        self.console.print(f"  [yellow]![/] {_esc(text)}", soft_wrap=True)


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, prog_name="packager")
def cli() -> None:
    """Compile one trained model into every bundle its users deploy, each checked against the source.

    \b
    Typical use:
      packager inspect model.onnx              what the model is and which targets take it
      packager build model.onnx --target all   build every target into dist/
      packager verify dist                     re-run every variant's validation

    Settings come from [tool.packager] in pyproject.toml or packager.toml in this folder; CLI flags
    win over PACKAGER_* environment variables, which win over the file.
    """


@cli.command()
@click.argument("model")
@click.option(
    "--target",
    "-t",
    "targets",
    multiple=True,
    metavar="T",
    help="Target to build (repeatable); 'all' builds every installed target. Default: onnx.",
)
@click.option(
    "--precision",
    "-p",
    "precisions",
    multiple=True,
    type=click.Choice(PRECISIONS),
    help="Precision to emit (repeatable). Default: all the target supports.",
)
@click.option(
    "--samples",
    type=click.Path(path_type=Path, dir_okay=False),
    help="A .npz of sample inputs, one array per model input (batch first). "
    "Default: generated from the signature with a fixed seed.",
)
@click.option("--name", help="Model name in the output. Default: the file's stem.")
@click.option("--version", "version", help="Model version in the output. Default: 1.")
@click.option("--out", type=click.Path(path_type=Path, file_okay=False), help="Output folder. Default: dist.")
@click.option("--dry-run", is_flag=True, help="Print each target's plan and write nothing.")
@click.option("--strict", is_flag=True, default=None, help="Fail when any variant fails validation, not just fp32.")
@click.option("--no-latency", "no_latency", is_flag=True, help="Skip the latency measurement.")
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Read settings from this TOML file instead of ./packager.toml or ./pyproject.toml.",
)
def build(model: str, targets: tuple[str, ...], precisions: tuple[str, ...], samples: Path | None,
          name: str | None, version: str | None, out: Path | None, dry_run: bool, strict: bool | None,
          no_latency: bool, config_path: Path | None) -> None:  # fmt: skip
    """Build MODEL (.onnx, .pt2, module:factory, .keras, SavedModel folder, .joblib/.pkl).

    Writes OUT/<name>/<version>/ with build.json, report.html and one folder per target and
    variant. Every variant is run in its own runtime on the samples and compared with the source
    model. The build fails when a target's fp32 variant is out of tolerance (the conversion is
    wrong), or with --strict when any variant is. A failed build leaves nothing behind.

    \b
    Examples:
      packager build model.onnx --target onnx --samples samples.npz --out dist
      packager build model.keras --target all --precision fp32 --precision int8
      packager build mypkg.models:make_model --name digits --version 2 --dry-run
    """
    from packager import config as config_mod
    from packager.pipeline import BuildRequest
    from packager.pipeline import build as run_build

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # for module:factory models
    cfg = config_mod.load(Path.cwd(), config_path)
    request = BuildRequest(
        model=model, targets=targets, precisions=precisions or None, samples=samples, name=name,
        version=version, out=out, dry_run=dry_run, strict=strict, latency=False if no_latency else None,
        cache_dir=config_mod.cache_dir(),
    )  # fmt: skip
    reporter = ConsoleReporter()
    start = time.perf_counter()
    result = run_build(request, cfg, reporter)
    if dry_run:
        _print_plans(result.plans)
        return
    for warning in result.warnings:
        reporter.note(warning)
    variants = result.record["variants"]
    verified = sum(v["fidelity"]["status"] == "verified" for v in variants)
    reporter.console.print(
        f"[bold]built[/] {len(variants)} variants ({verified} verified) in {time.perf_counter() - start:.1f}s"
    )
    assert result.path is not None
    click.echo(f"report: {(result.path / 'report.html').resolve()}")
    click.echo(f"build.json: {(result.path / 'build.json').resolve()}")


def _print_plans(plans: list[Any]) -> None:
    for target, steps in plans:
        click.echo(f"target {target.name}:")
        for i, step in enumerate(steps, 1):
            kind = f"variant {step.variant.precision}" if step.variant else "intermediate"
            needs = f" (from {', '.join(step.requires)})" if step.requires else ""
            line = f"  {i}. {step.name} [{kind}]: {step.description}{needs}"
            click.echo(line if not step.skipped else f"  {i}. {step.name} [not built]: {step.skipped}")


@cli.command()
def targets() -> None:
    """List the installed targets and what each emits."""
    from rich.table import Table

    from packager.plugins import load_target, target_names

    table = Table(box=None, header_style="bold")
    for col in ("target", "precisions", "emits", "what"):
        table.add_column(col)
    for name in target_names():
        try:
            t = load_target(name)
            table.add_row(name, ", ".join(t.precisions), t.emits, t.summary)
        except PackagerError as exc:
            table.add_row(name, "—", "—", f"[red]cannot load[/]: {_esc(exc.one_line())}")
    _console(stderr=False).print(table)


@cli.command()
@click.argument("model")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def inspect(model: str, as_json: bool) -> None:
    """Show MODEL's signature, ops and size, and which targets can take it."""
    from packager.inspect import inspect_model, render

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    info = inspect_model(model)
    if as_json:
        import json

        click.echo(json.dumps(info, indent=2))
    else:
        render(info, _console(stderr=False))


@cli.command()
@click.argument("dist", type=click.Path(path_type=Path, exists=True, file_okay=False))
def verify(dist: Path) -> None:
    """Re-run every variant's validation recorded in DIST (an --out folder or a version folder).

    Checks each file's sha256 and size, runs each variant in its runtime on the stored samples,
    and compares with the stored source outputs. Exits non-zero when anything no longer holds.
    """
    from packager import config as config_mod
    from packager.errors import VerifyError
    from packager.verify import find_builds, verify_build

    console = _console(stderr=False)
    bad = 0
    for vdir in find_builds(dist):
        console.print(f"[bold]{_esc(str(vdir))}[/]", soft_wrap=True)
        for outcome in verify_build(vdir, config_mod.cache_dir()):
            mark = "[green]✓[/]" if outcome.ok else "[red]✗[/]"
            bad += not outcome.ok
            text = f"{outcome.variant}: {outcome.now} (recorded {outcome.recorded}); {outcome.detail}"
            console.print(f"  {mark} {_esc(text)}", soft_wrap=True)
    if bad:
        raise VerifyError(f"{bad} variant(s) no longer match their build.json")


def _fixed_hash_seed() -> None:
    """Re-run this process once with PYTHONHASHSEED=0 (unless the user chose a seed).

    Converters (tf2onnx's graph optimizer, float16 passes) iterate over sets of tensor names, so
    with Python's per-process hash seed the same model gives differently named, differently
    ordered graphs. A fixed seed makes builds byte-reproducible.
    """
    if "PYTHONHASHSEED" in os.environ or getattr(sys, "frozen", False):
        return
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    try:
        os.execve(sys.executable, [sys.executable, "-m", "packager", *sys.argv[1:]], env)
    except OSError:
        return  # keep going with a random seed: the build works, its bytes may vary


def main() -> None:
    """Entry point: the one place that turns errors into exit codes."""
    _fixed_hash_seed()
    try:
        cli.main(standalone_mode=False)
    except PackagerError as exc:
        _console().print(f"[red]error:[/] {_esc(exc.one_line())}", soft_wrap=True)
        sys.exit(exc.exit_code)
    except click.exceptions.Abort:
        _console().print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as exc:  # a bug: say so plainly, keep the traceback for whoever asks
        if os.environ.get("PACKAGER_DEBUG"):
            raise
        text = f"{type(exc).__name__}: {first_line(exc)}"
        hint = "rerun with PACKAGER_DEBUG=1 for the traceback, and please report it"
        _console().print(f"[red]internal error:[/] {_esc(text)} ({hint})", soft_wrap=True)
        sys.exit(INTERNAL_ERROR)
