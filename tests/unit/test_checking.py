"""Turns: conversions and checks side by side, latency runs alone (packager.checking)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager

from packager.checking import Turns

BLOCKED_S = 0.3  # long enough to see that a thread did not get its turn; never asserted as a speed
LONG_S = 10.0


class Holder:
    """Takes a turn on a thread of its own and keeps it until released."""

    def __init__(self, turn: Callable[[], AbstractContextManager[None]]) -> None:
        self.started, self.release = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, args=(turn,), daemon=True)
        self.thread.start()

    def _run(self, turn: Callable[[], AbstractContextManager[None]]) -> None:
        with turn():
            self.started.set()
            self.release.wait(LONG_S)

    def done(self) -> None:
        self.release.set()
        self.thread.join(LONG_S)


def test_turns_a_check_runs_beside_a_conversion() -> None:
    turns = Turns()
    conversion = Holder(turns.converting)
    assert conversion.started.wait(LONG_S)
    check = Holder(turns.checking)
    assert check.started.wait(LONG_S)
    check.done()
    conversion.done()


def test_turns_a_latency_run_waits_for_the_conversion_and_holds_the_next() -> None:
    turns = Turns()
    conversion = Holder(turns.converting)
    assert conversion.started.wait(LONG_S)
    measure = Holder(turns.measuring)
    assert not measure.started.wait(BLOCKED_S)
    check = Holder(turns.checking)  # beside the conversion it may still start
    assert check.started.wait(LONG_S)
    check.done()
    following = Holder(turns.converting)  # a measurement is waiting: no new conversion
    conversion.done()
    assert measure.started.wait(LONG_S)
    assert not following.started.wait(BLOCKED_S)
    measure.done()
    assert following.started.wait(LONG_S)
    following.done()


def test_turns_with_the_worker_idle_a_waiting_latency_run_goes_before_a_new_check() -> None:
    turns = Turns()
    check = Holder(turns.checking)
    assert check.started.wait(LONG_S)
    measure = Holder(turns.measuring)
    assert not measure.started.wait(BLOCKED_S)
    second = Holder(turns.checking)
    assert not second.started.wait(BLOCKED_S)
    check.done()
    assert measure.started.wait(LONG_S)
    assert not second.started.wait(BLOCKED_S)
    measure.done()
    assert second.started.wait(LONG_S)
    second.done()


def test_turns_a_conversion_never_waits_for_a_check_to_end() -> None:
    turns = Turns()
    check = Holder(turns.checking)
    assert check.started.wait(LONG_S)
    measure = Holder(turns.measuring)
    conversion = Holder(turns.converting)  # the latency run waits for the check; this need not
    assert conversion.started.wait(LONG_S)
    check.done()
    assert not measure.started.wait(BLOCKED_S)
    conversion.done()
    assert measure.started.wait(LONG_S)
    measure.done()


def test_turns_checks_wait_while_too_many_checked_variants_wait_for_their_latency_run() -> None:
    turns = Turns()
    for _ in range(Turns.MAX_UNTIMED):
        turns.untimed(+1)
    check = Holder(turns.checking)
    assert not check.started.wait(BLOCKED_S)
    turns.untimed(-1)
    assert check.started.wait(LONG_S)
    check.done()
