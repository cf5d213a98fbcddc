"""Where progress goes. The CLI gives a rich console; library callers and tests get silence."""

from __future__ import annotations

import contextlib
from typing import Any


class Reporter:
    """Where progress goes. The CLI passes a rich console; tests pass nothing."""

    def step(self, label: str, description: str) -> Any:

        return contextlib.nullcontext()

    def done(self, label: str, detail: str, seconds: float) -> None: ...

    def note(self, text: str) -> None: ...
