"""static-lib: the model compiled to C by packager's own generator, loaded with ctypes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from conftest import models, run_cli
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

from packager import codegen


def build(model: Path, samples: Path | None, out: Path) -> dict:
    args = ["--samples", samples] if samples else []
    result = run_cli("build", model, "-t", "static-lib", *args, "--out", out)
    assert result.code == 0, result.err
    record = json.loads(next(out.glob("*/1/build.json")).read_text())
    record["_dir"] = next(out.glob("*/1")) / "static-lib" / "static-lib-fp32"
    return record


@pytest.mark.parametrize("maker", ["onnx", "pt2", "keras"])
def test_static_lib_matches_the_source(maker: str, model_dir: Path, tmp_path: Path) -> None:
    record = build(models.MAKERS[maker](model_dir), None, tmp_path / "dist")
    (variant,) = record["variants"]
    assert variant["fidelity"]["status"] == "verified"
    assert variant["fidelity"]["max_abs_err"] <= 1e-5
    assert variant["fidelity"]["runtime"].startswith("C library via ctypes (gcc")
    checks = {c["name"]: c for c in record["checks"]}
    assert checks["static-lib-fp32.shared_libs_beyond_libc_libm"]["value"] == 0
    assert all(lib.startswith(("linux-vdso", "libc.so", "libm.so", "ld-linux")) or not lib
               for lib in (record["_dir"] / "ldd.txt").read_text().split())  # fmt: skip


def test_static_lib_ships_a_buildable_library(model_dir: Path, digits_images: Path, tmp_path: Path) -> None:
    record = build(models.make_torch_pt2(model_dir), digits_images, tmp_path / "dist")
    folder = Path(record["_dir"])
    assert {p.name for p in folder.iterdir()} >= {"model.c", "cnn.h", "libcnn.so", "libcnn.a", "cnn.pc", "Makefile",
                                                   "example"}  # fmt: skip
    header = (folder / "cnn.h").read_text()
    assert "int cnn_predict(const float *in, size_t batch, float *out);" in header
    assert "#define CNN_INPUT_SIZE 64" in header and "#define CNN_OUTPUT_SIZE 10" in header
    subprocess.run(["make", "-s", "example"], cwd=folder, check=True, capture_output=True)
    printed = subprocess.run(["./example/cnn-example"], cwd=folder, check=True, capture_output=True, text=True)
    lines = printed.stdout.split("\n")
    assert lines[0] == "cnn 1"
    got = np.array([float(v) for v in lines[1:11]], np.float32)
    reference = np.load(record["_dir"].parents[1] / "validation" / "reference.npz")
    np.testing.assert_allclose(got, reference[next(iter(reference.files))][0], atol=1e-5)


def test_static_lib_records_code_constants_and_workspace_sizes(model_dir: Path, tmp_path: Path) -> None:
    import ctypes

    model = models.make_onnx_mlp(model_dir)
    record = build(model, None, tmp_path / "dist")
    checks = {c["name"]: c["value"] for c in record["checks"]}
    weights = sum(int(np.prod(t.dims)) for t in onnx.load(str(model)).graph.initializer)
    # the weights are the constants (float32, plus the transposed copies of small products)
    assert checks["static-lib-fp32.rodata_bytes"] >= 4 * weights
    assert 0 < checks["static-lib-fp32.text_bytes"] < 1_000_000
    lib = ctypes.CDLL(str(record["_dir"] / "libmlp.so"))
    lib.mlp_workspace_size.restype = ctypes.c_size_t
    assert checks["static-lib-fp32.workspace_bytes"] == lib.mlp_workspace_size()
    report = (record["_dir"].parents[1] / "report.html").read_text()
    assert ".rodata " in report and "workspace " in report


def test_static_lib_holds_the_constants_to_their_budget(model_dir: Path, tmp_path: Path) -> None:
    result = run_cli("build", models.make_onnx_mlp(model_dir), "-t", "static-lib", "--set",
                     "static-lib.max_rodata_bytes=1000", "--out", tmp_path / "dist")  # fmt: skip
    assert result.code != 0
    (line,) = result.error_lines
    assert "rodata is" in line and "over max_rodata_bytes = 1,000" in line, line


def test_static_lib_builds_into_a_relative_out(model_dir: Path, tmp_path: Path) -> None:
    # As `make demo` runs it: --out relative to the working folder.
    result = run_cli("build", models.make_onnx_mlp(model_dir), "-t", "static-lib", "--out", "dist", cwd=tmp_path)
    assert result.code == 0, result.err
    assert (tmp_path / "dist" / "mlp" / "1" / "static-lib" / "static-lib-fp32" / "libmlp.a").is_file()


def test_static_lib_refuses_ops_it_does_not_implement(model_dir: Path, tmp_path: Path) -> None:
    result = run_cli("build", models.make_onnx_det(model_dir), "-t", "static-lib", "--out", tmp_path / "d")
    assert result.code == 4
    assert "cannot take op(s) Det" in result.error_lines[0] and "onnx" in result.error_lines[0]
    assert not (tmp_path / "d").exists()


@pytest.mark.parametrize("maker", ["forest", "pipeline"])
def test_static_lib_compiles_sklearn_models_exactly(maker: str, model_dir: Path, tmp_path: Path) -> None:
    record = build(models.MAKERS[maker](model_dir), None, tmp_path / "dist")
    (variant,) = record["variants"]
    assert variant["fidelity"]["status"] == "verified"
    assert variant["fidelity"]["max_abs_err"] <= 1e-6 and variant["fidelity"]["top1_agreement"] == 1.0
    header = next(Path(record["_dir"]).glob("*.h")).read_text()
    assert "_OUTPUT0_SIZE 1 /* 'label' int64 */" in header
    assert "_OUTPUT1_SIZE 10 /* 'probabilities' float32 */" in header


def _compile_and_run(model: onnx.ModelProto, x: np.ndarray, tmp: Path, flags: tuple[str, ...] = ()) -> np.ndarray:
    import ctypes

    onnx.save(model, str(tmp / "m.onnx"))
    source = codegen.build_source(tmp / "m.onnx", tmp, "k", {"name": "k", "version": "1", "sha256": "-",
                                                             "signature": "{}"})  # fmt: skip
    (tmp / "k.h").write_text(source.header)
    (tmp / "model.c").write_text(source.code)
    subprocess.run(["gcc", "-std=c99", "-O2", *flags, "-fPIC", "-shared", "-o", "libk.so", "model.c", "-lm"],
                   cwd=tmp, check=True, capture_output=True)  # fmt: skip
    lib = ctypes.CDLL(str(tmp / "libk.so"))
    y = np.zeros(len(x) * source.output_size, np.float32)
    lib.k_predict(ctypes.c_void_p(x.ctypes.data), ctypes.c_size_t(len(x)), ctypes.c_void_p(y.ctypes.data))
    return y


@settings(max_examples=12, deadline=None)
@given(m=st.integers(1, 40), k=st.integers(1, 40), n=st.integers(1, 40), trans_b=st.booleans(), seed=st.integers(0, 99))
def test_gemm_kernel_matches_onnxruntime(m: int, k: int, n: int, trans_b: bool, seed: int, tmp_path_factory) -> None:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n, k) if trans_b else (k, n)).astype(np.float32)
    b = rng.standard_normal(n).astype(np.float32)
    node = helper.make_node("Gemm", ["x", "w", "b"], ["y"], transB=int(trans_b))
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n])],
                              [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((m, k)).astype(np.float32)
    y = _compile_and_run(model, x, tmp_path_factory.mktemp("gemm"))
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(y.reshape(expected.shape), expected, rtol=1e-5, atol=1e-5)


def _wide_product(m: int, k: int, n: int, bias: bool, seed: int) -> tuple[onnx.ModelProto, np.ndarray]:
    rng = np.random.default_rng(seed)
    w, b = rng.standard_normal((k, n)).astype(np.float32), rng.standard_normal(n).astype(np.float32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["p" if bias else "y"])]
    if bias:  # fused: the product adds it as it stores each panel
        nodes.append(helper.make_node("Add", ["b", "p"], ["y"]))
    weights = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b.reshape(1, n), "b")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", k])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", n])], weights)  # fmt: skip
    x = rng.standard_normal((m, k)).astype(np.float32)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), x


@settings(max_examples=12, deadline=None)
@given(m=st.integers(1, 40), k=st.integers(1, 70), n=st.integers(16, 200), bias=st.booleans(), seed=st.integers(0, 99))
def test_wide_products_match_onnxruntime(m: int, k: int, n: int, bias: bool, seed: int, tmp_path_factory) -> None:
    # A constant B, packed in 64-column panels: the AVX-512 blocks where the CPU has them (6, 4, 2
    # and 1 rows; a last panel part-filled), else the row strips; a bias Add fused in.
    model, x = _wide_product(m, k, n, bias, seed)
    y = _compile_and_run(model, x, tmp_path_factory.mktemp("wide"))
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(y.reshape(expected.shape), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("flags", [("-ffp-contract=fast",), ("-DPK_NARROW",), ("-DPK_PLAIN_C",)],
                         ids=["dispatch", "16-byte", "plain-c"])  # fmt: skip
def test_packed_products_match_onnxruntime_on_every_path(flags: tuple[str, ...], tmp_path: Path) -> None:
    for i, (m, k, n) in enumerate([(1, 33, 64), (7, 40, 130), (19, 70, 17), (40, 64, 200)]):
        model, x = _wide_product(m, k, n, i % 2 == 0, i)
        (tmp_path / str(i)).mkdir()
        y = _compile_and_run(model, x, tmp_path / str(i), flags)
        expected = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
        np.testing.assert_allclose(y.reshape(expected.shape), expected, rtol=1e-5, atol=1e-5)


@settings(max_examples=30, deadline=None)
@given(c=st.integers(1, 4), mult=st.integers(1, 6), h=st.integers(3, 20), w=st.integers(3, 20),
       kernel=st.tuples(st.integers(1, 3), st.integers(1, 3)), stride=st.integers(1, 3),
       pads=st.tuples(*[st.integers(0, 2)] * 4), dilation=st.integers(1, 2), depthwise=st.booleans(),
       activation=st.sampled_from(["", "Relu", "Clip"]), seed=st.integers(0, 99))  # fmt: skip
def test_conv_kernel_matches_onnxruntime(
    c: int,
    mult: int,
    h: int,
    w: int,
    kernel: tuple[int, int],
    stride: int,
    pads: tuple[int, int, int, int],
    dilation: int,
    depthwise: bool,
    activation: str,
    seed: int,
    tmp_path_factory,
) -> None:
    # Covers each way a one-group conv reaches the blocked product (im2col, the padded image read
    # in place, X itself) with outputs wider and narrower than one 16-column block, and row
    # counts that leave rows over after the 4-row blocks; depthwise convs (one channel per
    # output: the padded-image kernel, strides 1 and 2; a multiplier above 1: the general loop);
    # a Relu or a Clip(0, 6) fused in.
    mult = 1 if depthwise and seed % 2 else mult
    assume((kernel[0] - 1) * dilation + 1 <= h + pads[0] + pads[2])  # an output of at least one pixel
    assume((kernel[1] - 1) * dilation + 1 <= w + pads[1] + pads[3])
    rng = np.random.default_rng(seed)
    group = c if depthwise else 1
    m = c * mult
    weights = rng.standard_normal((m, c // group, *kernel)).astype(np.float32)
    b = rng.standard_normal(m).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c" if activation else "y"], strides=[stride, stride],
                              pads=list(pads), dilations=[dilation, dilation], group=group)]  # fmt: skip
    bounds = [numpy_helper.from_array(np.array(v, np.float32), name) for v, name in ((0.0, "lo"), (6.0, "hi"))]
    if activation:
        nodes.append(helper.make_node(activation, ["c", "lo", "hi"] if activation == "Clip" else ["c"], ["y"]))
    graph = helper.make_graph(nodes, "c", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, h, w])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(weights, "w"), numpy_helper.from_array(b, "b"),
                               *bounds])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((2, c, h, w)).astype(np.float32)
    y = _compile_and_run(model, x, tmp_path_factory.mktemp("conv"))
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(y.reshape(expected.shape), expected, rtol=1e-4, atol=1e-4)


def test_static_lib_rebuilds_with_cmake(model_dir: Path, tmp_path: Path) -> None:
    record = build(models.make_onnx_mlp(model_dir), None, tmp_path / "dist")
    folder, work = Path(record["_dir"]), tmp_path / "cmake"
    for step in (["cmake", "-S", folder, "-B", work], ["cmake", "--build", work]):
        done = subprocess.run(step, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
    printed = subprocess.run([work / "mlp-example", folder / "example" / "sample.txt"], capture_output=True,
                             text=True, check=True)  # fmt: skip
    got = np.array([float(v) for v in printed.stdout.split("\n")[1:-1]], np.float32)
    reference = np.load(folder.parents[1] / "validation" / "reference.npz")
    np.testing.assert_allclose(got, reference[reference.files[0]][0].reshape(-1), atol=1e-5)


def test_static_lib_cross_compiles_for_aarch64(model_dir: Path, tmp_path: Path) -> None:
    result = run_cli("build", models.make_torch_pt2(model_dir), "-t", "static-lib", "--set",
                     "static-lib.cross=aarch64", "--out", tmp_path / "dist")  # fmt: skip
    assert result.code == 0, result.err
    record = json.loads(next((tmp_path / "dist").glob("*/1/build.json")).read_text())
    variants = {v["id"]: v for v in record["variants"]}
    host, cross = variants["static-lib-fp32"], variants["static-lib-aarch64-fp32"]
    assert host["fidelity"]["status"] == "verified" and host["arch"] == "x86_64"
    # Run under qemu-aarch64 (make setup installs qemu-user): the aarch64 machine code is checked.
    assert cross["arch"] == "aarch64" and cross["fidelity"]["status"] == "verified", cross["fidelity"]
    assert cross["fidelity"]["max_abs_err"] <= 1e-5 and "qemu-aarch64" in cross["fidelity"]["runtime"]
    assert "latency_ms" not in cross  # emulated timings say nothing about a real CPU
    from packager.tools import elf

    library = next((tmp_path / "dist").glob("*/1")) / cross["main_file"]
    assert elf.machine(library) == "aarch64"
    assert set(elf.needs(library)[0]) <= {"libc.so.6", "libm.so.6"}


def test_conv_relu_chains_are_fused_without_clobbering_inputs(tmp_path: Path) -> None:
    # Conv -> Relu pairs are fused (the Conv writes the Relu's output); the second Conv reads an
    # arena tensor that its own output must not overlap.
    rng = np.random.default_rng(3)
    w1 = rng.standard_normal((6, 3, 3, 3)).astype(np.float32)
    w2 = rng.standard_normal((4, 6, 3, 3)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c2"], ["y"])]  # fmt: skip
    graph = helper.make_graph(nodes, "cc", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 9, 9])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4, 9, 9])],
                              [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(w2, "w2")])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((3, 3, 9, 9)).astype(np.float32)
    y = _compile_and_run(model, x, tmp_path)
    assert "fused into the Conv above" in (tmp_path / "model.c").read_text()
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(y.reshape(expected.shape), expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("relu", [True, False])
@pytest.mark.parametrize("hw", [9, 12])  # odd: the pool drops the last row and column
def test_conv_max_pool_pairs_are_fused(relu: bool, hw: int, tmp_path: Path) -> None:
    # Conv (-> Relu) -> 2x2 MaxPool: a conv computed in place writes the pooled tensor itself;
    # the values must be those of the three ops run apart, negatives and odd sizes included.
    rng = np.random.default_rng(hw)
    w1 = rng.standard_normal((5, 2, 3, 3)).astype(np.float32)
    b1 = rng.standard_normal(5).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1", "b1"], ["c1"], pads=[1, 1, 1, 1])]
    if relu:
        nodes.append(helper.make_node("Relu", ["c1"], ["r1"]))
    nodes += [helper.make_node("MaxPool", ["r1" if relu else "c1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
              helper.make_node("Flatten", ["p1"], ["y"])]  # fmt: skip
    graph = helper.make_graph(nodes, "cp", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2, hw, hw])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w1, "w1"), numpy_helper.from_array(b1, "b1")])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((3, 2, hw, hw)).astype(np.float32)
    y = _compile_and_run(model, x, tmp_path)
    code = (tmp_path / "model.c").read_text()
    assert code.count("fused into the Conv above") == (2 if relu else 1)
    assert "pk_pool2d(0," not in code.split("static void k_one")[-1]
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(y.reshape(expected.shape), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("flags", [("-ffp-contract=fast",), ("-DPK_NARROW",), ("-DPK_PLAIN_C",)],
                         ids=["avx2-dispatch", "16-byte", "plain-c"])  # fmt: skip
def test_every_kernel_family_matches_onnxruntime(flags: tuple[str, ...], tmp_path: Path) -> None:
    # The wide kernels chosen at run time, the 16-byte ones (a CPU without AVX2) and the plain C
    # ones (-DPK_PLAIN_C, for compilers without vector extensions) on one model that reaches each
    # product: stride-1 convs read in place (24-, 16-column and leftover blocks) with a fused
    # pool, a strided conv through im2col, a wide Gemm with a batch tile, a narrow one.
    rng = np.random.default_rng(7)
    w1, w2 = rng.standard_normal((8, 3, 3, 3)).astype(np.float32), rng.standard_normal((6, 8, 3, 3)).astype(np.float32)
    fc1, fc2 = rng.standard_normal((6 * 4 * 4, 70)).astype(np.float32), rng.standard_normal((70, 5)).astype(np.float32)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["c1"], pads=[1, 1, 1, 1]), helper.make_node("Relu", ["c1"], ["r1"]),
             helper.make_node("MaxPool", ["r1"], ["p1"], kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Conv", ["p1", "w2"], ["c2"], pads=[1, 1, 1, 1], strides=[2, 2]),
             helper.make_node("Flatten", ["c2"], ["f"]), helper.make_node("MatMul", ["f", "fc1"], ["h"]),
             helper.make_node("Relu", ["h"], ["r"]), helper.make_node("MatMul", ["r", "fc2"], ["y"])]  # fmt: skip
    weights = [numpy_helper.from_array(a, n) for a, n in ((w1, "w1"), (w2, "w2"), (fc1, "fc1"), (fc2, "fc2"))]
    graph = helper.make_graph(nodes, "k", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3, 15, 15])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 5])], weights)  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((21, 3, 15, 15)).astype(np.float32)
    y = _compile_and_run(model, x, tmp_path, flags)
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(y.reshape(expected.shape), expected, rtol=1e-4, atol=1e-4)


@settings(max_examples=10, deadline=None)
@given(c=st.integers(33, 80), m=st.integers(1, 100), hw=st.sampled_from([(4, 4), (5, 5), (4, 7), (6, 8), (7, 9)]),
       seed=st.integers(0, 99))  # fmt: skip
def test_narrow_products_match_onnxruntime(c: int, m: int, hw: tuple[int, int], seed: int, tmp_path_factory) -> None:
    # A 1x1 conv on a small image is a product 16 <= N < 64 columns wide: the AVX-512 blocks of 1
    # to 4 vectors where the CPU has them, the last vector overlapping the one before it, with
    # K above one chunk of sums (PK_KC), so the overlap is added in more than once if mishandled;
    # from 64 outputs, the product turned around (pk_conv1x1_rows: the weights packed).
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((m, c, 1, 1)).astype(np.float32)
    graph = helper.make_graph([helper.make_node("Conv", ["x", "w"], ["y"])], "c",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", c, *hw])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(w, "w")])  # fmt: skip
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    x = rng.standard_normal((2, c, *hw)).astype(np.float32)
    y = _compile_and_run(model, x, tmp_path_factory.mktemp("narrow"))
    expected = ort.InferenceSession(model.SerializeToString()).run(None, {"x": x})[0]
    np.testing.assert_allclose(y.reshape(expected.shape), expected, rtol=1e-5, atol=1e-5)
