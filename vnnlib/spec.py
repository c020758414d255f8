"""The parsed property: what the verifier must refute.

A VNN-LIB file asserts the *counterexample region*. We normalise every query, whatever its
version, to a list of input boxes, each with output conditions in disjunctive normal form:

    violated  <=>  exists region r, x in [lower_r, upper_r], disjunct j of r:  C_j · y(x) <= d_j

(every row of ``C_j · y <= d_j`` holds). Strict ``<`` is stored as ``<=``, which is sound for
proving (the region only grows) and exact up to measure zero for falsifying; counterexamples
are always re-checked against the original strict/non-strict relation's ``<=`` form.

Inputs and outputs are flat: index ``i`` is position ``i`` of the model's input/output tensor in
row-major (C) order, which is how VNN-LIB 1.0 numbers ``X_i``/``Y_i`` and how VNN-LIB 2.0
indices ``X[a,b,c]`` flatten.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Disjunct:
    """One conjunction of output constraints: violated iff ``C @ y <= d`` row-wise.

    ``C`` has shape (rows, num_outputs), ``d`` shape (rows,), both float64.
    """

    C: np.ndarray
    d: np.ndarray

    @property
    def num_rows(self) -> int:
        return int(self.d.shape[0])


@dataclass(frozen=True)
class InputRegion:
    """An input box with the output disjuncts that apply inside it."""

    lower: np.ndarray  # (num_inputs,) float64
    upper: np.ndarray  # (num_inputs,) float64
    disjuncts: tuple[Disjunct, ...]


@dataclass(frozen=True)
class TensorDecl:
    """A declared input/output of a VNN-LIB 2.0 query (kept to write counterexamples back)."""

    name: str
    dtype: str  # e.g. "float32"
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return int(np.prod(self.shape)) if self.shape else 1


@dataclass(frozen=True)
class Spec:
    """A parsed VNN-LIB query, version-independent.

    ``version`` is "1.0" or "2.0"; ``inputs``/``outputs`` hold the 2.0 declarations (for 1.0 a
    single flat ``X``/``Y`` declaration is synthesised) so a counterexample can be written in the
    query's own format.
    """

    regions: tuple[InputRegion, ...]
    num_inputs: int
    num_outputs: int
    version: str = "1.0"
    path: str | None = None
    inputs: tuple[TensorDecl, ...] = field(default=())
    outputs: tuple[TensorDecl, ...] = field(default=())

    @property
    def num_disjuncts(self) -> int:
        return sum(len(r.disjuncts) for r in self.regions)

    def is_violated_by(self, x: np.ndarray, y: np.ndarray, tol: float = 0.0) -> bool:
        """True if flat input ``x`` lies in some region and ``y`` satisfies one of its disjuncts.

        ``tol`` loosens nothing by default: a counterexample we report must violate the
        property exactly (in float64 on the values given).
        """
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        y = np.asarray(y, dtype=np.float64).reshape(-1)
        for region in self.regions:
            if np.any(x < region.lower - tol) or np.any(x > region.upper + tol):
                continue
            for dj in region.disjuncts:
                if np.all(dj.C @ y <= dj.d + tol):
                    return True
        return False
