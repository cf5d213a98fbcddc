"""The registry commands as a user runs them: output, exit codes and one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import run_cli


def test_cli_publish_rollout_rollback_on_a_signed_registry(built_mlp: Path, tmp_path: Path) -> None:
    reg, keys = tmp_path / "reg", tmp_path / "keys"
    init = run_cli("keys", "init", "--keys", keys, "--registry", reg)
    assert init.code == 0 and "root to pin in clients" in init.out, init.err
    done = run_cli(
        "publish", built_mlp.parent.parent, "--registry", reg, "--keys", keys, "--cloud-url", "https://x.example"
    )
    assert done.code == 0, done.err
    assert "published mlp 1: 5 variants, 5 new artifacts" in done.out and "stable 1 (generation 1)" in done.out
    doc = json.loads((reg / "models/mlp/versions/1.json").read_text())
    assert doc["cloud"]["url"] == "https://x.example"
    rolled = run_cli("rollout", "mlp", "--version", "1", "--registry", reg, "--keys", keys)
    assert rolled.code == 0 and "generation 2" in rolled.out, rolled.err
    back = run_cli("rollback", "mlp", "--registry", reg, "--keys", keys)
    assert back.code == 2 and "no earlier stable version" in back.error_lines[0]


def test_cli_signed_registry_without_keys_is_a_one_line_error(tmp_path: Path, built_mlp: Path) -> None:
    reg = tmp_path / "reg"
    assert run_cli("keys", "init", "--keys", tmp_path / "keys", "--registry", reg).code == 0
    result = run_cli("publish", built_mlp, "--registry", reg)
    assert result.code == 13 and len(result.error_lines) == 1 and "pass --keys DIR" in result.error_lines[0]
    assert "Traceback" not in result.err


def test_cli_errors_name_the_problem_and_exit_codes(tmp_path: Path, built_mlp: Path) -> None:
    server = run_cli("publish", built_mlp, "--registry", "https://models.example.com")
    assert server.code == 2 and "needs a token" in server.error_lines[0]
    store = run_cli("keys", "init", "--keys", tmp_path / "keys", "--registry", "https://models.example.com")
    assert store.code == 2 and "is a server, not a store" in store.error_lines[0]
    missing = run_cli("rollout", "mlp", "--version", "7", "--percent", "5", "--registry", tmp_path / "reg")
    assert missing.code == 11 and "not published" in missing.error_lines[0]
    bad = run_cli("rollback", "../etc", "--registry", tmp_path / "reg")
    assert bad.code == 2 and "invalid model name" in bad.error_lines[0]


def test_cli_registry_help_teaches_with_examples() -> None:
    result = run_cli("publish", "--help")
    assert result.code == 0 and "packager publish dist --registry ./registry" in result.out
    assert "--cloud-url" in result.out and "PACKAGER_REGISTRY" in result.out


def test_cli_publishs_next_command_runs_as_printed_on_a_signed_registry(built_mlp: Path, tmp_path: Path) -> None:
    import shlex
    import shutil

    reg, keys, dist = tmp_path / "reg", tmp_path / "keys", tmp_path / "dist"
    assert run_cli("keys", "init", "--keys", keys, "--registry", reg).code == 0
    for version in ("1", "2"):
        shutil.copytree(built_mlp, dist / version / "mlp" / version)
        record = json.loads((dist / version / "mlp" / version / "build.json").read_text())
        record["model"]["version"] = version
        (dist / version / "mlp" / version / "build.json").write_text(json.dumps(record))
        done = run_cli("publish", dist / version, "--registry", reg, "--keys", keys)
        assert done.code == 0, done.err
    (line,) = [ln.strip() for ln in done.out.splitlines() if ln.strip().startswith("next: ")]
    command = shlex.split(line.removeprefix("next: "))
    assert command[:2] == ["packager", "rollout"] and "--keys" in command
    rolled = run_cli(*command[1:])
    assert rolled.code == 0 and "candidate 2 at 5%" in rolled.out, rolled.err


def test_cli_rollout_of_what_is_not_published_says_what_is(built_mlp: Path, tmp_path: Path) -> None:
    reg = tmp_path / "reg"
    assert run_cli("publish", built_mlp, "--registry", reg).code == 0
    version = run_cli("rollout", "mlp", "--version", "11", "--registry", reg)
    assert version.code == 11 and "mlp version 11 is not published" in version.err
    assert "did you mean '1'?" in version.err and "published versions of mlp: 1" in version.err
    model = run_cli("rollout", "mpl", "--version", "1", "--registry", reg)
    assert model.code == 11 and "model 'mpl' is not published" in model.err and "did you mean 'mlp'?" in model.err
