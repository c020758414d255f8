"""Solver-neutral MILP of a verification problem: variables, rows and objective as arrays.

Columns, in this order (the *column space* cuts are expressed in, see :mod:`.cutset`):

* ``x``: the input, bounded by the region's box;
* per ReLU layer ``k``: ``z_k`` (pre-activation, bounded by the intermediate bounds), ``y_k``
  (post-activation, ``[max(l,0), max(u,0)]``) and ``a_k`` (the indicator ``[z > 0]``, binary
  for unstable neurons; stable neurons get their indicator fixed to 0 or 1, so a cut may
  mention it and still be checked against executions).

Rows: ``z_k − Σ_s M[k,s]·v_s = c_k`` (every affine layer, conv and residual adds included); for
active neurons ``y = z``; for inactive ones ``y = 0`` by its bounds; for unstable ones the
standard exact big-M encoding ``y >= z``, ``y <= u·a``, ``y <= z − l·(1 − a)``.

The objective is a spec disjunct ``min max_r (C_r·out − d_r)`` (the property is violated on
the region iff the optimum is ``<= 0``): one row goes straight into the objective; several rows
add an epigraph variable ``t`` (the last column, not part of the cut column space).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from .encoding import NetworkEncoding


@dataclass(frozen=True)
class ColumnLayout:
    """Where each variable lives in the column space: ``x`` first, then per layer z, y, a."""

    n_in: int
    sizes: tuple[int, ...]

    @property
    def n_cols(self) -> int:
        return self.n_in + 3 * sum(self.sizes)

    def offset(self, kind: str, layer: int = 0) -> int:
        if kind == "x":
            return 0
        base = self.n_in + 3 * sum(self.sizes[:layer])
        return base + {"z": 0, "y": 1, "a": 2}[kind] * self.sizes[layer]

    def block(self, kind: str, layer: int = 0) -> slice:
        o = self.offset(kind, layer)
        return slice(o, o + (self.n_in if kind == "x" else self.sizes[layer]))

    def source_block(self, s: int) -> slice:
        """Columns of affine source ``s`` (see :class:`ReluLayer`): the input for 0, else the
        output ``y`` of ReLU layer ``s − 1``."""
        return self.block("x") if s == 0 else self.block("y", s - 1)

    def decode(self, col: int) -> tuple[str, int, int]:
        """(kind, layer, index) of a column; kind ``x`` has layer -1."""
        if col < self.n_in:
            return "x", -1, col
        c = col - self.n_in
        for k, n in enumerate(self.sizes):
            if c < 3 * n:
                return "zya"[c // n], k, c % n
            c -= 3 * n
        raise IndexError(f"column {col} outside the layout")

    def name(self, col: int) -> str:
        kind, layer, idx = self.decode(col)
        return f"x_{idx}" if kind == "x" else f"{kind}{layer}_{idx}"


@dataclass
class MilpModel:
    """``min obj·v + obj_const`` s.t. ``row_lo <= A·v <= row_hi``, ``lb <= v <= ub``, ``v_j``
    integer where ``integer[j]``. ``layout`` covers the first ``layout.n_cols`` columns; an
    epigraph column ``t`` may follow."""

    layout: ColumnLayout
    A: sp.csr_matrix
    row_lo: np.ndarray
    row_hi: np.ndarray
    lb: np.ndarray
    ub: np.ndarray
    integer: np.ndarray
    obj: np.ndarray
    obj_const: float = 0.0

    @property
    def n_vars(self) -> int:
        return int(self.lb.size)

    @property
    def n_rows(self) -> int:
        return int(self.row_lo.size)

    def names(self) -> list[str]:
        out = [self.layout.name(j) for j in range(self.layout.n_cols)]
        out += [f"t_{i}" for i in range(self.n_vars - self.layout.n_cols)]
        return out

    def with_rows(self, A: sp.spmatrix, lo: np.ndarray, hi: np.ndarray) -> "MilpModel":
        """A copy with extra rows (e.g. cuts, padded to the model's columns)."""
        A = sp.csr_matrix(A)
        if A.shape[1] < self.n_vars:
            A = sp.hstack([A, sp.csr_matrix((A.shape[0], self.n_vars - A.shape[1]))]).tocsr()
        return MilpModel(self.layout, sp.vstack([self.A, A]).tocsr(),
                         np.concatenate([self.row_lo, lo]), np.concatenate([self.row_hi, hi]),
                         self.lb, self.ub, self.integer, self.obj, self.obj_const)


def objective_of(enc: NetworkEncoding, C: np.ndarray, d: np.ndarray
                 ) -> tuple[dict[int, np.ndarray], np.ndarray]:
    """Spec rows ``C·out − d`` as maps on the sources: (per-source coefficient rows, constants)."""
    C = np.atleast_2d(np.asarray(C, dtype=np.float64))
    d = np.asarray(d, dtype=np.float64).reshape(-1)
    if C.shape[1] != enc.n_out:
        raise ValueError(f"spec rows have {C.shape[1]} columns, the network {enc.n_out} outputs")
    rows = {s: np.asarray((M.T @ C.T).T) for s, M in enc.out_maps.items()}
    return rows, C @ enc.out_bias - d


def row_objective(enc: NetworkEncoding, layout: ColumnLayout, c: np.ndarray, d: float
                  ) -> tuple[np.ndarray, float]:
    """``(obj, const)`` over ``layout``'s columns with ``obj·v + const = c·out − d``."""
    rows, const = objective_of(enc, np.reshape(c, (1, -1)), np.array([d], dtype=np.float64))
    obj = np.zeros(layout.n_cols)
    for s, row in rows.items():
        obj[layout.source_block(s)] += row[0]
    return obj, float(const[0])


def build_milp(enc: NetworkEncoding, C: np.ndarray, d: np.ndarray) -> MilpModel:
    """The MILP of ``min max_r (C_r·out − d_r)`` over the region (see module doc)."""
    layout = ColumnLayout(enc.n_in, tuple(enc.layer_sizes()))
    n = layout.n_cols
    lb = np.empty(n)
    ub = np.empty(n)
    integer = np.zeros(n, dtype=bool)
    lb[layout.block("x")], ub[layout.block("x")] = enc.x_lower, enc.x_upper
    rows: list[sp.csr_matrix] = []
    lo_parts: list[np.ndarray] = []
    hi_parts: list[np.ndarray] = []

    def add(A: sp.spmatrix, lo: np.ndarray, hi: np.ndarray) -> None:
        rows.append(sp.csr_matrix(A))
        lo_parts.append(np.asarray(lo, dtype=np.float64))
        hi_parts.append(np.asarray(hi, dtype=np.float64))

    for k, L in enumerate(enc.layers):
        nk = L.size
        zb, yb, ab = layout.block("z", k), layout.block("y", k), layout.block("a", k)
        lb[zb], ub[zb] = L.lower, L.upper
        lb[yb], ub[yb] = np.maximum(L.lower, 0.0), np.maximum(L.upper, 0.0)
        uns, act = L.unstable, L.active
        lb[ab] = np.where(act, 1.0, 0.0)
        ub[ab] = np.where(act | uns, 1.0, 0.0)
        integer[ab] = uns
        # affine layer: z_k - sum_s M v_s = c_k
        parts = [sp.csr_matrix((np.ones(nk), (np.arange(nk), np.arange(zb.start, zb.stop))),
                               shape=(nk, n))]
        for s, M in L.maps.items():
            blk = layout.source_block(s)
            Mc = sp.csr_matrix(M)
            parts.append(-sp.csr_matrix((Mc.data, Mc.indices + blk.start, Mc.indptr),
                                        shape=(nk, n)))
        A = parts[0]
        for p in parts[1:]:
            A = A + p
        add(A, L.bias, L.bias)
        idx = np.arange(nk)
        # active: y - z = 0
        ia = idx[act]
        if ia.size:
            add(_pairs(ia.size, n, yb.start + ia, 1.0, zb.start + ia, -1.0), np.zeros(ia.size),
                np.zeros(ia.size))
        iu = idx[uns]
        if iu.size:
            m = iu.size
            l, u = L.lower[iu], L.upper[iu]
            # y - z >= 0
            add(_pairs(m, n, yb.start + iu, 1.0, zb.start + iu, -1.0), np.zeros(m),
                np.full(m, np.inf))
            # y - u a <= 0
            add(_pairs(m, n, yb.start + iu, 1.0, ab.start + iu, -u), np.full(m, -np.inf),
                np.zeros(m))
            # y - z - l a <= -l
            r = np.arange(m)
            A3 = sp.csr_matrix((np.concatenate([np.ones(m), -np.ones(m), -l]),
                                (np.concatenate([r, r, r]),
                                 np.concatenate([yb.start + iu, zb.start + iu, ab.start + iu]))),
                               shape=(m, n))
            add(A3, np.full(m, -np.inf), -l)
    # objective
    C = np.atleast_2d(np.asarray(C, dtype=np.float64))
    d = np.asarray(d, dtype=np.float64).reshape(-1)
    if C.shape[0] == 1:
        obj, const0 = row_objective(enc, layout, C[0], float(d[0]))
        model_A = sp.vstack(rows).tocsr() if rows else sp.csr_matrix((0, n))
        return MilpModel(layout, model_A, np.concatenate(lo_parts) if lo_parts else np.zeros(0),
                         np.concatenate(hi_parts) if hi_parts else np.zeros(0), lb, ub, integer,
                         obj, const0)
    obj_rows, const = objective_of(enc, C, d)
    R = const.size
    # epigraph: t >= C_r out - d_r  <=>  sum_s row_r v_s - t <= -const_r
    nt = n + 1
    rows = [sp.hstack([r, sp.csr_matrix((r.shape[0], 1))]).tocsr() for r in rows]
    E = sp.lil_matrix((R, nt))
    for s, row in obj_rows.items():
        blk = layout.source_block(s)
        E[:, blk.start:blk.stop] = row
    E[:, n] = -1.0
    rows.append(E.tocsr())
    lo_parts.append(np.full(R, -np.inf))
    hi_parts.append(-const)
    obj = np.zeros(nt)
    obj[n] = 1.0
    return MilpModel(layout, sp.vstack(rows).tocsr(), np.concatenate(lo_parts),
                     np.concatenate(hi_parts), np.concatenate([lb, [-np.inf]]),
                     np.concatenate([ub, [np.inf]]), np.concatenate([integer, [False]]), obj, 0.0)


def _pairs(m: int, n: int, c1: np.ndarray, v1, c2: np.ndarray, v2) -> sp.csr_matrix:
    r = np.arange(m)
    v1 = np.broadcast_to(np.asarray(v1, dtype=np.float64), (m,))
    v2 = np.broadcast_to(np.asarray(v2, dtype=np.float64), (m,))
    return sp.csr_matrix((np.concatenate([v1, v2]), (np.concatenate([r, r]),
                                                     np.concatenate([c1, c2]))), shape=(m, n))


def execution_columns(enc: NetworkEncoding, X: np.ndarray) -> np.ndarray:
    """Column-space vectors of real executions at inputs ``X`` ``(S, n_in)`` -> ``(S, n_cols)``
    (small problems and tests; validation works layer by layer instead)."""
    zs, ys, _ = enc.forward(X)
    parts = [np.asarray(X, dtype=np.float64).reshape(len(zs[0]) if zs else -1, enc.n_in)]
    for z, y in zip(zs, ys):
        parts += [z, y, (z > 0).astype(np.float64)]
    return np.concatenate(parts, 1)
