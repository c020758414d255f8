"""The activation-split domain store: every open subdomain as rows of a few batched tensors.

A *domain* is one input region of the spec plus a set of ReLU splits. Everything branch and
bound keeps about it is a row of the tensors of a :class:`DomainBatch`; the
:class:`DomainStore` holds the open ones (preallocated, grown by doubling, on the compute
device) and hands out the ``k`` worst at a time.

**Compact neuron coordinates.** Only neurons unstable at the root (``l < 0 < u`` in some
region) can ever be split or change their relaxation: children inherit their parent's bounds
and clamp split neurons only, so a neuron stable at the root stays stable with the root's
bounds, and a stable ReLU's relaxation (``y = z`` or ``y = 0``) does not depend on its bounds
at all. The store therefore keeps per-domain state on the root-unstable neurons of all ReLU
layers concatenated (``M`` coordinates, :class:`NeuronLayout`); full tensors for a bound
computation are the root's bounds with the domain's values scattered back
(:meth:`NeuronLayout.full_bounds`). Neuron identity ``(relu_layer, flat_index)`` of compact
coordinate ``c`` is ``(layout.layer_of[c], layout.flat_of[c])``.

Per domain (row): ``lower``/``upper`` ``(M,)`` pre-activation bounds (split neurons clamped),
``splits`` ``(M,)`` int8 (+1 active, −1 inactive, 0 free), ``row_lower`` ``(K,)`` lower bounds of
the spec rows, ``score`` (the proof margin: min over disjuncts of the best row's ``lower − d``;
> 0 proves), ``region`` (row of the :class:`SpecTensors` the domain belongs to: several input
regions share one store), ``depth`` (number of splits), and optional warm starts ``alpha`` /
``beta`` ``(K, M)`` in float16 (slopes lie in [0, 1]; multipliers only seed the next
optimisation, so half precision is plenty). Warm starts are dropped for the whole store when
its memory estimate would pass ``warm_start_budget`` bytes.

With cuts (GCP-CROWN), ``mu`` ``(K, m)`` float16 holds each domain's cut multipliers, the warm
start of its children's. It is valid for one cut set only: when the search changes the cuts,
:meth:`DomainStore.reset_mu` replaces every domain's with the root's new multipliers.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Mapping

import torch

from planecut.verifier.graph.ir import Graph
from planecut.verifier.spec_tensors import gather_rows

Tensor = torch.Tensor
Interval = tuple[Tensor, Tensor]
WARM_DTYPE = torch.float16


@dataclass
class NeuronLayout:
    """Map between full per-layer tensors and compact root-unstable coordinates.

    ``index[l]`` ``(m_l,)``: flat positions of layer ``l``'s root-unstable neurons;
    ``offsets``: start of each layer in compact coordinates (``len = L + 1``, ``M =
    offsets[-1]``); ``root_lower[l]`` / ``root_upper[l]``: ``(R, n_l)`` root bounds per region.
    """

    names: list[str]
    shapes: list[tuple[int, ...]]
    index: list[Tensor]
    offsets: list[int]
    root_lower: list[Tensor]
    root_upper: list[Tensor]
    layer_of: Tensor  # (M,) int64
    flat_of: Tensor  # (M,) int64
    regions: int = 1

    @property
    def num_compact(self) -> int:
        return self.offsets[-1]

    @property
    def num_layers(self) -> int:
        return len(self.names)

    @classmethod
    def from_root(cls, graph: Graph, root: Mapping[str, Interval], regions: int
                  ) -> "NeuronLayout":
        """Layout from root bounds ``{relu name: (lo, hi)}`` with batch ``regions`` (or 1)."""
        names, shapes, index, offsets, rl, ru = [], [], [], [0], [], []
        for relu in graph.relu_nodes:
            lo, hi = root[relu.name]
            lo = lo.reshape(lo.shape[0], -1).expand(regions, -1).contiguous()
            hi = hi.reshape(hi.shape[0], -1).expand(regions, -1).contiguous()
            idx = ((lo < 0) & (hi > 0)).any(dim=0).nonzero().squeeze(1)
            names.append(relu.name)
            shapes.append(tuple(relu.shape))
            index.append(idx)
            offsets.append(offsets[-1] + idx.numel())
            rl.append(lo)
            ru.append(hi)
        device = rl[0].device if rl else torch.device("cpu")
        layer_of = torch.cat([torch.full((i.numel(),), l, dtype=torch.long, device=device)
                              for l, i in enumerate(index)]) if index else \
            torch.zeros(0, dtype=torch.long)
        flat_of = torch.cat(index) if index else torch.zeros(0, dtype=torch.long)
        return cls(names, shapes, index, offsets, rl, ru, layer_of, flat_of, regions)

    def layer_slice(self, layer: int) -> slice:
        return slice(self.offsets[layer], self.offsets[layer + 1])

    def root_compact(self, like: Tensor | None = None) -> Interval:
        """Root bounds in compact coordinates: ``(R, M)`` each (``like`` gives dtype and
        device when the network has no ReLU)."""
        if not self.index:
            empty = (like if like is not None else torch.zeros(0)).new_zeros((self.regions, 0))
            return empty, empty.clone()
        lo = [t[:, i] for t, i in zip(self.root_lower, self.index)]
        hi = [t[:, i] for t, i in zip(self.root_upper, self.index)]
        return torch.cat(lo, dim=1), torch.cat(hi, dim=1)

    def tighten_layer(self, layer: int, lower: Tensor, upper: Tensor) -> Interval:
        """Intersect layer ``layer``'s root bounds (every region) with ``lower``/``upper``
        ``(n_l,)``, bounds that hold on the whole input (e.g. refined by a MIP); returns the
        new values at the layer's compact coordinates ``(R, m_l)``, for the open domains."""
        lo = torch.maximum(self.root_lower[layer], lower.to(self.root_lower[layer]))
        hi = torch.minimum(self.root_upper[layer], upper.to(self.root_upper[layer]))
        self.root_lower[layer], self.root_upper[layer] = lo, hi
        idx = self.index[layer]
        return lo[:, idx], hi[:, idx]

    def full_bounds(self, lower: Tensor, upper: Tensor, region: Tensor) -> dict[str, Interval]:
        """``{relu name: (lo, hi) (B, *shape)}``: root bounds of each domain's region with the
        compact values ``(B, M)`` scattered back."""
        out: dict[str, Interval] = {}
        for l, name in enumerate(self.names):
            sl, idx = self.layer_slice(l), self.index[l]
            lo = self.root_lower[l].index_select(0, region).clone()
            hi = self.root_upper[l].index_select(0, region).clone()
            lo[:, idx] = lower[:, sl].to(lo.dtype)
            hi[:, idx] = upper[:, sl].to(hi.dtype)
            out[name] = (lo.view(-1, *self.shapes[l]), hi.view(-1, *self.shapes[l]))
        return out

    def full_splits(self, splits: Tensor) -> list[Tensor]:
        """Per-layer int8 split tensors ``(B, n_l)`` from compact ``(B, M)``."""
        out = []
        for l in range(self.num_layers):
            n = self.root_lower[l].shape[1]
            full = splits.new_zeros((splits.shape[0], n))
            full[:, self.index[l]] = splits[:, self.layer_slice(l)]
            out.append(full)
        return out

    def full_rows(self, compact: Tensor, like: Tensor) -> dict[str, Tensor]:
        """``{relu name: (B, K, *shape)}`` in ``like``'s dtype, zero off the compact positions,
        from ``(B, K, M)`` (warm starts)."""
        out: dict[str, Tensor] = {}
        b, k = compact.shape[:2]
        for l, name in enumerate(self.names):
            n = self.root_lower[l].shape[1]
            full = like.new_zeros((b, k, n))
            full[:, :, self.index[l]] = compact[:, :, self.layer_slice(l)].to(like.dtype)
            out[name] = full.view(b, k, *self.shapes[l])
        return out

    def compact_rows(self, full: Mapping[str, Tensor], batch: int, rows: int, like: Tensor,
                     default: Tensor | None = None) -> Tensor:
        """``(B, K, M)`` from ``{relu name: (B or 1, K, *shape)}``; layers missing from ``full``
        take ``default`` ``(B, M)`` broadcast over rows (or zeros)."""
        parts = []
        for l, name in enumerate(self.names):
            sl = self.layer_slice(l)
            t = full.get(name)
            if t is None:
                part = like.new_zeros((batch, rows, sl.stop - sl.start)) if default is None \
                    else default[:, None, sl].expand(batch, rows, -1).to(like.dtype)
            else:
                part = t.reshape(t.shape[0], t.shape[1], -1)[:, :, self.index[l]]
                part = part.expand(batch, rows, -1).to(like.dtype)
            parts.append(part)
        if not parts:
            return like.new_zeros((batch, rows, 0))
        return torch.cat(parts, dim=2)

    def compact_flat(self, full: Mapping[str, Tensor]) -> Tensor:
        """``(B, K, M)`` from per-layer flat ``(B, K, n_l)`` coefficients (no defaults)."""
        if not self.names:
            raise ValueError("no ReLU layer: nothing to branch on")
        return torch.cat([full[name][:, :, self.index[l]] for l, name in enumerate(self.names)],
                         dim=2)


#: the fields of a domain that hold one entry per spec row (dimension 1)
ROW_FIELDS = ("row_lower", "alpha", "beta", "mu")


@dataclass
class DomainBatch:
    """A batch of domains (see the module docstring for the fields)."""

    lower: Tensor  # (N, M)
    upper: Tensor  # (N, M)
    splits: Tensor  # (N, M) int8
    row_lower: Tensor  # (N, K)
    score: Tensor  # (N,)
    region: Tensor  # (N,) int64
    depth: Tensor  # (N,) int32
    alpha: Tensor | None = None  # (N, K, M) float16
    beta: Tensor | None = None  # (N, K, M) float16
    mu: Tensor | None = None  # (N, K, m) float16: cut multipliers (for the current cut set)

    def __len__(self) -> int:
        return int(self.score.shape[0])

    def take(self, idx: Tensor) -> "DomainBatch":
        return DomainBatch(**{f.name: None if getattr(self, f.name) is None
                              else getattr(self, f.name)[idx] for f in fields(self)})

    @staticmethod
    def cat(batches: list["DomainBatch"]) -> "DomainBatch":
        warm = {name: all(getattr(b, name) is not None for b in batches)
                for name in ("alpha", "beta", "mu")}
        out = {}
        for f in fields(DomainBatch):
            if f.name in warm and not warm[f.name]:
                out[f.name] = None
            else:
                out[f.name] = torch.cat([getattr(b, f.name) for b in batches])
        return DomainBatch(**out)

    def without_warm_starts(self) -> "DomainBatch":
        return replace(self, alpha=None, beta=None, mu=None)

    def unsplit_unstable(self) -> Tensor:
        """``(N, M)`` bool: neurons a child may split (unstable here and not split yet)."""
        return (self.lower < 0) & (self.upper > 0) & (self.splits == 0)


class DomainStore:
    """Open domains, kept as preallocated tensors on the compute device.

    :meth:`push` appends a batch (growing capacity by doubling); :meth:`pop` removes and
    returns the ``k`` domains with the lowest score (worst first: most likely to hide a
    counterexample and, for a proof, the ones that must be split anyway). Removal fills the
    holes with the last rows, so a pop costs ``O(k)`` copies plus one ``topk`` over the
    scores.
    """

    def __init__(self, warm_start_budget: int = 2**31) -> None:
        self._data: dict[str, Tensor | None] = {}
        self._size = 0
        self._keep_warm = True
        self.warm_start_budget = warm_start_budget

    def __len__(self) -> int:
        return self._size

    @property
    def keeps_warm_starts(self) -> bool:
        return self._keep_warm

    @property
    def capacity(self) -> int:
        t = self._data.get("score")
        return 0 if t is None else int(t.shape[0])

    def memory_bytes(self) -> int:
        """Bytes held by the store's tensors (allocated capacity, not only the used rows)."""
        return sum(t.numel() * t.element_size() for t in self._data.values() if t is not None)

    @staticmethod
    def bytes_per_domain(batch: DomainBatch) -> int:
        total = 0
        for f in fields(batch):
            t = getattr(batch, f.name)
            if t is not None and len(batch):
                total += t[:1].numel() * t.element_size()
        return total

    def worst_score(self) -> float:
        if self._size == 0:
            return float("inf")
        return float(self._data["score"][:self._size].min())

    def row_lower_min(self) -> Tensor | None:
        """Per spec row, the lowest lower bound over the open domains (None when empty)."""
        if self._size == 0:
            return None
        return self._data["row_lower"][:self._size].min(dim=0).values

    def scores(self) -> Tensor:
        return self._data["score"][:self._size]

    def regions(self) -> Tensor:
        return self._data["region"][:self._size]

    def row_lowers(self) -> Tensor:
        """``(n, K)`` the open domains' lower bounds per spec row."""
        return self._data["row_lower"][:self._size]

    def push(self, batch: DomainBatch) -> None:
        n = len(batch)
        if n == 0:
            return
        if self._keep_warm and batch.alpha is not None:
            need = (self._size + n) * self.bytes_per_domain(batch)
            if need > self.warm_start_budget:
                self.drop_warm_starts()
        if not self._keep_warm or batch.alpha is None or batch.beta is None:
            batch = batch.without_warm_starts()
            if self._size and (self._data.get("alpha") is not None):
                self.drop_warm_starts()
        held = self._data.get("mu")
        if batch.mu is not None and held is not None and held.shape[1:] != batch.mu.shape[1:]:
            batch = replace(batch, mu=None)  # (another cut set: not this store's)
        if not self._data:
            self._allocate(batch, max(n, 64))
        elif self._size + n > self.capacity:
            self._grow(max(self._size + n, 2 * self.capacity))
        sl = slice(self._size, self._size + n)
        for f in fields(batch):
            t = getattr(batch, f.name)
            if t is not None and self._data.get(f.name) is not None:
                self._data[f.name][sl] = t.to(self._data[f.name].dtype)
        if batch.mu is None and self._data.get("mu") is not None:
            self._data["mu"][sl] = 0  # (no multipliers of this cut set: start from zero)
        self._size += n

    def pop(self, k: int) -> DomainBatch:
        """Remove and return the ``min(k, len)`` domains with the lowest score, worst first."""
        k = min(k, self._size)
        n = self._size
        scores = self._data["score"][:n]
        idx = torch.topk(scores, k, largest=False, sorted=True).indices
        out = DomainBatch(**{name: None if t is None else t[idx].clone()
                             for name, t in self._data.items()})
        # fill the holes below n - k with the survivors among the last k rows
        taken = torch.zeros(n, dtype=torch.bool, device=scores.device)
        taken[idx] = True
        holes = idx[idx < n - k]
        tail = torch.arange(n - k, n, device=scores.device)
        movers = tail[~taken[n - k:]]
        if holes.numel():
            for t in self._data.values():
                if t is not None:
                    t[holes] = t[movers]
        self._size = n - k
        return out

    def tighten(self, cols: slice, lower: Tensor, upper: Tensor) -> int:
        """Intersect every open domain's bounds on compact coordinates ``cols`` with
        ``lower``/``upper`` ``(R, m)`` (indexed by the domain's region), bounds that hold on
        the whole region. A domain whose interval becomes empty somewhere has no input left
        (its splits contradict the new bounds): it is removed, and the count returned."""
        n = self._size
        if n == 0:
            return 0
        region = self._data["region"][:n]
        lo = self._data["lower"][:n, cols]
        hi = self._data["upper"][:n, cols]
        lo.copy_(torch.maximum(lo, lower.to(lo)[region]))
        hi.copy_(torch.minimum(hi, upper.to(hi)[region]))
        empty = (lo > hi).any(dim=1)
        dropped = int(empty.sum())
        if dropped:
            keep = (~empty).nonzero().flatten()
            for t in self._data.values():
                if t is not None:
                    t[:keep.numel()] = t[keep]
            self._size = keep.numel()
        return dropped

    def select_rows(self, order: Tensor) -> None:
        """Keep, in every open domain, only the spec rows ``order[region]`` (``order``:
        ``(R, K')`` old row positions per region, see ``SpecTensors.without_proven``): the
        search no longer bounds rows of disjuncts proven in every open domain."""
        if not self._data:
            return
        n = self._size
        idx = order[self._data["region"][:n]]  # (n, K')
        for name in ROW_FIELDS:
            t = self._data.get(name)
            if t is None:
                continue
            new = t.new_zeros((t.shape[0], idx.shape[1], *t.shape[2:]))
            if n:
                new[:n] = gather_rows(t[:n], idx)
            self._data[name] = new

    def drop_warm_starts(self) -> None:
        """Forget every stored slope and multiplier (memory pressure), now and for later
        pushes."""
        self._keep_warm = False
        self._data["alpha"] = None
        self._data["beta"] = None
        self._data["mu"] = None

    def reset_mu(self, mu_root: Tensor) -> None:
        """A new cut set: every open domain's multipliers become the root's ``(R, K, m)`` (by
        region), and later pushes carry ``(K, m)`` ones (nothing when warm starts are off)."""
        if not self._data or not self._keep_warm:
            return
        cap = self.capacity
        mu = mu_root.new_zeros((cap, *mu_root.shape[1:]), dtype=WARM_DTYPE)
        if self._size:
            mu[:self._size] = mu_root[self._data["region"][:self._size]].to(WARM_DTYPE)
        self._data["mu"] = mu

    def _allocate(self, batch: DomainBatch, capacity: int) -> None:
        for f in fields(batch):
            t = getattr(batch, f.name)
            if t is None:
                self._data[f.name] = None
                continue
            dtype = WARM_DTYPE if f.name in ("alpha", "beta", "mu") else t.dtype
            self._data[f.name] = t.new_empty((capacity, *t.shape[1:]), dtype=dtype)

    def _grow(self, capacity: int) -> None:
        for name, t in self._data.items():
            if t is None:
                continue
            new = t.new_empty((capacity, *t.shape[1:]))
            new[:self._size] = t[:self._size]
            self._data[name] = new
