"""lambda-zip's native engine: the model compiled to C, served by a stdlib-only handler.

With ``engine = "native"`` the bundle holds ``native_inference.py`` (ctypes + array + json; no
numpy, no onnxruntime, no Powertools), ``model/signature.json`` and ``model/lib<prefix>.so``
compiled by packager's C generator (the static-lib target's ``compile_library``) for the
Lambda arch: gcc for the host's, ``<triplet>-gcc`` for the other. The library must need only
libc and libm, at glibc symbol versions the runtime's OS has; both are read from the ELF with
``readelf`` (any arch), so a cross-compiled library is checked too.
"""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

from packager.archive import Entry
from packager.errors import ConversionError, MissingDependencyError, UnsupportedOpError
from packager.resources import handler_path, read_toml
from packager.spec import ModelSpec
from packager.target import StepContext
from packager.tools import elf

HANDLER = handler_path("native_inference.py")
HANDLER_NAME = "native_inference.handler"
VARIANT_ID = "lambda-native-fp32"
ALLOWED_LIBS = ("libc.so", "libm.so", "ld-linux")
REFUSE_HINT = 'use the onnxruntime engine (engine = "onnxruntime" in [tool.packager.target.lambda-zip])'


def check_model(spec: ModelSpec) -> None:
    """Refuse what the native engine cannot serve: it takes one float32 input and one float32
    output with a batch first and fixed other dims, and only the ops the C generator has."""
    inputs, outputs = spec.signature.inputs, spec.signature.outputs
    tensors = [*inputs, *outputs]
    if len(inputs) != 1 or len(outputs) != 1 or any(t.dtype != "float32" for t in tensors):
        found = ", ".join(f"{t.name} {t.dtype}" for t in tensors)
        raise UnsupportedOpError(
            f"lambda-zip's native engine serves models with one float32 input and one float32 output; "
            f"this one has {len(inputs)} input(s) and {len(outputs)} output(s) ({found})",
            hint=REFUSE_HINT,
        )
    for t in tensors:
        if not t.shape or any(not isinstance(d, int) for d in t.shape[1:]):
            raise UnsupportedOpError(
                f"lambda-zip's native engine needs fixed dims after the batch; '{t.name}' has shape {list(t.shape)}",
                hint=REFUSE_HINT,
            )
    from packager.targets import static_lib  # here, not at the top: the onnxruntime engine never needs the C generator

    try:
        static_lib.StaticLibTarget().check(spec)
    except UnsupportedOpError as exc:
        raise UnsupportedOpError(f"lambda-zip's native engine: {exc.message}", hint=REFUSE_HINT) from exc


def compiler(arch: str) -> str:
    """The C compiler for a Lambda arch: gcc for this host's, the cross compiler for the other."""
    facts = read_toml("lambda.toml")["arch"][arch]
    cc = "gcc" if facts["wheel"] == platform.machine() else f"{facts['triplet']}-gcc"
    if shutil.which(cc) is None:
        package = "gcc" if cc == "gcc" else f"gcc-{facts['triplet']}"
        raise MissingDependencyError(
            f"lambda-zip's native engine for {arch} compiles the model with {cc}, which is not on PATH",
            hint=f"apt-get install {package}, or build for this host's arch",
        )
    return cc


def compile_step(ctx: StepContext) -> Path:
    """lib<prefix>.so for the Lambda arch, stripped, with its libraries and glibc versions checked."""
    from packager.targets import static_lib

    options = ctx.options
    arch = read_toml("lambda.toml")["arch"][options.arch]
    prefix = static_lib.prefix_for(ctx.spec, static_lib.StaticLibOptions())
    cc = compiler(options.arch)
    static_lib.compile_library(ctx.inputs["model"], ctx.spec, ctx.out_dir, prefix, march=arch["march"],
                               work=ctx.tmp_dir, cc=cc, static=False)  # fmt: skip
    library = ctx.out_dir / f"lib{prefix}.so"
    strip = shutil.which("strip" if cc == "gcc" else f"{arch['triplet']}-strip")
    if strip is not None:
        subprocess.run([strip, "--strip-unneeded", str(library)], check=True, capture_output=True)
    _check_elf(ctx, library, options.runtime)
    return library


def _check_elf(ctx: StepContext, library: Path, runtime: str) -> None:
    needed, versions = elf.needs(library)
    vid = VARIANT_ID
    extra = [lib for lib in needed if not lib.startswith(ALLOWED_LIBS)]
    if not ctx.check(f"{vid}.lib.shared_libs_beyond_libc_libm", len(extra), 0):
        raise ConversionError(f"{library.name} links {', '.join(extra)}; it must need libc and libm only",
                              hint="this is a packager bug; please report it with model.c")  # fmt: skip
    have = read_toml("lambda.toml")["runtimes"][runtime]["glibc"]
    need = max(versions, default=(2, 0))
    if not ctx.check(f"{vid}.lib.glibc_minor_needed", need[1], elf.version(have)[1]):
        raise ConversionError(
            f"{library.name} needs glibc {'.'.join(map(str, need))} symbols; {runtime} has glibc {have}",
            hint='set runtime = "python3.12" or "python3.13" in [tool.packager.target.lambda-zip]',
        )


def signature(base: dict[str, Any], library: Path) -> dict[str, Any]:
    """signature.json for the native handler: the library and the floats per sample."""
    prefix = library.stem.removeprefix("lib")
    header = (library.parent / f"{prefix}.h").read_text()
    input_size, output_size = (_macro(header, f"{prefix.upper()}_{what}_SIZE") for what in ("INPUT", "OUTPUT"))
    rest = {k: v for k, v in base.items() if k != "model_file"}
    return rest | {"engine": "native", "handler": HANDLER_NAME, "library": library.name, "prefix": prefix,
                   "input_size": input_size, "output_size": output_size}  # fmt: skip


def _macro(header: str, name: str) -> int:
    found = re.search(rf"^#define {name} (\d+)$", header, re.MULTILINE)
    if found is None:
        raise ConversionError(f"the generated header has no {name}", hint="this is a packager bug; please report it")
    return int(found.group(1))


def function_entries(library: Path, signature_json: bytes) -> list[Entry]:
    return [
        Entry(name="native_inference.py", source=HANDLER.read_bytes()),
        Entry(name="model/signature.json", source=signature_json),
        Entry(name=f"model/{library.name}", source=library, executable=True),
    ]


def check_size(ctx: StepContext, zipped: int) -> None:
    """The engine's size advice: a note, not a failure, when the weights make the zip bigger."""
    advice = read_toml("lambda.toml")["engines"]["native"]["zipped_bytes"]
    if not ctx.check(f"{ctx.out_dir.name}.function.zip.native_engine_advice_bytes", zipped, advice):
        ctx.log(f"{ctx.out_dir.name}: function.zip is {zipped:,} bytes, over the native engine's {advice:,}: "
                "the weights dominate; compare with the onnxruntime engine's int8 variant")  # fmt: skip
