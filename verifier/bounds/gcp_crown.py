"""GCP-CROWN: cutting planes as Lagrange multipliers in the backward pass.

A cut (format: :mod:`planecut.mip_cuts.cutset`) is ``Hx·x + Σ_k (Gz_k·z_k + Hy_k·y_k +
Qa_k·a_k) <= rhs`` over the input, and per ReLU layer the pre-activation, post-activation and
0/1 indicator ``a = [z > 0]``. It holds at every execution of the network on the region. For
a lower bound of ``Λ·out`` and any ``μ >= 0`` (one per cut, spec row and domain),

    Λ·out  >=  Λ·out + μ·(cut_lhs − rhs)      at every execution,

so a lower bound of the right-hand side over the relaxation is a lower bound of ``Λ·out``. In
the backward pass: the ``y`` terms join the coefficient on a ReLU's output before it is relaxed,
the ``z`` terms join the coefficient on its input after, the ``x`` terms join the input
coefficient before concretisation, ``−μ·rhs`` joins the constant — and the indicator terms
change the ReLU relaxation (:func:`relu_backward_gcp`): with ``c_j = Σ_k μ_k·Qa[k, j]`` and
``λ_j`` the coefficient reaching ``y_j``,

* ``λ_j >= 0``: the usual lower relaxation ``λ_j·α·z_j`` plus ``min(0, c_j)`` (``a_j``
  minimised out over [0, 1]);
* ``λ_j < 0``, ``ν = −λ_j``: dualising ``y <= z − l·(1 − a)`` (weight ``π``) and ``y <= u·a``
  (weight ``ν − π``) gives ``−π·z_j + π·l + min(0, c_j − ν·u + π·(u − l))`` with
  ``π = clamp((ν·u − c_j)/(u − l), 0, ν)`` (the choice that makes ``a_j``'s coefficient
  vanish); with ``c_j = 0`` this is exactly CROWN's upper relaxation;
* stable (or split) active: ``y = z``, ``a = 1``: ``λ_j·z_j + c_j``; inactive: 0.

Every relaxation used holds at every execution (``a = [z > 0]`` satisfies all the constraints
dualised), so every ``μ >= 0`` is sound; alpha-CROWN optimises ``μ`` with the slopes and the
split multipliers (it travels in the ``betas`` dict under :data:`CUT_KEY`, so that best-value
tracking, batch shrinking and warm starts treat it like ``β``).

Cuts are valid for the region the MIP encoded (its root bounds); a subdomain of it (splits,
tighter bounds) keeps every execution inside, so the cuts stay valid there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Mapping

import torch

from planecut.verifier.bounds.relaxations import ReluRelaxation

if TYPE_CHECKING:
    from planecut.mip_cuts.cutset import CutSet
    from planecut.verifier.graph.ir import Graph

Tensor = torch.Tensor

#: key of the cut multipliers ``μ`` ``(B, K, m)`` in the ``betas`` dicts
CUT_KEY = "__cuts__"
#: suffix of the ReLU name under which the upper-side weights ``π/ν ∈ [0, 1]`` travel with the
#: slopes (``alphas``): optimised, they close the gap to the LP with the same cuts
PI_SUFFIX = "::pi"


@dataclass
class LayerCuts:
    """One tensor's cut coefficients on the columns some cut touches: ``cols`` (flat
    positions) and ``coeffs`` ``(m, len(cols))``. Cuts touch few neurons (mostly unstable
    ones), so multiplying the multipliers by these instead of a dense ``(m, n)`` matrix saves
    most of the work on conv layers."""

    cols: Tensor
    coeffs: Tensor
    shape: tuple[int, ...]

    def weigh(self, mu: Tensor) -> Tensor:
        """``Σ_k μ[b, r, k]·coeffs[k, ...]`` as a full ``(B, K, *shape)`` tensor."""
        b, r, m = mu.shape
        n = 1
        for s in self.shape:
            n *= s
        part = mu.reshape(b * r, m).matmul(self.coeffs)
        full = part.new_zeros((b * r, n)).index_copy(1, self.cols, part)
        return full.view(b, r, *self.shape)

    def to(self, like: Tensor) -> "LayerCuts":
        return LayerCuts(self.cols.to(like.device),
                         self.coeffs.to(dtype=like.dtype, device=like.device), self.shape)


@dataclass
class CutTerms:
    """A cut set laid out like the graph's tensors: ``hx`` on the input, per ReLU node name
    ``gz``/``hy``/``qa`` (only blocks with a nonzero coefficient); ``pre_name`` maps a ReLU
    name to its input tensor."""

    rhs: Tensor  # (m,)
    hx: LayerCuts | None
    gz: dict[str, LayerCuts]
    hy: dict[str, LayerCuts]
    qa: dict[str, LayerCuts]
    pre_name: dict[str, str]
    version: int = 0

    @property
    def count(self) -> int:
        return int(self.rhs.shape[0])

    def to(self, like: Tensor) -> "CutTerms":
        return CutTerms(self.rhs.to(dtype=like.dtype, device=like.device),
                        None if self.hx is None else self.hx.to(like),
                        {k: v.to(like) for k, v in self.gz.items()},
                        {k: v.to(like) for k, v in self.hy.items()},
                        {k: v.to(like) for k, v in self.qa.items()}, dict(self.pre_name),
                        self.version)


def cut_terms(cuts: "CutSet", graph: "Graph", like: Tensor) -> CutTerms:
    """The cut set's coefficients as :class:`CutTerms` for ``graph`` (whose ReLU layers, in
    order, must be the cut set's layers) in ``like``'s dtype and device."""
    import numpy as np

    relus = graph.relu_nodes
    lay = cuts.layout
    if lay.n_in != graph.num_inputs or len(lay.sizes) != len(relus) or \
            any(n != r.size for n, r in zip(lay.sizes, relus)):
        raise ValueError("the cut set's layout does not match the graph's input and ReLU "
                         "layers")

    def block(kind: str, layer: int, shape) -> LayerCuts | None:
        blk = cuts.block(kind, layer).tocsc()
        cols = np.flatnonzero(np.diff(blk.indptr))
        if cols.size == 0:
            return None
        dense = blk[:, cols].toarray()
        return LayerCuts(torch.as_tensor(cols, dtype=torch.long, device=like.device),
                         torch.as_tensor(dense, dtype=like.dtype, device=like.device),
                         tuple(shape))

    gz, hy, qa = {}, {}, {}
    for k, r in enumerate(relus):
        for kind, store in (("z", gz), ("y", hy), ("a", qa)):
            t = block(kind, k, r.shape)
            if t is not None:
                store[r.name] = t
    return CutTerms(torch.as_tensor(cuts.rhs, dtype=like.dtype, device=like.device),
                    block("x", -1, graph.input_shape), gz, hy, qa,
                    {r.name: r.inputs[0] for r in relus}, cuts.version)


def seed_pending(cuts: CutTerms, mu: Tensor, input_name: str) -> dict[str, Tensor]:
    """The cut terms that enter the backward pass at tensors, by tensor name: ``μ·Hy`` at each
    ReLU output, ``μ·Gz`` at each ReLU input, ``μ·Hx`` at the network input."""
    out: dict[str, Tensor] = {}

    def add(name: str, t: Tensor) -> None:
        out[name] = t if name not in out else out[name] + t

    for name, t in cuts.hy.items():
        add(name, t.weigh(mu))
    for name, t in cuts.gz.items():
        add(cuts.pre_name[name], t.weigh(mu))
    if cuts.hx is not None:
        add(input_name, cuts.hx.weigh(mu))
    return out


def rhs_term(cuts: CutTerms, mu: Tensor) -> Tensor:
    """``−μ·rhs`` ``(B, K)``."""
    return -(mu * cuts.rhs).sum(-1)


def relu_backward_gcp(lam: Tensor, relax: ReluRelaxation, alpha: Tensor | None,
                      c: Tensor, pi_frac: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """ReLU backward rule with indicator coefficients ``c`` ``(B, K, *shape)`` (see the module
    doc). Returns (coefficients on ``z``, constant ``(B, K)``). Dense over the layer: used only
    on layers where some cut has an indicator term.

    ``pi_frac`` ``(B, K, *shape)`` in [0, 1] sets ``π = pi_frac·ν`` instead of the closed form:
    any ``π ∈ [0, ν]`` is a valid dual weight, and optimising it with the slopes reaches the
    LP optimum (the closed form is optimal for the neuron alone, not for the layers below)."""
    lam = lam.expand(c.shape[0], *lam.shape[1:]) if lam.shape[0] != c.shape[0] else lam
    act, uns = relax.active, relax.unstable
    l, u = relax.lower, relax.upper
    lower_slope = relax.lower_slope(alpha)
    pos = lam.clamp(min=0)
    nu = (-lam).clamp(min=0)
    width = torch.where(uns > 0, u - l, torch.ones_like(u))
    if pi_frac is None:
        pi = torch.minimum(torch.maximum((nu * u - c) / width, torch.zeros_like(nu)), nu)
    else:
        pi = pi_frac * nu
    coeff_uns = pos * lower_slope - pi
    const_uns = torch.where(lam >= 0, c.clamp(max=0),
                            pi * l + (c - nu * u + pi * width).clamp(max=0))
    coeff = act * lam + uns * coeff_uns
    const = act * c + uns * const_uns
    return coeff, const.flatten(2).sum(-1)


def initial_mus(cuts: CutTerms, batch: int, rows: int, init: Tensor | None, like: Tensor
                ) -> Tensor:
    """Multipliers ``(B, rows, m)`` that require grad: the warm start where it fits (fewer
    cuts than now: the new cuts start at zero; batch 1 broadcasts), else zeros."""
    m = cuts.count
    start = like.new_zeros((batch, rows, m))
    if init is not None and init.dim() == 3 and init.shape[1] == rows and \
            init.shape[0] in (1, batch) and init.shape[2] <= m:
        start[:, :, :init.shape[2]] = init.to(like).clamp(min=0)
    return start.requires_grad_(True)


def initial_pi_fracs(cuts: CutTerms, relaxations: Mapping[str, ReluRelaxation], rows: int,
                     alpha_init: Mapping | None) -> dict[str, Tensor]:
    """``{relu name + PI_SUFFIX: (B, rows, *shape)}`` for every layer with indicator terms: the
    warm start where it fits, else the chord slope ``u/(u − l)`` (the closed form at ``μ = 0``,
    i.e. CROWN's upper relaxation)."""
    out: dict[str, Tensor] = {}
    for name in cuts.qa:
        relax = relaxations.get(name)
        if relax is None or relax.index.numel() == 0:
            continue
        slope = relax.upper_slope
        shape = (slope.shape[0], rows, *slope.shape[2:])
        init = (alpha_init or {}).get(name + PI_SUFFIX, {}).get("final")
        if init is not None and tuple(init.shape[1:]) == shape[1:] and \
                init.shape[0] in (1, shape[0]):
            start = init.to(slope).expand(shape)
        else:
            start = slope.expand(shape)
        out[name + PI_SUFFIX] = start.clamp(0, 1).clone().requires_grad_(True)
    return out


def mu_of(betas: Mapping[str, Tensor] | None) -> Tensor | None:
    return None if betas is None else betas.get(CUT_KEY)
