"""Run ``packager`` with every LocalStore write slowed down, for the crash test to kill it.

Usage: python slow_publish.py DELAY_S packager-args...  Prints "ready" once imports are done;
each write then sleeps DELAY_S after its temp file is written and before it is moved into place.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import packager.registry.publish
import packager.registry.signing
import packager.registry.verify
import packager.verify  # noqa: F401  (all imported before "ready": the kills should hit writes)
from packager.cli import main
from packager.registry.store import LocalStore

_write_temp = LocalStore._write_temp
DELAY_S = float(sys.argv[1]) if __name__ == "__main__" else 0.0


def _slow_write_temp(self: LocalStore, final: Path, data: Any) -> Path:
    path = _write_temp(self, final, data)
    time.sleep(DELAY_S)
    return path


if __name__ == "__main__":
    import tuf.api.metadata  # noqa: F401
    from securesystemslib.signer import CryptoSigner  # noqa: F401

    LocalStore._write_temp = _slow_write_temp  # type: ignore[method-assign]
    print("ready", flush=True)
    sys.argv = ["packager", *sys.argv[2:]]
    main()
