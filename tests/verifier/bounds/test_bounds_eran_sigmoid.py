"""Layerwise intermediate optimisation on the net that motivated it (ERAN's 6x200 sigmoid)."""

from __future__ import annotations

import pytest
import torch

from planecut.verifier.bounds import compute_bounds
from planecut.verifier.bounds.types import AlphaOptions
from planecut.verifier.graph.onnx_loader import load_onnx
from planecut.verifier.spec_tensors import SpecTensors
from planecut.vnnlib import parse_spec

pytestmark = pytest.mark.benchmarks


def test_layerwise_proves_what_joint_cannot(bench_root) -> None:
    """mnist idx 7167, eps 0.012 (expected unsat; the reference proves it at once). CROWN's
    margin is about −30; the joint mode barely moves it, the layerwise mode proves it."""
    eran = bench_root / "vnncomp2021" / "eran"
    graph = load_onnx(eran / "nets" / "ffnnSIGMOID__Point_6x200.onnx")
    spec = parse_spec(str(eran / "specs" / "mnist" / "mnist_spec_idx_7167_eps_0.01200.vnnlib"))
    st = SpecTensors.from_spec(spec)
    torch.manual_seed(0)
    margin = {}
    for mode in ("joint", "layerwise"):
        r = compute_bounds(graph, st.lower, st.upper, st.C, "alpha-crown",
                           alpha=AlphaOptions(iterations=50, intermediate_objective=mode))
        margin[mode] = float((r.lower - st.d).min())
    assert margin["joint"] < -10
    assert margin["layerwise"] > 0
