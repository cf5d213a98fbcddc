"""The manifest service's SAM template (templates/service.yaml) passes cfn-lint and `sam validate`
(plain and --lint), offline, and the repository's samconfig.toml builds it with `sam build`."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest
import yaml

from packager.tools import sam

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "templates" / "service.yaml"


@pytest.fixture(scope="module", autouse=True)
def checkers() -> None:
    if None in sam.verify().values():
        pytest.fail(f"the template checkers are missing ({sam.verify()}); `make setup` installs them")


def test_service_template_passes_cfn_lint() -> None:
    assert sam.cfn_lint(TEMPLATE) == (0, "")


@pytest.mark.parametrize("lint", [True, False])
def test_service_template_passes_sam_validate(lint: bool) -> None:
    result = sam.sam_validate(TEMPLATE, lint=lint)
    assert result is not None
    code, output = result
    assert code == 0 and "is a valid SAM Template" in output, output


def test_service_template_scopes_what_cloudfront_and_the_function_may_do() -> None:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: f"!{suffix}")  # intrinsics as plain text
    resources = yaml.load(TEMPLATE.read_text(), Loader=Loader)["Resources"]  # a SafeLoader
    bucket = resources["RegistryBucket"]["Properties"]
    assert bucket["VersioningConfiguration"] == {"Status": "Enabled"}
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    statements = resources["ManifestFunction"]["Properties"]["Policies"][0]["Statement"]
    assert sorted(s["Action"] for s in statements) == ["s3:GetObject", "s3:ListBucket", "s3:PutObject"]
    behaviors = resources["ArtifactsDistribution"]["Properties"]["DistributionConfig"]["CacheBehaviors"]
    assert [b["PathPattern"] for b in behaviors] == ["artifacts/*"]
    assert resources["ManifestFunction"]["Metadata"] == {"BuildMethod": "makefile"}
    fleet = resources["FleetFunction"]["Properties"]
    actions = [s.get("Action") for s in fleet["Policies"][0]["Statement"] if isinstance(s, dict)]
    assert actions == [["s3:GetObject", "s3:PutObject"], "s3:ListBucket"]  # no delete, nothing outside the bucket
    assert fleet["Events"]["Tick"]["Type"] == "Schedule"
    assert 'Schedule: !Sub "rate(${FleetTickMinutes} minutes)"' in TEMPLATE.read_text()
    routes = sorted((e["Properties"]["Method"], e["Properties"]["Path"]) for e in fleet["Events"].values()
                    if e["Type"] == "HttpApi")  # fmt: skip
    assert routes == [("GET", "/dashboard/{m}"), ("GET", "/v1/models/{m}/dashboard"), ("GET", "/v1/models/{m}/fleet")]


def test_service_sam_build_from_the_repository_root_runs_offline(tmp_path: Path) -> None:
    """`sam build` as samconfig.toml's default config runs it: the makefile method needs make only."""
    tool = sam.find("sam")
    assert tool is not None
    build = tmp_path / "build"
    done = subprocess.run([str(tool), "build", "--build-dir", str(build), "--cache-dir", str(tmp_path / "cache")],
                          cwd=ROOT, env=sam.offline_env(), capture_output=True, text=True, timeout=300,
                          check=False)  # fmt: skip
    assert done.returncode == 0, done.stdout + done.stderr
    function = build / "ManifestFunction"
    assert (function / "manifest.py").read_bytes() == (ROOT / "handlers" / "manifest.py").read_bytes()
    assert (function / "packager" / "registry" / "resolve.py").is_file()
    assert not (function / "inference.py").exists()  # only what the Makefile puts there
    assert "CodeUri: ManifestFunction" in (build / "template.yaml").read_text()
    fleet = build / "FleetFunction"
    assert (fleet / "fleet.py").read_bytes() == (ROOT / "handlers" / "fleet.py").read_bytes()
    assert (fleet / "packager" / "fleet" / "controller.py").is_file()
    # DuckDB and python-tuf for the template's default platform (arm64: aarch64 wheels)
    assert list((fleet / "duckdb").glob("*.py")) and list(fleet.glob("_duckdb*aarch64*.so")) + list(
        fleet.glob("_duckdb.abi3.so"))  # fmt: skip
    assert (fleet / "tuf" / "api" / "metadata.py").is_file()
