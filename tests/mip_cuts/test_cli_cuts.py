"""``planecut cuts``: what a user runs to inspect the cut worker."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]
EX = REPO / "examples"


def _run(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "planecut", "cuts", *args],
                          capture_output=True, text=True, timeout=timeout)


def test_cuts_command_writes_npz(tmp_path):
    out = tmp_path / "cuts.npz"
    p = _run(str(EX / "tiny_fc.onnx"), str(EX / "tiny_fc_robust.vnnlib"), "--time-limit", "3",
             "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert "HiGHS" not in p.stdout  # no solver banner on stdout
    assert "validated" in p.stdout and "LP bound" in p.stdout and "MILP:" in p.stderr
    with np.load(out) as f:
        assert {"rhs", "x", "z_0", "y_0", "a_0", "z_1", "y_1", "a_1", "layer_names",
                "layer_shapes"} <= set(f.files)
        assert list(f["layer_names"]) == ["Z0", "Z1"]  # the ONNX pre-activation tensors
        assert f["x"].shape[1] == 5 and f["z_0"].shape[1] == 16
        m = f["rhs"].shape[0]
    n = int(p.stdout.split("cuts: ")[1].split()[0])
    assert n == m


def test_cuts_command_bad_input(tmp_path):
    p = _run(str(tmp_path / "missing.onnx"), str(EX / "tiny_fc_robust.vnnlib"))
    assert p.returncode == 1 and "not found" in p.stderr and "Traceback" not in p.stderr
    p = _run(str(EX / "tiny_fc.onnx"), str(EX / "tiny_fc_robust.vnnlib"), "--time-limit", "0")
    assert p.returncode == 2
