"""scikit-learn estimators and pipelines (``.joblib`` / ``.pkl``), converted with skl2onnx.

Loading a pickle runs code from the file: only build models you trust.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from packager.errors import ConversionError, ModelInputError, first_line, require
from packager.importers.base import Imported

OPSETS = {"": 17, "ai.onnx.ml": 3}


def import_sklearn(path: Path, workdir: Path) -> Imported:
    require("sklearn", "sklearn")
    require("skl2onnx", "sklearn")
    import joblib
    import sklearn
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    try:
        model = joblib.load(path)
    except Exception as exc:  # pickle raises anything
        raise ModelInputError(
            f"'{path.name}' is not a loadable scikit-learn model: {first_line(exc)}",
            hint="save it with joblib.dump(model, 'model.joblib')",
        ) from exc
    if not hasattr(model, "predict"):
        raise ModelInputError(f"'{path.name}' holds a {type(model).__name__}, not an estimator")
    features = getattr(model, "n_features_in_", None)
    if features is None:
        raise ModelInputError(f"'{path.name}' holds an estimator that was never fitted")
    classifier = hasattr(model, "predict_proba") and hasattr(model, "classes_")
    try:
        proto = to_onnx(
            model,
            initial_types=[("input", FloatTensorType([None, int(features)]))],
            options={"zipmap": False} if classifier else None,
            target_opset=OPSETS,
        )
    except Exception as exc:
        raise ConversionError(
            f"skl2onnx cannot convert {type(model).__name__}: {first_line(exc)}",
            hint="only estimators with an skl2onnx converter can be built",
        ) from exc
    kept = workdir / f"original{path.suffix}"
    shutil.copyfile(path, kept)

    def reference(inputs: list[np.ndarray]) -> list[np.ndarray]:
        x = inputs[0]
        if classifier:
            return [np.asarray(model.predict(x)), np.asarray(model.predict_proba(x), dtype=np.float32)]
        return [np.asarray(model.predict(x), dtype=np.float32).reshape(len(x), -1)]

    labels = tuple(str(c) for c in model.classes_) if classifier else None
    return Imported(
        model=proto, original=kept, reference=reference,
        reference_runtime=f"scikit-learn {sklearn.__version__}", labels=labels,
        task="classification" if classifier else "regression",
    )  # fmt: skip
