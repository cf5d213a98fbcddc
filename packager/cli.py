"""The command line: a thin click layer over the pipeline. Errors become exit codes here only."""

from __future__ import annotations

import contextlib
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
INTERRUPTED = 130  # Ctrl-C, as shells report SIGINT


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
        self._said: set[str] = set()

    def step(self, label: str, description: str) -> AbstractContextManager[Any]:
        return self.console.status(f"[bold]{_esc(label)}[/]: {_esc(description)}…", spinner="dots")

    def done(self, label: str, detail: str, seconds: float) -> None:
        self.console.print(
            f"  [green]✓[/] [bold]{_esc(label)}[/]  {_esc(detail)}  [dim]({seconds:.1f}s)[/]", soft_wrap=True
        )

    def note(self, text: str) -> None:
        # One line per distinct message: "lambda-zip-int8: max_batch 64, ..." after
        # "lambda-zip-fp32: max_batch 64, ..." says nothing new.
        # Failures are always said: each costs its own variant.
        head, sep, rest = text.partition(": ")
        key = rest if sep and " " not in head else text
        if key in self._said and not rest.startswith("failed"):
            return
        self._said.add(key)
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
@click.option("--out", type=click.Path(path_type=Path), help="Output folder. Default: dist.")
@click.option("--dry-run", is_flag=True, help="Print each target's plan and write nothing.")
@click.option(
    "--force",
    is_flag=True,
    help="Rebuild even when OUT already holds this version built from the same model, samples, settings and "
    "tools (by default such a build is kept and nothing runs), and replace a build of this version made from "
    "another model, samples or settings (by default refused, exit 5).",
)
@click.option("--strict", is_flag=True, default=None, help="Fail when any variant fails validation, not just fp32.")
@click.option("--no-latency", "no_latency", is_flag=True, help="Skip the latency measurement.")
@click.option(
    "--set",
    "settings",
    multiple=True,
    metavar="TARGET.KEY=VALUE",
    help="Set one of a target's own keys (repeatable), e.g. --set lambda-zip.engine=native. Wins over "
    "PACKAGER_TARGET_<TARGET>_<KEY> (PACKAGER_TARGET_LAMBDA_ZIP_ENGINE=native) and [tool.packager.target.<name>].",
)
@click.option(
    "--input-shape",
    "input_shapes",
    multiple=True,
    metavar="NAME=D,D,...",
    help="Fix an input's shape (repeatable), e.g. --input-shape images=1,3,320,320: the generated samples take "
    "it, and the static-shape targets (static-lib, tflite, tfjs, coreml) are built at it. Default: the shape "
    "of one sample. Config: input_shapes = {images = [1, 3, 320, 320]}.",
)
@click.option(
    "--config",
    "config_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Read settings from this TOML file instead of ./packager.toml or ./pyproject.toml.",
)
def build(model: str, targets: tuple[str, ...], precisions: tuple[str, ...], samples: Path | None,
          name: str | None, version: str | None, out: Path | None, dry_run: bool, force: bool, strict: bool | None,
          no_latency: bool, settings: tuple[str, ...], input_shapes: tuple[str, ...],
          config_path: Path | None) -> None:  # fmt: skip
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
      packager build digits.onnx --target lambda-zip --set lambda-zip.engine=native
    """
    from packager import config as config_mod
    from packager.pipeline import BuildRequest
    from packager.pipeline import build as run_build

    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # for module:factory models
    cfg = config_mod.load(Path.cwd(), config_path)
    request = BuildRequest(
        model=model, targets=targets, precisions=precisions or None, samples=samples, name=name,
        version=version, out=out, dry_run=dry_run, force=force, strict=strict, latency=False if no_latency else None,
        cache_dir=config_mod.cache_dir(), target_options=_target_settings(settings),
        input_shapes=_input_shapes(input_shapes),
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
    if result.up_to_date:
        reporter.console.print(
            f"[bold]up to date[/]: {len(variants)} variants ({verified} verified) built earlier from the same model, "
            "samples, settings and tools; nothing rebuilt (--force rebuilds)"
        )
    else:
        reporter.console.print(
            f"[bold]built[/] {len(variants)} variants ({verified} verified) in {time.perf_counter() - start:.1f}s"
        )
    assert result.path is not None
    click.echo(f"report: {(result.path / 'report.html').resolve()}")
    click.echo(f"build.json: {(result.path / 'build.json').resolve()}")
    if result.failures:
        from packager.errors import PartialBuildError

        named = "; ".join(f"{f.target} ({f.step + ': ' if f.step else ''}{f.error.message})" for f in result.failures)
        raise PartialBuildError(f"{len(result.failures)} of {result.targets} targets failed: {named}")


def _target_settings(settings: tuple[str, ...]) -> dict[str, dict[str, str]]:
    """``--set lambda-zip.engine=native`` as {"lambda-zip": {"engine": "native"}}."""
    from packager.errors import UsageError

    found: dict[str, dict[str, str]] = {}
    for item in settings:
        head, eq, value = item.partition("=")
        target, dot, key = head.partition(".")
        if not (eq and dot and target and key):
            raise UsageError(f"--set {item}: expected TARGET.KEY=VALUE", hint="e.g. --set lambda-zip.engine=native")
        found.setdefault(target, {})[key] = value
    return found


def _input_shapes(items: tuple[str, ...]) -> dict[str, tuple[int, ...]]:
    """``--input-shape x=1,3,320,320`` as {"x": (1, 3, 320, 320)}."""
    from packager.errors import UsageError

    found: dict[str, tuple[int, ...]] = {}
    for item in items:
        name, eq, dims = item.partition("=")
        try:
            shape = tuple(int(d) for d in dims.split(","))
        except ValueError:
            shape = ()
        if not (eq and name and shape):
            raise UsageError(
                f"--input-shape {item}: expected NAME=D,D,...", hint="e.g. --input-shape images=1,3,320,320"
            )
        found[name] = shape
    return found


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


@cli.command("config")
def config_keys() -> None:
    """List every setting: the keys of [tool.packager] and of each target's table, with defaults.

    \b
    Where they go, highest precedence first:
      --flag / --set TARGET.KEY=VALUE             on the command line
      PACKAGER_<KEY>, PACKAGER_TARGET_<T>_<KEY>   in the environment
      [tool.packager.target.<name>]               in pyproject.toml (or [target.<name>] in packager.toml)
      [tool.packager]                             in pyproject.toml, or the top level of packager.toml
    """
    from rich.table import Table

    from packager.config import describe

    table = Table(box=None, header_style="bold")
    for col in ("key", "default", "meaning"):
        table.add_column(col, overflow="fold")
    for key, default, meaning in describe():
        table.add_row(_esc(key), _esc(default), _esc(meaning))
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
            if outcome.recorded == "intact":  # a file of the build, not a variant
                text = outcome.detail
            console.print(f"  {mark} {_esc(text)}", soft_wrap=True)
    if bad:
        raise VerifyError(f"{bad} file(s) or variant(s) no longer match their build.json")


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
    _leave(_run())


def _run() -> int:
    try:
        result = cli.main(standalone_mode=False, prog_name="packager")
    except PackagerError as exc:
        _console().print(f"[red]error:[/] {_esc(exc.one_line())}", soft_wrap=True)
        return exc.exit_code
    except click.exceptions.Abort:
        _console().print("aborted")
        return INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except KeyboardInterrupt:
        return INTERRUPTED
    except Exception as exc:  # a bug: say so plainly, keep the traceback for whoever asks
        if os.environ.get("PACKAGER_DEBUG"):
            raise
        text = f"{type(exc).__name__}: {first_line(exc)}"
        hint = "rerun with PACKAGER_DEBUG=1 for the traceback, and please report it"
        _console().print(f"[red]internal error:[/] {_esc(text)} ({hint})", soft_wrap=True)
        return INTERNAL_ERROR
    return result if isinstance(result, int) else 0


def _leave(code: int) -> None:
    """End the process with ``code`` once Python's exit handlers have run (temporary folders,
    worker processes, logging), skipping the interpreter's teardown: native libraries a build
    loads (onnxruntime's threads) can abort in their C++ destructors on a loaded machine
    ("terminate called without an active exception", exit 134 in place of the error's code)."""
    import atexit

    try:
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


# --- registry: publish, rollout, rollback, keys ----------------------------------------------

_REGISTRY_HELP = (
    "Registry: a folder, s3://bucket/prefix (endpoint from PACKAGER_S3_ENDPOINT_URL), or a `packager serve` URL "
    "(http(s)://host, with --token). Env: PACKAGER_REGISTRY."
)
_KEYS_HELP = "Signing keys folder from `packager keys init` (needed once the registry is signed). Env: PACKAGER_KEYS."


def _registry_option(func: Any) -> Any:
    return click.option("--registry", "registry", required=True, envvar="PACKAGER_REGISTRY", metavar="PATH|s3://…",
                        help=_REGISTRY_HELP)(func)  # fmt: skip


def _keys_option(func: Any) -> Any:
    return click.option("--keys", "keys", envvar="PACKAGER_KEYS", type=click.Path(path_type=Path, file_okay=False),
                        help=_KEYS_HELP)(func)  # fmt: skip


def _token_option(func: Any) -> Any:
    return click.option("--token", envvar="PACKAGER_TOKEN", help="Bearer token of a server registry (from `packager "
                        "token add`). Env: PACKAGER_TOKEN.")(func)  # fmt: skip


def _remote(registry: str, token: str | None, keys: Path | None) -> Any:
    """The write API of a server registry, or None for a folder or S3 registry."""
    from packager.errors import UsageError
    from packager.registry.remote import Server, is_server

    if not is_server(registry):
        return None
    if keys is not None:
        raise UsageError("--keys is for a folder or S3 registry",
                         hint="a server signs with its own keys (packager serve --keys)")  # fmt: skip
    return Server(registry, token)


def _channel_option(func: Any) -> Any:
    return click.option("--channel", default="stable", show_default=True, help="Release channel.")(func)


def _pointer_line(pointer: Any) -> str:
    rollout = f", candidate {pointer.candidate} at {pointer.percent}%" if pointer.candidate else ""
    return f"{pointer.model}/{pointer.channel}: stable {pointer.stable}{rollout} (generation {pointer.generation})"


@cli.command()
@click.argument("dist", type=click.Path(path_type=Path, exists=True, file_okay=False))
@_registry_option
@_channel_option
@click.option(
    "--cloud-url", help="The model's cloud endpoint (Open Inference Protocol v2) for devices no variant fits."
)
@_keys_option
@_token_option
def publish(dist: Path, registry: str, channel: str, cloud_url: str | None, keys: Path | None,
            token: str | None) -> None:  # fmt: skip
    """Publish the builds in DIST (an --out folder or one <name>/<version> folder) to a registry.

    Uploads every file of every variant as a content-addressed artifact (checked against
    build.json while it is read), writes the immutable version document, then moves the channel:
    the first version on a channel becomes stable; later ones become the candidate at 0% until
    `packager rollout`. Variants that failed validation are never published. A crash at any
    point leaves the registry as it was or as it should be; running it again finishes the job.

    \b
    Examples:
      packager publish dist --registry ./registry
      packager keys init --keys ~/.packager-keys --registry s3://models/reg
      packager publish dist --registry s3://models/reg --keys ~/.packager-keys --cloud-url https://api.example.com
      packager publish dist --registry https://models.example.com --token "$PACKAGER_TOKEN"
    """
    from packager.registry.publish import publish as run_publish
    from packager.registry.store import open_store
    from packager.verify import find_builds

    server = _remote(registry, token, keys)
    store = open_store(registry) if server is None else None
    console = _console(stderr=False)
    for folder in find_builds(dist):
        if store is None:
            done = server.publish(folder, channel=channel, cloud_url=cloud_url)
        else:
            done = run_publish(folder, store, channel=channel, cloud_url=cloud_url, keys=keys)
        withheld = f"; withheld (failed validation): {', '.join(done.withheld)}" if done.withheld else ""
        if not done.changed:
            console.print(f"{done.model} {done.version} is already published as built: nothing changed", soft_wrap=True)
            console.print(f"  {_esc(_pointer_line(done.pointer))}", soft_wrap=True)
            continue
        console.print(f"published {done.model} {done.version}: {len(done.variants)} variants, "
                      f"{done.uploaded} new artifacts{_esc(withheld)}", soft_wrap=True)  # fmt: skip
        console.print(f"  {_esc(_pointer_line(done.pointer))}", soft_wrap=True)
        if done.pointer.candidate == done.version:
            console.print(f"  next: packager rollout {done.model} --version {done.version} --percent 5"
                          f" --channel {channel} --registry {registry}{_credentials(keys, token)}",
                          soft_wrap=True)  # fmt: skip


def _credentials(keys: Path | None, token: str | None) -> str:
    """What a printed next command needs to run as printed: the keys folder (a path, no secret),
    and for a token the variable it came from (never the token itself)."""
    import shlex

    text = f" --keys {shlex.quote(str(keys))}" if keys is not None else ""
    if token and os.environ.get("PACKAGER_TOKEN") != token:
        text += ' --token "$PACKAGER_TOKEN"  # export PACKAGER_TOKEN=<the token you published with>'
    return text


@cli.command()
@click.argument("model")
@click.option("--version", "version", required=True, help="A published version of MODEL.")
@_channel_option
@click.option(
    "--percent",
    type=click.IntRange(0, 100),
    default=100,
    show_default=True,
    help="Share of devices (by a sticky hash of device id) that get it; 100 makes it stable.",
)
@click.option(
    "--steps",
    help="A gated rollout: rising percents ending at 100 (1,5,25,100); the fleet controller "
    "moves through them as the gates pass, and halts on a failed one.",
)
@click.option(
    "--gate",
    "gates",
    multiple=True,
    metavar="EXPR",
    help="With --steps: 'load_failure_rate <= 0.01', 'p95_ms <= 1.2 * stable', "
    "'error_rate <= stable + 0.005', 'shadow_agreement >= 0.99', 'drift_psi <= 0.2'. Repeatable.",
)
@click.option(
    "--min-devices",
    type=click.IntRange(1),
    default=200,
    show_default=True,
    help="With --steps: candidate devices a step must have seen before the gates are tested.",
)
@click.option(
    "--min-minutes",
    type=click.FloatRange(0),
    default=15.0,
    show_default=True,
    help="With --steps: minutes a step runs before the gates are tested.",
)
@_registry_option
@_keys_option
@_token_option
def rollout(model: str, version: str, channel: str, percent: int, steps: str | None, gates: tuple[str, ...],
            min_devices: int, min_minutes: float, registry: str, keys: Path | None,
            token: str | None) -> None:  # fmt: skip
    """Offer VERSION of MODEL to a share of a channel's devices, or (100%) make it stable.

    With --steps, a gated rollout: the plan (steps, gates, minimums) goes into the signed channel
    pointer and `packager fleet tick` (or `packager serve --keys`, on a timer) advances it, holds
    it, or halts it and takes the candidate out, by what devices report.

    \b
    Examples:
      packager rollout digits --version 2 --percent 5 --registry ./registry
      packager rollout digits --version 2 --registry ./registry        # promote: 100%
      packager rollout digits --version 2 --steps 1,5,25,100 --gate "load_failure_rate <= 0.01" \\
          --gate "p95_ms <= 1.2 * stable" --min-devices 200 --min-minutes 15 --registry ./registry
    """
    from datetime import UTC, datetime

    from packager.errors import UsageError
    from packager.registry.docs import iso
    from packager.registry.publish import rollout as run_rollout
    from packager.registry.store import open_store

    plan = None
    if steps is not None:
        from packager.fleet.gates import Plan, parse_gate, parse_steps

        if not gates:
            raise UsageError("--steps needs at least one --gate", hint="e.g. --gate 'load_failure_rate <= 0.01'")
        plan = Plan(version=version, steps=parse_steps(steps), gates=tuple(parse_gate(g) for g in gates),
                    min_devices=min_devices, min_minutes=min_minutes, step_started=iso(datetime.now(UTC)))  # fmt: skip
        percent = plan.percent
    elif gates:
        raise UsageError("--gate is for a gated rollout", hint="add --steps, e.g. --steps 1,5,25,100")
    server = _remote(registry, token, keys)
    if server is not None:
        if plan is not None:
            raise UsageError("a gated rollout is written to the registry's store, not through a server",
                             hint="pass the registry's folder or s3:// URL (and --keys): the server's "
                                  "controller then moves it")  # fmt: skip
        pointer = server.rollout(model, version, channel=channel, percent=percent)
    else:
        pointer = run_rollout(open_store(registry), model, version, channel=channel, percent=percent, keys=keys,
                              plan=None if plan is None else plan.to_json())  # fmt: skip
    click.echo(_pointer_line(pointer))
    if plan is not None:
        click.echo(f"  gated: steps {','.join(map(str, plan.steps))}; gates: {'; '.join(g.text for g in plan.gates)}; "
                   f"at least {plan.min_devices} devices and {plan.min_minutes:g} minutes a step")  # fmt: skip


@cli.command()
@click.argument("model")
@_channel_option
@_registry_option
@_keys_option
@_token_option
def rollback(model: str, channel: str, registry: str, keys: Path | None, token: str | None) -> None:
    """Stop a running rollout of MODEL, or with none, go back to the previous stable version.

    Writes a new pointer generation (signed, when the registry is): nothing is deleted and no
    signed metadata goes back in version, so devices accept it and reject replays of old state.
    """
    from packager.registry.publish import rollback as run_rollback
    from packager.registry.store import open_store

    server = _remote(registry, token, keys)
    if server is not None:
        click.echo(_pointer_line(server.rollback(model, channel=channel)))
        return
    click.echo(_pointer_line(run_rollback(open_store(registry), model, channel=channel, keys=keys)))


@cli.group()
def keys() -> None:
    """Signing keys for a registry's TUF metadata."""


@keys.command("init")
@click.option("--keys", "keys_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="Empty folder for the new keys (root, targets, snapshot, timestamp; ed25519).")  # fmt: skip
@_registry_option
def keys_init(keys_dir: Path, registry: str) -> None:
    """Make the registry's signing keys and its TUF root, and sign what it already holds.

    Afterwards every publish, rollout and rollback needs --keys. Clients pin KEYS/root.json.
    root.pem signs only the root: keep it offline; the other three keys sign every change.
    """
    from packager.registry.publish import init_keys
    from packager.registry.store import open_store

    root = init_keys(keys_dir, open_store(registry))
    click.echo(f"keys: {keys_dir.resolve()} (keep root.pem offline)")
    click.echo(f"root to pin in clients: {root.resolve()}")


@keys.command("refresh")
@click.option("--keys", "keys_dir", required=True, type=click.Path(path_type=Path, file_okay=False),
              help="The folder `packager keys init` wrote.")  # fmt: skip
@_registry_option
def keys_refresh(keys_dir: Path, registry: str) -> None:
    """Re-sign the registry's metadata with new expiry dates, changing nothing else.

    The timestamp expires after 7 days (packager/resources/registry.toml), and clients then
    refuse the registry as frozen. Publish, rollout and rollback re-sign it; for a registry that
    sees none of those, run this from a schedule (daily), or let `packager serve --keys` do it.
    """
    from datetime import UTC, datetime

    from packager.registry.signing import expires_at, refresh
    from packager.registry.store import open_store

    store = open_store(registry)
    version = refresh(store, keys_dir, datetime.now(UTC))
    click.echo(f"re-signed {store.url}: timestamp version {version}, expires {expires_at(store)}")


# --- the manifest server and its tokens ------------------------------------------------------


@cli.command()
@click.option("--registry", required=True, envvar="PACKAGER_REGISTRY", metavar="PATH|s3://…",
              help="The registry to serve: a folder or s3://bucket/prefix. Env: PACKAGER_REGISTRY.")  # fmt: skip
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--tokens", "tokens", type=click.Path(path_type=Path, dir_okay=False), envvar="PACKAGER_TOKENS",
              help="Tokens file of the write API (`packager token add`); without it, writes are refused.")  # fmt: skip
@_keys_option
@click.option("--base-url", default="", help="Public URL prefix for artifact URLs in resolutions (default: relative).")
@click.option("--telemetry", type=click.Path(path_type=Path, dir_okay=False),
              help="Append device telemetry to this JSON Lines file (default: the store's telemetry/).")  # fmt: skip
@click.option("--cors-origin", "cors_origins", multiple=True, default=("*",), show_default=True,
              help="Origin of pages whose browser loader may call the read API (repeatable).")  # fmt: skip
def serve(registry: str, host: str, port: int, tokens: Path | None, keys: Path | None, base_url: str,
          telemetry: Path | None, cors_origins: tuple[str, ...]) -> None:  # fmt: skip
    """Serve a registry over HTTP: catalog, per-device resolve, artifacts, TUF metadata, writes.

    One process, one event loop (uvicorn on uvloop; resolve is answered in the HTTP protocol's
    callbacks): the server keeps no state of its own, so run more replicas over the same registry
    for more throughput. OpenAPI at /openapi.json, Prometheus metrics at /metrics.

    \b
    Examples:
      packager serve --registry ./registry
      packager serve --registry s3://models/reg --tokens tokens.json --keys ~/.packager-keys --port 8080
      curl -s -X POST localhost:8080/v1/models/digits/resolve -d '{"platform": "linux", "arch": "x86_64",
           "runtimes": {"onnxruntime": "1.20"}}'
    """
    from packager.errors import require

    require("uvicorn", "server")
    from packager.registry.signing import is_signed
    from packager.server.serving import Options, build, check_port, run

    check_port(host, port)
    options = Options(registry=registry, tokens=tokens, keys=keys, base_url=base_url, telemetry=telemetry,
                      cors_origins=cors_origins)  # fmt: skip
    app = build(options)  # a wrong registry or --keys fails here, before anything listens
    store = app.state.service.view.store
    writes = f"writes with tokens from {tokens}" if tokens else "read-only (no --tokens)"
    signed = "signed" if is_signed(store) else "unsigned"
    click.echo(f"packager serve: http://{host}:{port} serving {store.url} ({signed}; {writes})", err=True)
    run(app, host=host, port=port)


@cli.group()
def token() -> None:
    """Tokens of a server's write API (publish, rollout, rollback)."""


@token.command("add")
@click.option("--model", required=True, help="The model the token may write, or '*' for every model.")
@click.option("--tokens", "tokens", required=True, type=click.Path(path_type=Path, dir_okay=False),
              envvar="PACKAGER_TOKENS", help="The file `packager serve --tokens` reads (made if new).")  # fmt: skip
@click.option("--note", default="", help="Who or what the token is for (kept in the file).")
def token_add(model: str, tokens: Path, note: str) -> None:
    """Make a token for MODEL's write API and print it once (the file keeps only a scrypt hash)."""
    from packager.server.tokens import add_token

    click.echo(add_token(tokens, model, note=note))
    click.echo(f"stored (hashed) in {tokens}; it is not shown again", err=True)


# --- the device client -----------------------------------------------------------------------


def _default_cache() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "packager"


@cli.command()
@click.argument("model")
@click.option("--server", required=True, envvar="PACKAGER_SERVER", help="The manifest server's URL.")
@click.option("--cache", "cache_dir", type=click.Path(path_type=Path, file_okay=False), default=None,
              help="Cache folder (default: $XDG_CACHE_HOME/packager or ~/.cache/packager).")  # fmt: skip
@click.option("--profile", "profile_file", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="A DeviceProfile JSON file (default: this host, detected).")  # fmt: skip
@click.option("--root", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="The registry's TUF root.json to pin: every document and artifact is verified.")  # fmt: skip
@_channel_option
@click.option("--predict", "samples", type=click.Path(path_type=Path, dir_okay=False, exists=True),
              help="Load the model and run one prediction on this .npz (input name -> array).")  # fmt: skip
def fetch(model: str, server: str, cache_dir: Path | None, profile_file: Path | None, root: Path | None,
          channel: str, samples: Path | None) -> None:  # fmt: skip
    """Resolve MODEL for this device, download, verify and install the chosen variant.

    \b
    Examples:
      packager fetch digits --server http://127.0.0.1:8080 --root keys/root.json
      packager fetch digits --server http://127.0.0.1:8080 --profile phone.json --cache ./cache
      packager fetch digits --server http://127.0.0.1:8080 --predict samples.npz
    """
    import json

    from packager.client import Client

    profile = None
    if profile_file is not None:
        try:
            profile = json.loads(profile_file.read_text())
        except ValueError as exc:
            raise click.BadParameter(f"{profile_file} is not JSON: {exc}", param_hint="--profile") from exc
    cache = cache_dir or _default_cache()
    with Client(server, model, cache_dir=cache, profile=profile, channel=channel, root=root) as client:
        if samples is None:
            done = client.fetch()
            click.echo(f"{model} {done.version}: {done.variant['id']} ({done.variant['runtime']['name']}), "
                       f"{done.downloaded} bytes downloaded")  # fmt: skip
            for original, path in done.files.paths.items():
                click.echo(f"  {original} -> {path}")
            return
        loaded = client.load()
        try:
            _print_prediction(loaded, samples)
        finally:
            loaded.close()


def _print_prediction(loaded: Any, samples: Path) -> None:
    import numpy as np

    where = f"{loaded.variant} in {loaded.runtime}" if loaded.source == "local" else loaded.runtime
    click.echo(f"{loaded.model} {loaded.version}: {loaded.source}, {where}{' (offline)' if loaded.offline else ''}")
    from packager.errors import SamplesError

    try:
        with np.load(samples, allow_pickle=False) as data:
            inputs = {name: data[name] for name in data.files}
    except Exception as exc:  # zipfile, zlib and numpy each have their own
        raise SamplesError(f"--predict {samples}: not a readable .npz: {first_line(exc)}") from exc
    # One array for a one-input model, whatever its name (as `packager build --samples` takes it).
    outputs = loaded.predict(next(iter(inputs.values())) if len(inputs) == 1 else inputs)
    for name, value in outputs.items():
        line = f"  {name}: {value.dtype} {list(value.shape)}"
        if value.size and np.issubdtype(value.dtype, np.number):
            line += f", min {value.min():.4g}, max {value.max():.4g}, mean {value.mean():.4g}"
        if value.ndim == 2 and value.shape[1] > 1:
            line += f", argmax of the first rows {value.argmax(axis=1)[:8].tolist()}"
        click.echo(line)


def _register() -> None:
    from packager.cli_fleet import experiment, fleet, shadow

    for command in (shadow, experiment, fleet):
        cli.add_command(command)


_register()
