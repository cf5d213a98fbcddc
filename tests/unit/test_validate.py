from __future__ import annotations

import numpy as np
import pytest

from packager.config import Tolerance
from packager.validate import compare

TIGHT = Tolerance(atol=1e-4, rtol=1e-4, min_top1_agreement=0.99)


def logits(n: int = 100, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).standard_normal((n, 10)).astype(np.float32)


def test_compare_identical_outputs_verified() -> None:
    ref = {"y": logits()}
    result = compare(ref, {"y": ref["y"].copy()}, TIGHT, None)
    assert result == {"max_abs_err": 0.0, "top1_agreement": 1.0, "status": "verified"}


def test_compare_error_above_tolerance_fails_with_reason() -> None:
    ref = logits()
    result = compare({"y": ref}, {"y": ref + 0.01}, TIGHT, None)
    assert result["status"] == "failed"
    assert result["max_abs_err"] == pytest.approx(0.01, rel=1e-3)
    assert "max abs error" in result["reason"]


def test_compare_rtol_scales_with_output_magnitude() -> None:
    ref = logits() * 1000
    loose = Tolerance(atol=0.0, rtol=1e-3, min_top1_agreement=0.0)
    assert compare({"y": ref}, {"y": ref + 1.0}, loose, None)["status"] == "verified"


def test_compare_top1_below_floor_fails() -> None:
    ref = logits()
    got = ref.copy()
    got[:5] = np.roll(got[:5], 1, axis=1)  # 5 of 100 rows predict another class
    floor = Tolerance(atol=10.0, rtol=0.0, min_top1_agreement=0.98)
    result = compare({"y": ref}, {"y": got}, floor, None)
    assert result["top1_agreement"] <= 0.96
    assert result["status"] == "failed"
    assert "top-1 agreement" in result["reason"]


def test_compare_label_outputs_count_as_agreement() -> None:
    ref = {"label": np.arange(10), "probabilities": np.eye(10, dtype=np.float32)}
    got = {"label": np.r_[np.arange(9), 0], "probabilities": np.eye(10, dtype=np.float32)}
    result = compare(ref, got, Tolerance(atol=1, rtol=0, min_top1_agreement=0.95), "classification")
    assert result["top1_agreement"] == pytest.approx(0.9)
    assert result["status"] == "failed"


def test_compare_regression_has_no_top1() -> None:
    ref = {"y": logits()}
    result = compare(ref, {"y": ref["y"]}, TIGHT, "regression")
    assert "top1_agreement" not in result


def test_compare_nan_output_fails() -> None:
    ref = logits()
    got = ref.copy()
    got[0, 0] = np.nan
    assert compare({"y": ref}, {"y": got}, TIGHT, None)["status"] == "failed"


def test_compare_missing_or_reshaped_output_fails() -> None:
    ref = logits()
    assert "missing" in compare({"y": ref}, {}, TIGHT, None)["reason"]
    assert "shape" in compare({"y": ref}, {"y": ref.reshape(10, 100)}, TIGHT, None)["reason"]
