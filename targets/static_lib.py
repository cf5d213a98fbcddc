"""The ``static-lib`` target: the model compiled into a self-contained C library.

Emits ``model.c`` (packager's own ONNX → C99 generator, see packager/codegen), ``<prefix>.h``,
``lib<prefix>.so`` and ``lib<prefix>.a`` built with gcc (``-O3``, portable ``-march=x86-64-v2``
by default), ``<prefix>.pc``, a ``Makefile`` and a ``CMakeLists.txt`` to rebuild from source, and
``example/main.c``. The library needs libc and libm only (checked). Validation loads the ``.so``
with ctypes and runs the samples through ``<prefix>_run``. With ``cross = "aarch64"`` a second
variant is compiled with Debian's aarch64-linux-gnu-gcc and validated under qemu-aarch64's
user-mode emulation (unverified, with the reason, where QEMU is not installed).
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import numpy as np

from packager import batching, codegen, shapes
from packager.errors import ConversionError, MissingDependencyError
from packager.resources import fill, template_path
from packager.runtimes.c import CRunner, header_outputs
from packager.runtimes.c_emulated import EmulatedRunner
from packager.spec import ModelSpec
from packager.target import RuntimeUnavailable, Step, StepContext, Target, VariantInfo
from packager.targets import onnx as onnx_target
from packager.tools import elf

ALLOWED_LIBS = ("linux-vdso", "libc.so", "libm.so", "ld-linux")
# Cross targets: the Debian cross compiler and a -march every such CPU runs (Armv8.0-A: a
# Raspberry Pi 3/4, Graviton, phones).
CROSS = {"aarch64": {"cc": "aarch64-linux-gnu-gcc", "march": "armv8-a", "package": "gcc-aarch64-linux-gnu"}}


SMALL_MODEL = 2**31 - 1  # bytes: what the x86-64 and AArch64 small code models reach


@dataclass(frozen=True, kw_only=True)
class StaticLibOptions:
    """``[tool.packager.target.static-lib]`` keys."""

    prefix: str = ""
    march: str = "x86-64-v2"
    cross: str = ""  # "aarch64": also compile for it with the cross compiler
    # Budgets, in bytes; the defaults are the reach of the small code model (2 GiB)
    max_text_bytes: int = SMALL_MODEL
    max_rodata_bytes: int = SMALL_MODEL
    max_workspace_bytes: int = SMALL_MODEL
    HELP: ClassVar[dict[str, str]] = {
        "prefix": "C identifier prefixing every symbol and file (default: the model's name)",
        "march": "gcc -march of the host library, e.g. x86-64-v2 (portable) or native",
        "cross": "also compile for this architecture with its cross compiler: 'aarch64'",
        "max_text_bytes": "the most code (.text) the model's object may hold: a firmware's flash budget",
        "max_rodata_bytes": "the most constants (.rodata: the weights) it may hold",
        "max_workspace_bytes": "the most workspace one predict call may need (the caller's RAM budget)",
    }

    def __post_init__(self) -> None:
        if self.cross and self.cross not in CROSS:
            raise ValueError(f"cross must be one of {', '.join(CROSS)}, not '{self.cross}'")
        if self.prefix and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]{0,40}", self.prefix):
            raise ValueError("prefix must be a C identifier")
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", self.march):
            raise ValueError("march must be a -march value such as x86-64-v2 or native")
        for kind in ("text", "rodata", "workspace"):
            if not 0 < int(getattr(self, f"max_{kind}_bytes")) <= SMALL_MODEL:
                raise ValueError(f"max_{kind}_bytes must be between 1 and {SMALL_MODEL} (the small code model's reach)")


class StaticLibTarget(Target):
    name = "static-lib"
    static_shapes = True
    summary = "the model compiled to C99 by packager's own generator: .so, .a, header; libc+libm only"
    emits = "model.c, <prefix>.h, lib<prefix>.so, lib<prefix>.a, <prefix>.pc"
    precisions = ("fp32",)
    tools = ("gcc", "ar")
    Options = StaticLibOptions

    def check(self, spec: ModelSpec) -> None:
        onnx_target.OnnxTarget().check(spec)  # the generator folds constants with onnxruntime first
        with tempfile.TemporaryDirectory(prefix="packager-codegen-") as work:
            model = codegen.prepare(spec.onnx_path, Path(work), shapes=shapes.one_sample(spec))
            codegen.generate(model, "check", {"name": "", "version": "", "sha256": "", "signature": ""})

    def plan(self, spec: ModelSpec, options: StaticLibOptions, precisions: tuple[str, ...]) -> list[Step]:
        steps = onnx_target.model_steps("static-lib", spec, ("fp32",))
        variant = VariantInfo(id="static-lib-fp32", precision="fp32", runtime="c", min_version="c99",
                              main_file=f"lib{prefix_for(spec, options)}.so", arch=host_arch())  # fmt: skip
        description = f"generate C99, compile with gcc -O3 -march={options.march}, check ldd"
        library = Step(
            name=variant.id, variant=variant, run=_library, requires=("static-lib-model",), description=description
        )
        steps.append(library)
        if options.cross:
            steps.append(_cross_step(options.cross, variant.main_file))
        return steps

    def runner(self, variant_dir: Path, main_file: str, cache_dir: Path) -> CRunner | EmulatedRunner:
        library = variant_dir / main_file
        built_for = elf.machine(library)
        prefix = library.stem.removeprefix("lib")
        header = (library.parent / f"{prefix}.h").read_text()
        if built_for == host_arch():
            try:
                return CRunner(library, header, prefix, label=f"C library via ctypes ({_compiler()})")
            except OSError as exc:
                raise RuntimeUnavailable(f"the library does not load on this host ({host_arch()}): {exc}") from exc
        if built_for not in CROSS:
            raise RuntimeUnavailable(f"the library is built for {built_for} and this host is {host_arch()}")
        inputs, outputs = header_outputs(prefix, header, "INPUT"), header_outputs(prefix, header)
        return EmulatedRunner(library, built_for, CROSS[built_for]["cc"], inputs, outputs)


def _cross_step(arch: str, main_file: str) -> Step:
    facts = CROSS[arch]
    note = f"cross-compiled with {facts['cc']}; checked here under qemu-user emulation when installed (no latency)"
    variant = VariantInfo(id=f"static-lib-{arch}-fp32", precision="fp32", runtime="c", min_version="c99",
                          main_file=main_file, arch=arch, notes=note)  # fmt: skip
    description = f"compile with {facts['cc']} -O3 -march={facts['march']}, run it under qemu-{arch}"
    return Step(name=variant.id, variant=variant, run=_cross_library, requires=("static-lib-model",),
                description=description)  # fmt: skip


def host_arch() -> str:
    import platform

    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def prefix_for(spec: ModelSpec, options: StaticLibOptions) -> str:
    if options.prefix:
        return options.prefix
    name = re.sub(r"[^A-Za-z0-9_]", "_", spec.name).lower()
    return name if re.match(r"[a-z_]", name) else f"m_{name}"


def _library(ctx: StepContext) -> Path:
    spec, options, out = ctx.spec, ctx.options, ctx.out_dir
    prefix = prefix_for(spec, options)
    start = time.perf_counter()
    source = compile_library(ctx.inputs["model"], spec, out, prefix, march=options.march, work=ctx.tmp_dir)
    ctx.check(f"{out.name}.compile_ms", round((time.perf_counter() - start) * 1000), 60_000)
    _check_sizes(ctx, source)
    _check_libs(ctx, out / f"lib{prefix}.so", shared_libs(out / f"lib{prefix}.so"))
    _sources(ctx, prefix, options.march)
    return out / f"lib{prefix}.so"


def _cross_library(ctx: StepContext) -> Path:
    spec, options, out = ctx.spec, ctx.options, ctx.out_dir
    facts = CROSS[options.cross]
    if shutil.which(facts["cc"]) is None:
        raise MissingDependencyError(f"static-lib's cross = \"{options.cross}\" compiles with {facts['cc']}, which "
                                     "is not on PATH", hint=f"apt-get install {facts['package']}")  # fmt: skip
    prefix = prefix_for(spec, options)
    source = compile_library(ctx.inputs["model"], spec, out, prefix, march=facts["march"], work=ctx.tmp_dir,
                             cc=facts["cc"])  # fmt: skip
    _check_sizes(ctx, source)
    library = out / f"lib{prefix}.so"
    built_for = elf.machine(library)
    if built_for != options.cross:
        raise ConversionError(f"{facts['cc']} produced a {built_for} library, not {options.cross}")
    _check_libs(ctx, library, elf.needs(library)[0])
    _sources(ctx, prefix, facts["march"])
    return library


def _check_sizes(ctx: StepContext, source: codegen.CSource) -> None:
    """What the model costs a firmware: the object's code and constants (readelf, any arch) and
    the workspace a predict call needs, each held to its budget (options ``max_*_bytes``)."""
    sections = elf.section_sizes(ctx.tmp_dir / "model.o")
    sizes = {"text": sections["text"], "rodata": sections["rodata"], "workspace": source.workspace_floats * 4}
    for kind, value in sizes.items():
        limit = int(getattr(ctx.options, f"max_{kind}_bytes"))
        if not ctx.check(f"{ctx.out_dir.name}.{kind}_bytes", value, limit):
            raise ConversionError(f"the library's {kind} is {value:,} bytes, over max_{kind}_bytes = {limit:,}",
                                  hint=f"raise [tool.packager.target.static-lib] max_{kind}_bytes, or build a "
                                       "smaller model (int8 weights are not generated yet)")  # fmt: skip


def _check_libs(ctx: StepContext, library: Path, libs: list[str]) -> None:
    (ctx.out_dir / "ldd.txt").write_text("\n".join(libs) + "\n")
    extra = [lib for lib in libs if not lib.startswith(ALLOWED_LIBS)]
    if not ctx.check(f"{ctx.out_dir.name}.shared_libs_beyond_libc_libm", len(extra), 0):
        raise ConversionError(f"{library.name} links {', '.join(extra)}; it must need libc and libm only")


def _sources(ctx: StepContext, prefix: str, march: str) -> None:
    """What rebuilds the library from source, and the example that calls it."""
    spec, out = ctx.spec, ctx.out_dir
    values = {"prefix": prefix, "PREFIX": prefix.upper(), "march": march, "name": spec.name,
              "version": spec.version}  # fmt: skip
    for name, target in (("Makefile", "Makefile"), ("CMakeLists.txt", "CMakeLists.txt"),
                         ("package.pc", f"{prefix}.pc")):  # fmt: skip
        (out / target).write_text(fill(template_path("static_lib", name).read_text(), values))
    (out / "example").mkdir()
    header = (out / f"{prefix}.h").read_text()
    inputs, outputs = header_outputs(prefix, header, "INPUT"), header_outputs(prefix, header)
    (out / "example" / "main.c").write_text(example_source(prefix, inputs, outputs))
    first = batching.take(spec.samples, spec.signature.inputs, 0, 1)
    numbers = [v for name, _, _ in inputs for v in np.asarray(first[name]).reshape(-1).tolist()]
    (out / "example" / "sample.txt").write_text(" ".join(f"{v:.9g}" if isinstance(v, float) else str(v)
                                                         for v in numbers) + "\n")  # fmt: skip


def example_source(
    prefix: str, inputs: list[tuple[str, int, np.dtype]], outputs: list[tuple[str, int, np.dtype]]
) -> str:
    """example/main.c: reads one sample (every input's values in the header's order, as text),
    runs it through ``<prefix>_infer`` and prints the name and version, then every output's values
    one per line (a line ``# 'name'`` before each when there are several)."""
    up = prefix.upper()
    lines = ["/* Reads one sample from the file named first (default example/sample.txt): the values of every",
             f"   input, in the order {prefix}.h lists them, as numbers. Prints every output. */",
             "#include <inttypes.h>", "#include <stdio.h>", f'#include "{prefix}.h"', "",
             "static int read_values(FILE *f, double *to, size_t n) {",
             "    for (size_t i = 0; i < n; ++i)",
             "        if (fscanf(f, \"%lf\", &to[i]) != 1) return -1;",
             "    return 0;", "}", "",
             "int main(int argc, char **argv) {",
             "    FILE *f = fopen(argc > 1 ? argv[1] : \"example/sample.txt\", \"r\");",
             "    if (!f) { perror(\"sample\"); return 2; }"]  # fmt: skip
    for k, (name, _, dtype) in enumerate(inputs):
        c = _C_TYPES[dtype.name]
        lines += [f"    static double v{k}[{up}_INPUT{k}_SIZE];", f"    static {c} in{k}[{up}_INPUT{k}_SIZE];",
                  f"    if (read_values(f, v{k}, {up}_INPUT{k}_SIZE) != 0) {{",
                  f"        fprintf(stderr, \"sample: expected %d numbers for input '{name}'\\n\",",
                  f"                {up}_INPUT{k}_SIZE);",
                  "        return 2;", "    }",
                  f"    for (size_t i = 0; i < {up}_INPUT{k}_SIZE; ++i) in{k}[i] = ({c})v{k}[i];"]  # fmt: skip
    lines.append("    fclose(f);")
    for k, (_, _, dtype) in enumerate(outputs):
        lines.append(f"    static {_C_TYPES[dtype.name]} out{k}[{up}_OUTPUT{k}_SIZE];")
    given = ", ".join(f"in{k}" for k in range(len(inputs)))
    taken = ", ".join(f"out{k}" for k in range(len(outputs)))
    lines += [f"    const void *inputs[] = {{{given}}};", f"    void *outputs[] = {{{taken}}};",
              f"    if ({prefix}_infer(inputs, 1, outputs, NULL) != 0) return 1;",
              f"    printf(\"%s %s\\n\", {prefix}_name(), {prefix}_version());"]  # fmt: skip
    for k, (name, _, dtype) in enumerate(outputs):
        if len(outputs) > 1:
            lines.append(f"    puts(\"# '{name}'\");")
        value = f"printf(\"%.9g\\n\", (double)out{k}[i])" if dtype.kind == "f" else \
            f"printf(\"%\" PRId64 \"\\n\", (int64_t)out{k}[i])"  # fmt: skip
        lines.append(f"    for (size_t i = 0; i < {up}_OUTPUT{k}_SIZE; ++i) {value};")
    lines += ["    return 0;", "}", ""]
    return "\n".join(lines)


_C_TYPES = {"float32": "float", "float64": "double", "int64": "int64_t", "int32": "int32_t", "int16": "int16_t",
            "int8": "int8_t", "uint64": "uint64_t", "uint32": "uint32_t", "uint16": "uint16_t", "uint8": "uint8_t",
            "bool": "uint8_t"}  # fmt: skip


def compile_library(
    model_path: Path,
    spec: ModelSpec,
    out: Path,
    prefix: str,
    *,
    march: str,
    work: Path,
    cc: str = "gcc",
    static: bool = True,
) -> codegen.CSource:
    """Generate model.c and <prefix>.h into ``out`` and compile lib<prefix>.so (and lib<prefix>.a).

    ``cc`` is the C compiler (a cross compiler such as aarch64-linux-gnu-gcc works the same way);
    the archiver is found next to it.
    """
    compiler = shutil.which(cc)
    archiver = shutil.which(cc[: -len("gcc")] + "ar") if cc.endswith("gcc") else shutil.which("ar")
    if compiler is None or (static and archiver is None):
        raise MissingDependencyError(f"static-lib needs {cc} and its ar", hint="apt-get install gcc binutils")
    sha = hashlib.sha256(Path(model_path).read_bytes()).hexdigest()
    signature = json.dumps(shapes.fixed_signature(spec), separators=(",", ":")).replace('"', '\\"')
    meta = {"name": spec.name, "version": spec.version, "sha256": sha, "signature": signature}
    source = codegen.build_source(Path(model_path), work, prefix, meta, shapes.one_sample(spec))
    (out / "model.c").write_text(source.code)
    (out / f"{prefix}.h").write_text(source.header)
    # fp-contract=fast: ISO C mode would otherwise keep every a * b + c a separate multiply and
    # add; fused they run the matrix products at FMA speed (and round once instead of twice).
    # One position-independent object makes both libraries: the compile (a transformer's weights
    # are millions of initializers) runs once.
    flags = ["-std=c99", "-O3", "-ffp-contract=fast", f"-march={march}", "-fPIC"]
    obj = (work / "model.o").absolute()
    _run([compiler, *flags, "-c", "-o", str(obj), "model.c"], out)
    _run([compiler, "-shared", "-o", f"lib{prefix}.so", str(obj), "-lm"], out)
    if static:
        _run([str(archiver), "rcsD", f"lib{prefix}.a", str(obj)], out)
    return source


def _run(command: list[str], cwd: Path) -> None:
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ConversionError(f"{Path(command[0]).name} failed on the generated C: {done.stderr.strip()[:300]}",
                              hint="this is a packager bug; please report it with model.c")  # fmt: skip


def shared_libs(library: Path) -> list[str]:
    """The shared libraries the dynamic loader would map ("statically linked": none at all)."""
    done = subprocess.run(["ldd", str(library)], capture_output=True, text=True, check=False)
    lines = [
        Path(line.split()[0]).name for line in done.stdout.splitlines() if "=>" in line or line.strip().startswith("/")
    ]
    return sorted(lines)


def _compiler() -> str:
    done = subprocess.run(["gcc", "-dumpfullversion"], capture_output=True, text=True, check=False)
    return f"gcc {done.stdout.strip() or '?'}"
