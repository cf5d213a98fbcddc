"""Size budgets checked at build time, with the biggest contributors and what to do."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from packager.errors import BudgetError


def contributors(entries: Iterable[tuple[str, int]], top: int = 10) -> list[tuple[str, int]]:
    """Sizes grouped by top-level folder (``numpy/``) or file, largest first."""
    groups: Counter[str] = Counter()
    for name, size in entries:
        head, sep, _ = name.partition("/")
        groups[head + "/" if sep else head] += size
    return groups.most_common(top)


def fail(what: str, value: int, limit: int, parts: list[tuple[str, int]], fixes: list[str]) -> BudgetError:
    listing = ", ".join(f"{name} {mb(size)}" for name, size in parts)
    return BudgetError(
        f"{what} is {value:,} bytes ({mb(value)}), over the limit of {limit:,} bytes"
        + (f"; biggest: {listing}" if listing else ""),
        hint="; ".join(fixes),
    )


def mb(size: int) -> str:
    return f"{size / 1e6:.1f} MB"
