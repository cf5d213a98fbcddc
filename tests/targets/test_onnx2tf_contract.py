"""Contract tests for the onnx2tf internals packager leans on (onnx2tf is pinned to 1.29.24).

An upgrade that moves or renames them fails here, not in a user's build.
"""

from __future__ import annotations

import importlib
import inspect

import onnx2tf  # installed by make setup (pip install --no-deps onnx2tf==1.29.24)

from targets import _savedmodel


def test_onnx2tf_is_the_pinned_version() -> None:
    assert onnx2tf.__version__ == "1.29.24"


def test_onnx2tf_test_image_downloader_is_where_packager_patches_it() -> None:
    module_name, attribute = _savedmodel.ONNX2TF_DOWNLOADER
    module = importlib.import_module(module_name)
    downloader = getattr(module, attribute)
    assert inspect.signature(downloader).parameters == {}
    # convert() must look the name up in that module at call time, or the patch does nothing.
    assert attribute in inspect.getsource(module.convert)
