"""Data that crosses the bounds module's boundary."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

Tensor = torch.Tensor


@dataclass
class AlphaOptions:
    """alpha-CROWN optimisation settings (see REFERENCE_SETTINGS: lr 0.1, decay 0.98, early stop)."""

    iterations: int = 20
    lr: float = 0.1
    lr_beta: float = 0.05  # beta-CROWN split multipliers (used only when splits are given)
    # sigmoid/tanh tangent points (θ in [0, 1] over three interval widths): 0.1 overshoots;
    # on ERAN's 6x200 sigmoid net 0.01 gave the best 50-iteration bounds of 0.005/0.01/0.02
    # on 7 of 8 properties (0.02 lost up to 1 on the margin, 0.1 ended 10 lower)
    lr_line: float = 0.01
    lr_decay: float = 0.98
    early_stop_patience: int = 10
    # optimise the slopes used for intermediate (pre-activation) bounds too, not only the output
    optimise_intermediate: bool = True
    # Size threshold for ``optimise_intermediate``: the estimated number of tensor elements that
    # one differentiable pass over all intermediate targets keeps alive (rows x batch x sizes of
    # the tensors the rows travel through). Above it only the final bound's slopes are
    # optimised and the intermediate bounds are CROWN's.
    intermediate_budget: int = 2**25
    # How intermediate slopes are optimised: "joint" (with the final bound, for its sake: the
    # reference's way) or "layerwise" (each target for its own width, in topological order,
    # before the final bound: far tighter on sigmoid/tanh nets, one optimisation per target)
    intermediate_objective: str = "joint"
    # GCP-CROWN: optimise the upper-side dual weights of ReLUs with cut indicator terms too
    # (reaches the LP with the same cuts at convergence) instead of their closed form (better
    # within the tens of iterations branch and bound affords; measured on small nets)
    optimise_cut_relaxation: bool = False

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise ValueError("AlphaOptions.iterations must be >= 0")
        if min(self.lr, self.lr_beta, self.lr_line) <= 0 or not 0 < self.lr_decay <= 1:
            raise ValueError("AlphaOptions: lr, lr_beta and lr_line must be > 0, lr_decay in (0, 1]")
        if self.intermediate_objective not in ("joint", "layerwise"):
            raise ValueError("AlphaOptions.intermediate_objective must be 'joint' or 'layerwise'")
        if self.early_stop_patience < 1:
            raise ValueError("AlphaOptions.early_stop_patience must be >= 1")


@dataclass
class BoundResult:
    """Bounds on ``C · y`` for a batch of input boxes.

    ``lower``/``upper`` are ``(B, K)`` (``upper`` may be None when not requested).
    ``intermediate`` maps the name of every nonlinear node to ``(lower, upper)`` bounds on its
    *input* (pre-activation), each ``(B, *shape)`` — the bounds branch and bound splits on and
    the MIP encoding uses. ``alphas`` holds optimised slopes for warm starts (opaque to callers;
    layout documented in :mod:`planecut.verifier.bounds.alpha_crown`). ``betas`` holds the
    split multipliers of beta-CROWN, ``{relu name: (B, K', *shape)}`` (accepted back as
    ``beta_init``; see :mod:`planecut.verifier.bounds.beta_crown`). ``coeffs`` (only with
    ``return_coeffs``) holds the final bound's backward coefficients.
    """

    lower: Tensor
    upper: Tensor | None
    intermediate: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)
    alphas: dict | None = None
    betas: dict[str, Tensor] | None = None
    coeffs: "BoundCoefficients | None" = None


@dataclass
class BoundCoefficients:
    """Backward coefficients of the returned lower bound (``K'`` rows, as in ``lower``).

    ``relu_output[name]`` / ``relu_input[name]``: ``(B, K', n)`` flat coefficients on each
    ReLU's output ``y`` (before relaxation) and input ``z`` (after relaxation and split terms)
    — what BaBSR-style branching scores read. ``input``: ``(B, K', n_in)`` coefficients on the
    network input; the bound is minimised over the box at ``x_U`` where it is negative and
    ``x_L`` elsewhere (a natural counterexample candidate). Computed by one extra backward pass
    with the best slopes and multipliers; ``lower`` of that pass is folded into the result.
    """

    relu_output: dict[str, Tensor] = field(default_factory=dict)
    relu_input: dict[str, Tensor] = field(default_factory=dict)
    input: Tensor | None = None
