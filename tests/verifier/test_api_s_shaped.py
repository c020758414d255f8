"""Sigmoid networks have no complete search: verify() spends the time left on longer
alpha-CROWN runs, which prove what the root's short run could not, and never anything false."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from planecut.verifier.api import verify
from planecut.verifier.bounds import compute_bounds
from planecut.verifier.bounds.types import AlphaOptions
from planecut.verifier.config import AttackConfig, BoundsConfig, VerifierConfig
from planecut.verifier.graph import load_onnx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from testnets import make_fc  # noqa: E402


def _spec(path: Path, xl: np.ndarray, xu: np.ndarray, threshold: float) -> Path:
    lines = [f"(declare-const X_{i} Real)" for i in range(xl.size)]
    lines += ["(declare-const Y_0 Real)", "(declare-const Y_1 Real)", "(declare-const Y_2 Real)"]
    for i, (lo, hi) in enumerate(zip(xl, xu)):
        lines += [f"(assert (>= X_{i} {lo:.9f}))", f"(assert (<= X_{i} {hi:.9f}))"]
    lines.append(f"(assert (<= Y_0 {threshold:.9f}))")  # violated where y0 <= threshold
    path.write_text("\n".join(lines) + "\n")
    return path


def test_longer_alpha_crown_proves_what_the_root_could_not(tmp_path):
    net = make_fc(tmp_path / "sig.onnx", [30, 24, 24, 24, 3], seed=4, act="Sigmoid")
    xl, xu = -np.ones(30) * 0.6, np.ones(30) * 0.6
    graph = load_onnx(net.path)
    lo_t, hi_t = torch.tensor(xl[None], dtype=torch.float32), torch.tensor(xu[None],
                                                                             dtype=torch.float32)
    C = torch.tensor([[[1.0, 0.0, 0.0]]])
    short, long = (float(compute_bounds(graph, lo_t, hi_t, C, "alpha-crown", alpha=AlphaOptions(
        iterations=n, intermediate_objective="layerwise")).lower) for n in (1, 120))
    assert long > short + 1e-3  # (the net is one where optimisation matters)
    X = xl + (xu - xl) * np.random.default_rng(0).random((20000, 30))
    assert net.forward(X)[:, 0].min() > long  # (sound, as every bound)
    threshold = (short + long) / 2
    spec = _spec(tmp_path / "p.vnnlib", xl, xu, threshold)
    # (30 free inputs: preset auto would split the input; the preset that goes on with
    # alpha-CROWN is the one under test)
    cfg = VerifierConfig(device="cpu", preset="general_nonlinear",
                         bounds=BoundsConfig(alpha_iterations=1), attack=AttackConfig(rounds=1))
    res = verify(net.path, spec, timeout=30.0, config=cfg)
    assert res.verdict == "unsat", res.message
    assert "alpha-crown-longer" in res.timings
    # a threshold above a real output is never proven, whatever the time
    bad = _spec(tmp_path / "bad.vnnlib", xl, xu, float(net.forward(X)[:, 0].min()) + 1e-3)
    res = verify(net.path, bad, timeout=8.0, config=cfg)
    assert res.verdict in ("sat", "unknown"), res.verdict
    assert res.seconds <= 8.0 + 1.5
