"""The step worker: a converter that crashes, hangs, prints or litters costs its step only."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import crashing_steps
import pytest

from packager.errors import ConversionError, UnsupportedOpError
from packager.isolation import Worker
from packager.spec import ModelSpec, Signature
from packager.target import Step, StepContext


@pytest.fixture
def worker(tmp_path: Path) -> Iterator[Worker]:
    w = Worker(tmp_path / "work", timeout_s=60)
    yield w
    w.close()


def _ctx(tmp_path: Path, notes: list[str]) -> StepContext:
    spec = ModelSpec(name="m", version="1", source_format="onnx", source_path=tmp_path / "m.onnx", source_sha256="",
                     onnx_path=tmp_path / "m.onnx", original_path=None,
                     signature=Signature(inputs=(), outputs=()))  # fmt: skip
    out = tmp_path / "out"
    out.mkdir(exist_ok=True)
    return StepContext(spec=spec, options=None, out_dir=out, tmp_dir=tmp_path, inputs={}, log=notes.append,
                       cache_dir=tmp_path / "cache")  # fmt: skip


def _step(run: object) -> Step:
    return Step(name=f"step-{run.__name__}", description="", run=run)  # type: ignore[arg-type, attr-defined]


def test_isolation_runs_the_step_in_another_process(worker: Worker, tmp_path: Path) -> None:
    outcome = worker.run(_step(crashing_steps.ok), _ctx(tmp_path, []), tmp_path / "ok.log")
    assert outcome.artifact.read_text() == "made in the worker"
    assert outcome.notes == ["a note from the worker"]
    assert outcome.checks == [{"name": "crash.bytes", "value": 3, "limit": 10, "ok": True}]
    assert worker._process is not None and worker._process.pid != os.getpid()


def test_isolation_sends_prints_to_the_log_and_strays_to_a_private_folder(
    worker: Worker, tmp_path: Path, capfd: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    here = tmp_path / "cwd"
    here.mkdir()
    monkeypatch.chdir(here)
    log = tmp_path / "logs" / "noisy.log"
    worker.run(_step(crashing_steps.noisy), _ctx(tmp_path, []), log)
    captured = capfd.readouterr()
    assert "printed by the converter" not in captured.out + captured.err
    text = log.read_text()
    assert "printed by the converter" in text and "written to descriptor 2 by native code" in text
    assert list(here.iterdir()) == []
    assert list((tmp_path / "work").rglob("stray.data"))


def test_isolation_reraises_a_packager_error_as_it_was(worker: Worker, tmp_path: Path) -> None:
    with pytest.raises(UnsupportedOpError) as caught:
        worker.run(_step(crashing_steps.refuses), _ctx(tmp_path, []), tmp_path / "r.log")
    assert caught.value.message == "this converter cannot take op Fancy"
    assert caught.value.hint == "use another target"


def test_isolation_turns_a_converter_exception_into_a_conversion_error(worker: Worker, tmp_path: Path) -> None:
    log = tmp_path / "raises.log"
    with pytest.raises(ConversionError) as caught:
        worker.run(_step(crashing_steps.raises), _ctx(tmp_path, []), log)
    assert caught.value.message == (
        "step 'step-raises' failed: ValueError: Cannot take the length of shape with unknown rank."
    )
    assert str(log) in caught.value.hint
    assert "Traceback" in log.read_text()


def test_isolation_survives_a_signal_and_starts_a_new_worker(worker: Worker, tmp_path: Path) -> None:
    log = tmp_path / "sigill.log"
    with pytest.raises(ConversionError) as caught:
        worker.run(_step(crashing_steps.illegal_instruction), _ctx(tmp_path, []), log)
    assert "step 'step-illegal_instruction' was killed by SIGILL" in caught.value.message
    assert str(log) in caught.value.hint and "about to die" in log.read_text()
    outcome = worker.run(_step(crashing_steps.ok), _ctx(tmp_path, []), tmp_path / "after.log")
    assert outcome.artifact.is_file()


def test_isolation_names_an_exit_without_an_answer(worker: Worker, tmp_path: Path) -> None:
    with pytest.raises(ConversionError, match=r"ended its worker process \(exit code 3\)"):
        worker.run(_step(crashing_steps.exits), _ctx(tmp_path, []), tmp_path / "exit.log")


def test_isolation_stops_a_step_past_its_timeout(tmp_path: Path) -> None:
    worker = Worker(tmp_path / "work", timeout_s=3)
    try:
        with pytest.raises(ConversionError, match=r"step 'step-hangs' timed out after 3 s"):
            worker.run(_step(crashing_steps.hangs), _ctx(tmp_path, []), tmp_path / "hang.log")
        assert worker._process is None
    finally:
        worker.close()
