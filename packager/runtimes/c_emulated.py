"""A library compiled for another CPU, run here under QEMU's user-mode emulation.

A cross-compiled static-lib variant (aarch64 on an x86_64 host) cannot be loaded into this
process, but its machine code can run: a small harness is compiled with the same cross compiler,
linked statically with ``lib<prefix>.a``, and run by ``qemu-<arch>`` on the samples, which it
reads and writes as raw arrays. The emulator's timings say nothing about the real CPU, so the
runner reports no latency.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from packager.runtimes import RuntimeUnavailable
from packager.runtimes.c import arrays_in

EMULATORS = {"aarch64": "qemu-aarch64"}
PACKAGES = {"aarch64": "qemu-user"}


def _harness(prefix: str, inputs: list[tuple[str, int, np.dtype]], outputs: list[tuple[str, int, np.dtype]]) -> str:
    """C source: `harness` prints the signature; `harness IN OUT N` runs N samples, reading each
    input's N * size values from IN in turn and writing each output's to OUT."""
    lines = [
        "#include <stdint.h>", "#include <stdio.h>", "#include <stdlib.h>", f'#include "{prefix}.h"',
        "int main(int argc, char **argv) {",
        f"    if (argc == 1) {{ puts({prefix}_signature()); return 0; }}",
        "    if (argc != 4) return 2;",
        "    const size_t n = strtoul(argv[3], 0, 10);",
        "    FILE *f = fopen(argv[1], \"rb\");",
        "    if (!f) return 3;",
    ]  # fmt: skip
    for k, (_, size, dtype) in enumerate(inputs):
        lines += [f"    char *i{k} = malloc(n * {size * dtype.itemsize} + 1);",
                  f"    if (!i{k} || fread(i{k}, {dtype.itemsize}, n * {size}, f) != n * {size}) "
                  "return 3;"]  # fmt: skip
    lines.append("    fclose(f);")
    for k, (_, size, dtype) in enumerate(outputs):
        lines.append(f"    char *o{k} = malloc(n * {size * dtype.itemsize} + 1);")
    given = ", ".join(f"i{k}" for k in range(len(inputs)))
    pointers = ", ".join(f"o{k}" for k in range(len(outputs)))
    call = f"{prefix}_infer((const void *const[]){{{given}}}, n, outs, NULL)"
    lines += [f"    void *outs[] = {{{pointers}}};", f"    if ({call} != 0) return 4;",
              "    FILE *g = fopen(argv[2], \"wb\");", "    if (!g) return 5;"]  # fmt: skip
    for k, (_, size, dtype) in enumerate(outputs):
        lines.append(f"    fwrite(o{k}, {dtype.itemsize}, n * {size}, g);")
    lines += ["    return fclose(g) != 0;", "}", ""]
    return "\n".join(lines)


class EmulatedRunner:
    """Runs ``lib<prefix>.a`` of another arch through a static harness under qemu-user."""

    measures_latency = False

    def __init__(self, library: Path, arch: str, cc: str, inputs: list[tuple[str, int, np.dtype]],
                 outputs: list[tuple[str, int, np.dtype]]) -> None:  # fmt: skip
        emulator = shutil.which(EMULATORS.get(arch, f"qemu-{arch}"))
        if emulator is None:
            raise RuntimeUnavailable(f"the library is built for {arch}; running it here needs {EMULATORS.get(arch)} "
                                     f"(apt-get install {PACKAGES.get(arch, 'qemu-user')}): compiled and linked only, "
                                     "its outputs are not checked")  # fmt: skip
        if shutil.which(cc) is None:
            raise RuntimeUnavailable(f"the library is built for {arch}; its test harness needs {cc}")
        prefix = library.stem.removeprefix("lib")
        self.work = Path(tempfile.mkdtemp(prefix="packager-emulated-"))
        self.inputs, self.outputs = inputs, outputs
        (self.work / "harness.c").write_text(_harness(prefix, self.inputs, outputs))
        done = subprocess.run([cc, "-std=c99", "-O2", "-static", f"-I{library.parent}", "-o", "harness", "harness.c",
                               str(library.with_suffix(".a")), "-lm"], cwd=self.work, capture_output=True,
                              text=True, check=False)  # fmt: skip
        if done.returncode != 0:
            raise RuntimeUnavailable(f"the {arch} test harness did not build: {done.stderr.strip()[:200]}")
        self.command = [emulator, str(self.work / "harness")]
        self.signature = json.loads(self._run([]).stdout or "{}")
        version = subprocess.run([emulator, "--version"], capture_output=True, text=True, check=False)
        self.runtime_label = (f"C library for {arch} under {version.stdout.split(chr(10))[0].strip()} "
                              f"user-mode emulation ({cc})")  # fmt: skip

    def _run(self, args: list[str]) -> subprocess.CompletedProcess[str]:
        done = subprocess.run([*self.command, *args], capture_output=True, text=True, check=False, timeout=600)
        if done.returncode != 0:
            raise RuntimeError(f"the emulated harness failed ({done.returncode}): {done.stderr.strip()[:200]}")
        return done

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        arrays = arrays_in(self.inputs, inputs)
        x = arrays[0]
        (self.work / "in.bin").write_bytes(b"".join(a.tobytes() for a in arrays))
        self._run([str(self.work / "in.bin"), str(self.work / "out.bin"), str(len(x))])
        raw, offset, results = (self.work / "out.bin").read_bytes(), 0, {}
        shapes = {o["name"]: o["shape"] for o in self.signature.get("outputs", [])}
        for name, size, dtype in self.outputs:
            count = len(x) * size
            values = np.frombuffer(raw, dtype, count, offset)
            offset += count * dtype.itemsize
            results[name] = values.reshape([len(x), *shapes.get(name, ["batch", size])[1:]])
        return results

    def close(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
