"""The cut format shared by the MIP worker (producer) and GCP-CROWN (consumer).

A cut is ``Hx·x + Σ_k (Gz_k·z_k + Hy_k·y_k + Qa_k·a_k) <= rhs`` in the network's original
variables (input, and per ReLU layer pre-activation, post-activation and 0/1 indicator): the
column space of :class:`planecut.mip_cuts.milp.ColumnLayout`. A :class:`CutSet` stores ``m``
cuts as one sparse ``m × n_cols`` matrix (conv nets have thousands of neurons, a cut touches a
handful) plus ``rhs``, and names each ReLU layer by its pre-activation tensor so that anyone can
check a cut against real executions of the ONNX model. It serialises to one ``.npz`` with
dense per-layer arrays (``x``, ``z_k``, ``y_k``, ``a_k``, ``rhs``, ``layer_names``,
``layer_shapes``) so that numpy alone can read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from .encoding import NetworkEncoding
from .milp import ColumnLayout

#: decimals kept when fingerprinting a normalised cut for de-duplication
KEY_DECIMALS = 9


@dataclass
class CutSet:
    """``coeffs · v <= rhs`` over the column space ``layout`` (``v`` = x, then z, y, a per
    layer). ``version`` increases with every batch a worker sends."""

    layout: ColumnLayout
    coeffs: sp.csr_matrix  # (m, n_cols)
    rhs: np.ndarray  # (m,)
    layer_names: tuple[str, ...] = ()
    layer_shapes: tuple[tuple[int, ...], ...] = ()
    version: int = 0
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.coeffs = sp.csr_matrix(self.coeffs, dtype=np.float64)
        self.rhs = np.asarray(self.rhs, dtype=np.float64).reshape(-1)
        if self.coeffs.shape != (self.rhs.size, self.layout.n_cols):
            raise ValueError(f"cut matrix {self.coeffs.shape} does not match {self.rhs.size} "
                             f"right-hand sides and {self.layout.n_cols} columns")

    @classmethod
    def empty(cls, layout: ColumnLayout, **kw) -> "CutSet":
        return cls(layout, sp.csr_matrix((0, layout.n_cols)), np.zeros(0), **kw)

    def __len__(self) -> int:
        return int(self.rhs.size)

    # ---------------------------------------------------------------- views

    def block(self, kind: str, layer: int = 0) -> sp.csr_matrix:
        """Coefficients on one variable block (``x``, or ``z``/``y``/``a`` of a layer)."""
        return self.coeffs[:, self.layout.block(kind, layer)]

    def take(self, keep: np.ndarray) -> "CutSet":
        keep = np.asarray(keep)
        return CutSet(self.layout, self.coeffs[keep], self.rhs[keep], self.layer_names,
                      self.layer_shapes, self.version, dict(self.meta))

    def concat(self, other: "CutSet") -> "CutSet":
        if other.layout != self.layout:
            raise ValueError("cut sets over different column layouts")
        return CutSet(self.layout, sp.vstack([self.coeffs, other.coeffs]).tocsr(),
                      np.concatenate([self.rhs, other.rhs]), self.layer_names or
                      other.layer_names, self.layer_shapes or other.layer_shapes,
                      max(self.version, other.version), dict(self.meta))

    def keys(self) -> list[bytes]:
        """Fingerprints for de-duplication: each cut scaled to unit max-norm, rounded."""
        out = []
        C = self.coeffs
        for i in range(len(self)):
            lo, hi = C.indptr[i], C.indptr[i + 1]
            idx, val = C.indices[lo:hi], C.data[lo:hi]
            scale = max(float(np.abs(val).max()) if val.size else 0.0, 1e-300)
            order = np.argsort(idx)
            v = np.round(val[order] / scale, KEY_DECIMALS)
            r = np.round(self.rhs[i] / scale, KEY_DECIMALS)
            out.append(idx[order].astype(np.int64).tobytes() + v.tobytes() +
                       np.float64(r).tobytes())
        return out

    def lhs_on_executions(self, enc: NetworkEncoding, X: np.ndarray, chunk: int = 512
                          ) -> np.ndarray:
        """``coeffs·v`` at the real executions from inputs ``X`` ``(S, n_in)`` -> ``(m, S)``.

        Evaluated block by block (never the full column vector of a conv net at once)."""
        X = np.asarray(X, dtype=np.float64).reshape(-1, enc.n_in)
        out = np.empty((len(self), X.shape[0]))
        lay = self.layout
        Cx = self.block("x")
        blocks = [(self.block("z", k), self.block("y", k), self.block("a", k))
                  for k in range(len(lay.sizes))]
        for s in range(0, X.shape[0], chunk):
            Xc = X[s:s + chunk]
            zs, ys, _ = enc.forward(Xc)
            acc = np.asarray(Cx @ Xc.T)
            for (Cz, Cy, Ca), z, y in zip(blocks, zs, ys):
                if Cz.nnz:
                    acc += np.asarray(Cz @ z.T)
                if Cy.nnz:
                    acc += np.asarray(Cy @ y.T)
                if Ca.nnz:
                    acc += np.asarray(Ca @ (z > 0).astype(np.float64).T)
            out[:, s:s + chunk] = acc
        return out

    # ---------------------------------------------------------------- files

    def save_npz(self, path: str | Path) -> None:
        """One ``.npz``: ``rhs`` (m), ``x`` (m × n_in), ``z_k``/``y_k``/``a_k`` (m × n_k, dense
        float64), ``layer_names``, ``layer_shapes`` (one row per layer, zero padded) and
        ``layer_ndims``."""
        arrays: dict[str, np.ndarray] = {"rhs": self.rhs,
                                         "x": self.block("x").toarray()}
        for k in range(len(self.layout.sizes)):
            for kind in "zya":
                arrays[f"{kind}_{k}"] = self.block(kind, k).toarray()
        names = list(self.layer_names) or [f"relu{k}" for k in range(len(self.layout.sizes))]
        shapes = list(self.layer_shapes) or [(n,) for n in self.layout.sizes]
        width = max([len(s) for s in shapes] + [1])
        arrays["layer_names"] = np.array(names, dtype=str)
        arrays["layer_shapes"] = np.array([list(s) + [0] * (width - len(s)) for s in shapes],
                                          dtype=np.int64).reshape(len(shapes), width)
        arrays["layer_ndims"] = np.array([len(s) for s in shapes], dtype=np.int64)
        np.savez_compressed(path, **arrays)

    @classmethod
    def load_npz(cls, path: str | Path) -> "CutSet":
        with np.load(path, allow_pickle=False) as f:
            rhs = f["rhs"]
            X = f["x"]
            ndims = f["layer_ndims"]
            shapes = tuple(tuple(int(v) for v in row[:nd])
                           for row, nd in zip(f["layer_shapes"], ndims))
            names = tuple(str(s) for s in f["layer_names"])
            parts = [sp.csr_matrix(X)]
            sizes = []
            for k in range(len(names)):
                zk = f[f"z_{k}"]
                sizes.append(zk.shape[1])
                parts += [sp.csr_matrix(zk), sp.csr_matrix(f[f"y_{k}"]),
                          sp.csr_matrix(f[f"a_{k}"])]
        layout = ColumnLayout(X.shape[1], tuple(sizes))
        return cls(layout, sp.hstack(parts).tocsr(), rhs, names, shapes)
