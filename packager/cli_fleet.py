"""The fleet's commands: shadow runs, experiments, and `packager fleet` (status, tick).

Registered on the main group by ``packager.cli``; the shared options and printing helpers are
that module's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from packager.cli import (
    _channel_option,
    _console,
    _esc,
    _keys_option,
    _pointer_line,
    _registry_option,
    _remote,
    _token_option,
)


@click.command()
@click.argument("model")
@click.option("--version", "version", help="A published version of MODEL to run in shadow.")
@click.option(
    "--percent",
    type=click.FloatRange(0, 100, min_open=True),
    default=10.0,
    show_default=True,
    help="Share of the stable cohort's devices (by a sticky hash of device id) that run it.",
)
@click.option(
    "--sample",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.1,
    show_default=True,
    help="Share of those devices' calls the shadow runs on.",
)
@click.option(
    "--cpu-budget",
    type=click.FloatRange(0, 10, min_open=True),
    default=0.25,
    show_default=True,
    help="The shadow's time, at most, as a multiple of stable's on the same device.",
)
@click.option("--off", is_flag=True, help="End the channel's shadow run.")
@_channel_option
@_registry_option
@_keys_option
def shadow(model: str, version: str | None, percent: float, sample: float, cpu_budget: float, off: bool,
           channel: str, registry: str, keys: Path | None) -> None:  # fmt: skip
    """Run VERSION of MODEL beside stable on a share of devices, unseen by the apps.

    Devices in the shadow cohort also fetch VERSION and run it on a sample of real calls (the
    app gets stable's answer only), within a CPU budget, and report whether the two agree (top-1,
    largest difference) and both latencies. `packager fleet status` shows it; a gated rollout
    can gate on it ('shadow_agreement >= 0.99'). The settings are part of the signed channel
    pointer.

    \b
    Examples:
      packager shadow digits --version 2 --percent 10 --registry ./registry
      packager shadow digits --off --registry ./registry
    """
    from packager.errors import UsageError
    from packager.registry.docs import shadow_settings
    from packager.registry.publish import shadow as run_shadow
    from packager.registry.store import open_store

    if off == (version is not None):
        raise UsageError("pass --version V to start a shadow run, or --off to end one")
    if _remote(registry, None, keys) is not None:
        raise UsageError("a shadow run is written to the registry's store, not through a server",
                         hint="pass the registry's folder or s3:// URL (and --keys)")  # fmt: skip
    settings = None if version is None else shadow_settings(version, percent, sample, cpu_budget)
    pointer = run_shadow(open_store(registry), model, settings, channel=channel, keys=keys)
    click.echo(_pointer_line(pointer))
    if pointer.shadow is None:
        click.echo("  no shadow run")
    else:
        s = pointer.shadow
        click.echo(f"  shadow: {s['version']} on {s['percent']:g}% of stable devices, {s['sample']:g} of their "
                   f"calls, at most {s['cpu_budget']:g}x stable's time")  # fmt: skip


@click.group()
def fleet() -> None:
    """What devices report, read back: loads, failures, latency, shadow runs, rewards; the controller."""


_FLEET_COLUMNS = (("version", "version"), ("variant", "variant"), ("cohort", "cohort"), ("devices", "devices"),
                  ("loads", "loads"), ("load_failure_rate", "load fail"), ("predicts", "predicts"),
                  ("error_rate", "errors"), ("p50_ms", "p50 ms"), ("p95_ms", "p95 ms"), ("p99_ms", "p99 ms"),
                  ("shadow_agreement", "shadow agree"), ("shadow_p50_ms", "shadow ms"),
                  ("mean_reward", "reward"))  # fmt: skip


@fleet.command("status")
@click.argument("model")
@_registry_option
@_token_option
@click.option("--window", default="1h", show_default=True, help="How far back: 30m, 1h, 7d (at most 31d).")
@click.option("--json", "as_json", is_flag=True, help="Print the fleet document as JSON.")
def fleet_status(model: str, registry: str, token: str | None, window: str, as_json: bool) -> None:
    """How each version and variant of MODEL does on devices over the last WINDOW.

    Reads the telemetry segments of the registry (a folder or S3, with DuckDB), or asks a server
    registry (with --token). A row with variant "all" sums a version's variants; the cohort says
    whether the version is the channel's stable one or its candidate.

    \b
    Examples:
      packager fleet status digits --registry ./registry --window 24h
      packager fleet status digits --registry http://127.0.0.1:8080 --token $TOKEN --json
    """
    import json
    from datetime import UTC, datetime

    from packager.fleet.aggregate import parse_window
    from packager.fleet.dashboard import status_document
    from packager.registry.channels import read_pointer
    from packager.registry.store import open_store

    span = parse_window(window)
    server = _remote(registry, token, None)
    if server is not None:
        doc = server.fleet(model, window=window)
    else:
        store = open_store(registry)
        doc = status_document(store, read_pointer(store, model, "stable"), span, datetime.now(UTC), tick_minutes=5.0)
    if as_json:
        click.echo(json.dumps(doc, indent=1))
        return
    _print_fleet(doc)


@fleet.command("tick")
@_registry_option
@_keys_option
@click.option(
    "--tick-minutes",
    type=click.FloatRange(0.1),
    default=5.0,
    show_default=True,
    help="How often ticks run: each one past a step's minimum counts as a look at the gates.",
)
def fleet_tick(registry: str, keys: Path | None, tick_minutes: float) -> None:
    """One pass of the controller over every gated rollout and experiment of the registry.

    Each rollout is advanced a step, promoted, halted (the candidate taken out), or held, by its
    gates over what devices reported since the step began; each Thompson experiment whose epoch
    is over gets its next allocation. Run it from a schedule, or let `packager serve --keys` run
    it.
    """
    from packager.fleet.controller import tick
    from packager.registry.store import open_store

    decisions = tick(open_store(registry), keys=keys, tick_minutes=tick_minutes)
    if not decisions:
        click.echo("nothing to decide: no gated rollout, and no experiment whose epoch is over")
    for d in decisions:
        click.echo(f"{d.model}/{d.channel}: {d.action} ({d.percent}%): {d.reason}")
        for v in d.verdicts:
            bounds = "" if v.lower is None else f" [{v.lower:.4g}, {v.upper:.4g}] of {v.trials}"
            click.echo(f"  {v.verdict:9} {v.gate}: {_cell(v.value)} vs {_cell(v.limit)}{bounds}")


@fleet.command("secret")
@_keys_option
@click.option(
    "--tokens",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The tokens file (`packager token add` writes it) whose tokens may read the fleet's numbers.",
)
def fleet_secret(keys: Path | None, tokens: Path | None) -> None:
    """Print the secret the fleet function on AWS reads (JSON, for Secrets Manager).

    It holds the online signing keys (targets, snapshot, timestamp: the controller signs its
    decisions with them; the root key stays offline) and the tokens file. Store it as the
    SecretString of the secret the template's FleetSecretArn names; keep the printed text out of
    shells' history and files others can read.

    \b
    Example:
      packager fleet secret --keys keys --tokens tokens.json > fleet-secret.json
      aws secretsmanager put-secret-value --secret-id packager-fleet --secret-string file://fleet-secret.json
      rm fleet-secret.json
    """
    import json

    from packager.errors import UsageError
    from packager.registry.signing import ONLINE_ROLES

    if keys is None and tokens is None:
        raise UsageError("nothing to put in the secret", hint="pass --keys (a signed registry), --tokens, or both")
    secret: dict[str, Any] = {"schema": 1, "keys": {}, "tokens": None}
    for role in ONLINE_ROLES if keys is not None else ():
        assert keys is not None
        path = keys / f"{role}.pem"
        if not path.is_file():
            raise UsageError(f"{keys} has no {role}.pem", hint="pass the --keys folder `packager keys init` wrote")
        secret["keys"][path.name] = path.read_text()
    if tokens is not None:
        if not tokens.is_file():
            raise UsageError(f"no tokens file at {tokens}", hint="`packager token add MODEL --tokens FILE` makes one")
        secret["tokens"] = json.loads(tokens.read_text())
    click.echo(json.dumps(secret))


def _print_fleet(doc: dict[str, Any]) -> None:
    from rich.table import Table

    console = _console(stderr=False)
    head = f"{doc['model']}: {doc['since']} to {doc['until']}, {doc['segments']} segment(s)"
    _print_rollout(console, doc.get("rollout"))
    _print_experiment(console, doc.get("experiment"))
    _print_drift(console, doc.get("drift"))
    if doc.get("shadow"):
        s = doc["shadow"]
        console.print(f"shadow run of {_esc(str(s['version']))}: {s['percent']:g}% of stable devices, {s['sample']:g} "
                      f"of their calls, at most {s['cpu_budget']:g}x stable's time", soft_wrap=True)  # fmt: skip
    if not doc["rows"]:
        console.print(f"{_esc(head)}: no events in this window", soft_wrap=True)
        return
    table = Table(title=_esc(head), title_justify="left")
    for _, label in _FLEET_COLUMNS:
        table.add_column(label, justify="left" if label in ("version", "variant", "cohort") else "right")
    for row in doc["rows"]:
        cells = ["all" if row.get(key, "") is None and key == "variant" else _cell(row.get(key))
                 for key, _ in _FLEET_COLUMNS]  # fmt: skip
        table.add_row(*(_esc(c) for c in cells))
    console.print(table)


def _print_rollout(console: Any, rollout: dict[str, Any] | None) -> None:
    """The gated rollout's plan and what a tick would decide now, with each gate's numbers."""
    if not rollout:
        return
    plan, now = rollout["plan"], rollout["now"]
    steps = ",".join(str(s) for s in plan["steps"])
    console.print(f"gated rollout of {_esc(plan['version'])}: step {plan['step'] + 1} of {len(plan['steps'])} "
                  f"({steps}%), since {plan['step_started']}", soft_wrap=True)  # fmt: skip
    console.print(f"  a tick now: {now['action']} ({now['percent']}%): {_esc(now['reason'])}", soft_wrap=True)
    for gate in now.get("gates", []):
        bounds = (
            f" [{_cell(gate.get('lower'))}, {_cell(gate.get('upper'))}] of {gate['trials']}" if "lower" in gate else ""
        )
        console.print(f"    {gate['verdict']:9} {_esc(gate['gate'])}: {_cell(gate.get('value'))} vs "
                      f"{_cell(gate.get('limit'))}{bounds}", soft_wrap=True)  # fmt: skip


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


@click.command()
@click.argument("model")
@click.option("--arm", "arms", multiple=True, metavar="VERSION[:VARIANT]",
              help="An arm: a published version, or one variant of it. Repeat, 2 to 8 arms.")  # fmt: skip
@click.option("--policy", default="thompson", show_default=True,
              help="thompson (the controller moves devices toward the better arm), or fixed:W1,W2,... "
                   "(one weight per arm).")  # fmt: skip
@click.option("--reward", default="reward", show_default=True,
              help="What the apps' feedback(reward) measures (a name for the record: clicked, kept, ...).")  # fmt: skip
@click.option("--epoch-minutes", type=click.FloatRange(0, 10080, min_open=True), default=60.0, show_default=True,
              help="Thompson: minutes between allocations; devices keep their arm within one.")  # fmt: skip
@click.option("--off", is_flag=True, help="End the channel's experiment: devices go back to stable.")
@_channel_option
@_registry_option
@_keys_option
def experiment(model: str, arms: tuple[str, ...], policy: str, reward: str, epoch_minutes: float, off: bool,
               channel: str, registry: str, keys: Path | None) -> None:  # fmt: skip
    """An A/B test or a bandit over versions (or variants) of MODEL.

    Every device of the channel is placed in an arm by a sticky hash of its id and the
    allocation epoch. Apps report how each answer served them with model.feedback(reward) (Python
    client and browser loader alike). With --policy thompson, each `packager fleet tick` after an
    epoch's minutes gives every arm its posterior chance of being the best (at least 1%) in a new,
    signed epoch; `packager fleet status` shows each arm's rewards, posterior, chance and share,
    and the estimated regret.

    \b
    Examples:
      packager experiment digits --arm 1 --arm 2 --policy thompson --reward clicked --registry ./registry
      packager experiment digits --arm 2 --arm 2:tflite-int8 --policy fixed:50,50 --registry ./registry
      packager experiment digits --off --registry ./registry
    """
    from datetime import UTC, datetime

    from packager.errors import UsageError
    from packager.fleet.experiment import parse_arms, start
    from packager.registry.publish import experiment as run_experiment
    from packager.registry.store import open_store

    if off == bool(arms):
        raise UsageError("pass --arm V at least twice to start an experiment, or --off to end one")
    if _remote(registry, None, keys) is not None:
        raise UsageError("an experiment is written to the registry's store, not through a server",
                         hint="pass the registry's folder or s3:// URL (and --keys)")  # fmt: skip
    settings = None
    if not off:
        settings = start(arms=parse_arms(arms), policy=policy, reward=reward, epoch_minutes=epoch_minutes,
                         now=datetime.now(UTC))  # fmt: skip
    pointer = run_experiment(open_store(registry), model, settings, channel=channel, keys=keys)
    click.echo(_pointer_line(pointer))
    if pointer.experiment is None:
        click.echo("  no experiment")
        return
    e = pointer.experiment
    shares = ", ".join(f"{arm} {share:.0%}" for arm, share in zip(e["arms"], e["allocation"], strict=True))
    click.echo(f"  experiment ({e['policy']}, reward {e['reward']}): {shares}")


def _print_experiment(console: Any, doc: dict[str, Any] | None) -> None:
    """Each arm's rewards, posterior, chance of being best and share of the epoch, and the regret."""
    if not doc:
        return
    console.print(f"experiment ({_esc(doc['policy'])}, reward {_esc(doc['reward'])}), epoch {doc['epoch']} since "
                  f"{doc['epoch_started']}; estimated regret {_cell(doc['regret'])}", soft_wrap=True)  # fmt: skip
    for arm in doc["arms_now"]:
        post = arm["posterior"]
        shape = (f"Beta({post['alpha']:.4g}, {post['beta']:.4g})" if post["kind"] == "beta"
                 else f"Normal({post['mean']:.4g}, {post['sd']:.3g})")  # fmt: skip
        console.print(f"  arm {_esc(arm['arm'])}: {arm['rewards']} rewards, mean {_cell(arm['mean_reward'])}, {shape}, "
                      f"P(best) {arm['p_best']:.3f}, share {arm['allocation']:.1%}", soft_wrap=True)  # fmt: skip


def _print_drift(console: Any, doc: dict[str, Any] | None) -> None:
    """Each version's features by PSI (against the build's reference and the window before)."""
    if not doc:
        return
    for version, found in doc["versions"].items():
        rows = sorted(found["features"], key=lambda r: -(r["psi"] or 0))
        flagged = ", ".join(found["drifted"]) or "none"
        console.print(f"drift of {_esc(version)} (PSI over {doc['threshold']:g} with {doc['min_count']}+ counted): "
                      f"{_esc(flagged)}", soft_wrap=True)  # fmt: skip
        for row in rows[:8]:
            mark = "  DRIFT" if row["drift"] else ""
            console.print(f"  {_esc(row['feature'])}: PSI {_cell(row['psi'])} (previous window "
                          f"{_cell(row['psi_previous'])}), {row['count']} counted{mark}", soft_wrap=True)  # fmt: skip
