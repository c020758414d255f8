"""A :class:`~planecut.vnnlib.Spec` laid out as batched tensors.

Regions become the batch dimension and all disjuncts' rows of a region are stacked into one
``C`` (padded to the widest region), so one bounding call or one attack step handles every
region, disjunct and row at once. ``row_disjunct`` maps each row to its disjunct so that per-row
values reduce to per-disjunct values with one ``scatter_reduce``:

    margin_j(y) = max over rows k of disjunct j of (C_k · y - d_k)

A disjunct is violated at ``y`` iff ``margin_j(y) <= 0``; it is proven if a lower bound of some
row is ``> 0``, i.e. ``max_k lb_k > 0`` — the same reduction applied to lower bounds.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from planecut.vnnlib.spec import Spec

Tensor = torch.Tensor


def gather_rows(t: Tensor, order: Tensor) -> Tensor:
    """``t`` ``(N, K, *rest)`` at the rows ``order`` ``(N, K')`` of each example: how every
    per-row tensor (bounds, slopes, multipliers, ``C``) follows a change of spec rows."""
    idx = order.view(*order.shape, *([1] * (t.dim() - 2))).expand(-1, -1, *t.shape[2:])
    return t.gather(1, idx)


@dataclass
class SpecTensors:
    """Regions of a spec (or a subset of them) as padded tensors.

    lower, upper: (R, n_in) input boxes; C: (R, K, n_out); d: (R, K);
    row_disjunct: (R, K) int64 disjunct index of each row, ``J`` for padding rows;
    disjunct_valid: (R, J) bool, False for padding disjunct slots;
    region_index: (R,) int64 position of each region in ``Spec.regions``.
    """

    lower: Tensor
    upper: Tensor
    C: Tensor
    d: Tensor
    row_disjunct: Tensor
    disjunct_valid: Tensor
    region_index: Tensor

    @property
    def num_regions(self) -> int:
        return int(self.lower.shape[0])

    @property
    def num_disjuncts(self) -> int:
        return int(self.disjunct_valid.shape[1])

    @classmethod
    def from_spec(cls, spec: Spec, regions: list[int] | None = None,
                  device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32
                  ) -> "SpecTensors":
        idx = list(range(len(spec.regions))) if regions is None else list(regions)
        chosen = [spec.regions[i] for i in idx]
        R = len(chosen)
        J = max(1, max(len(r.disjuncts) for r in chosen))
        K = max(1, max(sum(dj.num_rows for dj in r.disjuncts) for r in chosen))
        n_out = spec.num_outputs
        C = np.zeros((R, K, n_out))
        d = np.zeros((R, K))
        row_dj = np.full((R, K), J, dtype=np.int64)
        valid = np.zeros((R, J), dtype=bool)
        for r, region in enumerate(chosen):
            k = 0
            for j, dj in enumerate(region.disjuncts):
                valid[r, j] = True
                n = dj.num_rows
                C[r, k:k + n] = dj.C
                d[r, k:k + n] = dj.d
                row_dj[r, k:k + n] = j
                k += n
        lower = np.stack([r.lower for r in chosen])
        upper = np.stack([r.upper for r in chosen])

        def t(a: np.ndarray) -> Tensor:
            return torch.as_tensor(a, dtype=dtype, device=device)

        return cls(t(lower), t(upper), t(C), t(d),
                   torch.as_tensor(row_dj, device=device),
                   torch.as_tensor(valid, device=device),
                   torch.as_tensor(np.asarray(idx, dtype=np.int64), device=device))

    def take(self, rows: Tensor, lower: Tensor | None = None, upper: Tensor | None = None
             ) -> "SpecTensors":
        """The regions at ``rows`` (repetitions allowed), optionally with other input boxes
        (branch and bound: subdomains of those regions)."""
        return SpecTensors(self.lower[rows] if lower is None else lower,
                           self.upper[rows] if upper is None else upper,
                           self.C[rows], self.d[rows], self.row_disjunct[rows],
                           self.disjunct_valid[rows], self.region_index[rows])

    def without_proven(self, proven: Tensor) -> tuple["SpecTensors", Tensor]:
        """The spec without the disjuncts ``proven`` ``(R, J)`` holds true for, and ``(R, K')``
        the old position of each row kept (padding rows point at row 0).

        A disjunct proven on a whole region is proven on every part of it, so branch and
        bound need not bound its rows again: the rows of one MNIST-style spec are 9, one per
        other label, and after the root typically one to three are open — the rest would
        cost most of every domain's bound. Proven disjuncts become padding slots (never
        violated, never blocking a proof); the kept rows are packed first, in their order."""
        R, K = self.d.shape
        J = self.num_disjuncts
        padded = torch.cat([proven, proven.new_ones(R, 1)], dim=1)
        keep = ~padded.gather(1, self.row_disjunct)  # (R, K), padding rows dropped
        counts = keep.sum(dim=1)
        k_new = max(1, int(counts.max()))
        order = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)[:, :k_new]
        live = torch.arange(k_new, device=keep.device).unsqueeze(0) < counts.unsqueeze(1)
        order = torch.where(live, order, torch.zeros_like(order))
        C = gather_rows(self.C, order) * live.unsqueeze(-1).to(self.C.dtype)
        d = torch.where(live, self.d.gather(1, order), torch.zeros_like(self.d[:, :1]))
        row_dj = torch.where(live, self.row_disjunct.gather(1, order),
                             torch.full_like(order, J))
        return SpecTensors(self.lower, self.upper, C, d, row_dj,
                           self.disjunct_valid & ~proven, self.region_index), order

    def proof_margin(self, row_lower: Tensor) -> Tensor:
        """(N,) how close each example is to a proof: min over disjuncts of the best row's
        ``lower - d`` (> 0 means proven without slack)."""
        return self.disjunct_max(row_lower - self.d).min(dim=1).values

    def repeat(self, n: int) -> "SpecTensors":
        """Each region repeated ``n`` times consecutively (attack restarts)."""
        rep = lambda t: t.repeat_interleave(n, dim=0)  # noqa: E731
        return SpecTensors(rep(self.lower), rep(self.upper), rep(self.C), rep(self.d),
                           rep(self.row_disjunct), rep(self.disjunct_valid),
                           rep(self.region_index))

    def row_values(self, y: Tensor) -> Tensor:
        """``C·y - d`` per row: (N, K) for outputs ``y`` of shape (N, n_out)."""
        return torch.einsum("nko,no->nk", self.C, y.reshape(y.shape[0], -1)) - self.d

    def disjunct_max(self, rows: Tensor) -> Tensor:
        """Reduce per-row values (N, K) to per-disjunct maxima (N, J).

        Disjuncts without rows get ``-inf`` (an empty conjunction always holds); padding
        disjunct slots get ``+inf`` so they never count as violated and never block a proof.
        """
        N, J = rows.shape[0], self.num_disjuncts
        out = torch.full((N, J + 1), float("-inf"), dtype=rows.dtype, device=rows.device)
        out = out.scatter_reduce(1, self.row_disjunct, rows, reduce="amax", include_self=True)
        out = out[:, :J]
        return out.masked_fill(~self.disjunct_valid, float("inf"))

    def margin(self, y: Tensor) -> Tensor:
        """Violation margin per example (N,): ``<= 0`` iff some disjunct is violated at ``y``."""
        return self.disjunct_max(self.row_values(y)).min(dim=1).values

    def proven_disjuncts(self, row_lower: Tensor, margin: float = 0.0) -> Tensor:
        """(N, J) bool: disjunct proven (or padding) given lower bounds on ``C·y`` per row.

        A row counts only if its lower bound beats the threshold by ``margin * max(1, |d|)``:
        bounds computed in float32 are exact only up to rounding, so a proof that hinges on
        the last few ulps is not taken.
        """
        slack = margin * self.d.abs().clamp(min=1.0)
        return self.disjunct_max(row_lower - self.d - slack) > 0
