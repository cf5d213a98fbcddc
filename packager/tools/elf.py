"""What a compiled library asks of the system, read with binutils' ``readelf`` (any arch, so a
cross-compiled library is checked on this host too)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

# e_machine values of the ELF header (offset 18, little-endian) that packager compiles for.
MACHINES = {0x3E: "x86_64", 0xB7: "aarch64", 0x03: "i386", 0x28: "arm"}


def verify() -> str | None:
    """The readelf in use, or None."""
    return shutil.which("readelf")


def needs(library: Path) -> tuple[list[str], list[tuple[int, ...]]]:
    """The shared libraries a library names (DT_NEEDED) and the glibc symbol versions it asks for."""
    dynamic = subprocess.run(["readelf", "-d", "-W", str(library)], capture_output=True, text=True, check=True)
    needed = sorted(re.findall(r"\(NEEDED\)\s+Shared library: \[([^\]]+)\]", dynamic.stdout))
    verinfo = subprocess.run(["readelf", "-V", "-W", str(library)], capture_output=True, text=True, check=True)
    versions = {version(v) for v in re.findall(r"Name: GLIBC_([0-9.]+)", verinfo.stdout)}
    return needed, sorted(versions)


def section_sizes(path: Path) -> dict[str, int]:
    """Bytes per kind of section of an ELF file: ``text`` (.text*), ``rodata`` (.rodata*),
    ``data`` (.data*) and ``bss`` (.bss*), summed over the sections of each kind."""
    listing = subprocess.run(["readelf", "-S", "-W", str(path)], capture_output=True, text=True, check=True)
    sizes = {"text": 0, "rodata": 0, "data": 0, "bss": 0}
    for name, size in re.findall(r"\]\s+(\.\S+)\s+\S+\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)", listing.stdout):
        kind = name[1:].split(".", 1)[0]
        if kind in sizes:
            sizes[kind] += int(size, 16)
    return sizes


def machine(library: Path) -> str:
    """The architecture an ELF file was built for ("x86_64", "aarch64", ...)."""
    with library.open("rb") as f:
        head = f.read(20)
    if head[:4] != b"\x7fELF" or len(head) < 20:
        return "unknown"
    code = int.from_bytes(head[18:20], "little" if head[5] == 1 else "big")
    return MACHINES.get(code, f"elf-machine-{code}")


def version(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))
