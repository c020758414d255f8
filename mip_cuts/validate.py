"""Check cuts against real executions of the network before anyone uses them.

A cut harvested from a solver is only as trustworthy as the solver's numerics and our reading
of its rows. Before a cut is published its right-hand side is relaxed by a small tolerance
(float round-off of the solver and of the consumer), and it must then hold at every sampled
execution of the network on the region: random points, box corners, the centre, and the MIP's
own incumbents. A cut that fails is dropped and counted, never repaired.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .cutset import CutSet
from .encoding import NetworkEncoding

#: relative slack added to each published right-hand side (times 1 + |rhs| + ||coeffs||_1·scale):
#: covers the solver's tolerances and the float32 rounding of the bound computations that
#: consume the cut (about 1e-7 per operation, accumulated over many terms)
RHS_RELAX = 1e-6


@dataclass
class ValidationReport:
    checked: int = 0
    rejected: int = 0
    samples: int = 0
    worst_violation: float = 0.0  # largest lhs - rhs among rejected cuts (0 when none)


def sample_inputs(enc: NetworkEncoding, n: int, rng: np.random.Generator,
                  extra: np.ndarray | None = None) -> np.ndarray:
    """``n`` points of the input box: the centre, random corners, uniform points, and points
    near the faces; ``extra`` (e.g. MIP incumbents, clipped into the box) is appended."""
    lo, hi = enc.x_lower, enc.x_upper
    parts = [((lo + hi) / 2)[None]]
    n_corner = n // 4
    parts.append(np.where(rng.random((n_corner, enc.n_in)) < 0.5, lo, hi))
    n_face = n // 4
    t = rng.random((n_face, enc.n_in)) ** 4  # concentrated near the faces
    parts.append(np.where(rng.random((n_face, enc.n_in)) < 0.5, lo + t * (hi - lo),
                          hi - t * (hi - lo)))
    parts.append(rng.uniform(lo, hi, size=(max(0, n - 1 - n_corner - n_face), enc.n_in)))
    if extra is not None and len(extra):
        parts.append(np.clip(np.asarray(extra, dtype=np.float64).reshape(-1, enc.n_in), lo, hi))
    return np.concatenate(parts, 0)


def relax_rhs(cuts: CutSet, enc: NetworkEncoding) -> CutSet:
    """Cuts with ``rhs`` loosened by ``RHS_RELAX·(1 + |rhs| + Σ|coef|·scale)``, ``scale`` the
    magnitude of the variables the cut touches (bounded by the encoding's bounds)."""
    scale = column_scale(enc)
    absC = abs(cuts.coeffs)
    slack = RHS_RELAX * (1.0 + np.abs(cuts.rhs) + np.asarray(absC @ scale).reshape(-1))
    return CutSet(cuts.layout, cuts.coeffs, cuts.rhs + slack, cuts.layer_names,
                  cuts.layer_shapes, cuts.version, dict(cuts.meta))


def column_scale(enc: NetworkEncoding) -> np.ndarray:
    """Largest magnitude each column can take (input box, z bounds, y bounds, 1 for a)."""
    parts = [np.maximum(np.abs(enc.x_lower), np.abs(enc.x_upper))]
    for L in enc.layers:
        m = np.maximum(np.abs(L.lower), np.abs(L.upper))
        parts += [m, np.maximum(L.upper, 0.0), np.ones(L.size)]
    return np.concatenate(parts)


def validate(cuts: CutSet, enc: NetworkEncoding, X: np.ndarray
             ) -> tuple[CutSet, ValidationReport]:
    """(the cuts, rhs relaxed, that hold at every execution from inputs ``X``; report)."""
    rep = ValidationReport(checked=len(cuts), samples=int(len(X)))
    if not len(cuts):
        return cuts, rep
    relaxed = relax_rhs(cuts, enc)
    lhs = relaxed.lhs_on_executions(enc, X)
    excess = lhs.max(axis=1) - relaxed.rhs
    ok = excess <= 0.0
    rep.rejected = int((~ok).sum())
    if rep.rejected:
        rep.worst_violation = float(excess[~ok].max())
    return relaxed.take(np.flatnonzero(ok)), rep


def cuts_from_rows(layout, rows: list[tuple[np.ndarray, np.ndarray, float]], **kw) -> CutSet:
    """A CutSet from ``(cols, vals, rhs)`` triples."""
    if not rows:
        return CutSet.empty(layout, **kw)
    indptr = np.zeros(len(rows) + 1, dtype=np.int64)
    indptr[1:] = np.cumsum([len(r[0]) for r in rows])
    cols = np.concatenate([np.asarray(r[0], dtype=np.int64) for r in rows])
    vals = np.concatenate([np.asarray(r[1], dtype=np.float64) for r in rows])
    C = sp.csr_matrix((vals, cols, indptr), shape=(len(rows), layout.n_cols))
    C.sum_duplicates()
    return CutSet(layout, C, np.array([r[2] for r in rows], dtype=np.float64), **kw)
