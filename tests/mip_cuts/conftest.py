"""Fixtures for the MIP tests; the networks themselves live in ``tests/testnets.py``."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from testnets import FcNet, encode, exact_min, make_conv_residual, make_fc  # noqa: E402,F401


@pytest.fixture
def fc_net(tmp_path):
    def build(dims=(3, 5, 4, 2), seed=0) -> FcNet:
        return make_fc(tmp_path / f"fc_{seed}.onnx", list(dims), seed)
    return build
