"""alpha-CROWN on the net that shaped its sigmoid handling (ERAN's 6x200 sigmoid MNIST net):
layerwise intermediate optimisation, and tangent points outside the interval (flat lines)."""

from __future__ import annotations

import pytest
import torch

from planecut.verifier.bounds import compute_bounds
from planecut.verifier.bounds import relaxations
from planecut.verifier.bounds.types import AlphaOptions
from planecut.verifier.graph.onnx_loader import load_onnx
from planecut.verifier.spec_tensors import SpecTensors
from planecut.vnnlib import parse_spec

pytestmark = pytest.mark.benchmarks


def _margin(bench_root, idx: int, mode: str) -> float:
    eran = bench_root / "vnncomp2021" / "eran"
    graph = load_onnx(eran / "nets" / "ffnnSIGMOID__Point_6x200.onnx")
    spec = parse_spec(str(eran / "specs" / "mnist" / f"mnist_spec_idx_{idx}_eps_0.01200.vnnlib"))
    st = SpecTensors.from_spec(spec)
    torch.manual_seed(0)
    r = compute_bounds(graph, st.lower, st.upper, st.C, "alpha-crown",
                       alpha=AlphaOptions(iterations=50, intermediate_objective=mode))
    return float((r.lower - st.d).min())


def test_layerwise_proves_what_joint_cannot(bench_root) -> None:
    """mnist idx 6553, eps 0.012 (expected unsat; the reference proves it in 18 s). CROWN's
    margin is about −61; 50 joint iterations end near −40, 50 layerwise ones prove it."""
    assert _margin(bench_root, 6553, "joint") < -10
    assert _margin(bench_root, 6553, "layerwise") > 0


def test_flat_lines_are_needed(bench_root, monkeypatch) -> None:
    """The same run with tangent points confined to ``[l, u]`` (span 0) stays below −10: the
    slopes below ``min(f'(l), f'(u))`` carry the proof."""
    monkeypatch.setattr(relaxations, "POINT_SPAN", 0.0)
    assert _margin(bench_root, 6553, "layerwise") < -10
