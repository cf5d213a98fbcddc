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
