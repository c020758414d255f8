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
    lr_decay: float = 0.98
    early_stop_patience: int = 10
    # optimise the slopes used for intermediate (pre-activation) bounds too, not only the output
    optimise_intermediate: bool = True
    # Size threshold for ``optimise_intermediate``: the estimated number of tensor elements that
    # one differentiable pass over all intermediate targets keeps alive (rows x batch x sizes of
    # the tensors the rows travel through). Above it only the final bound's slopes are
    # optimised and the intermediate bounds are CROWN's.
    intermediate_budget: int = 2**25

    def __post_init__(self) -> None:
        if self.iterations < 0:
            raise ValueError("AlphaOptions.iterations must be >= 0")
        if self.lr <= 0 or not 0 < self.lr_decay <= 1:
            raise ValueError("AlphaOptions: lr must be > 0 and lr_decay in (0, 1]")
        if self.early_stop_patience < 1:
            raise ValueError("AlphaOptions.early_stop_patience must be >= 1")


@dataclass
class BoundResult:
    """Bounds on ``C · y`` for a batch of input boxes.

    ``lower``/``upper`` are ``(B, K)`` (``upper`` may be None when not requested).
    ``intermediate`` maps the name of every nonlinear node to ``(lower, upper)`` bounds on its
    *input* (pre-activation), each ``(B, *shape)`` — the bounds branch and bound splits on and
    the MIP encoding uses. ``alphas`` holds optimised slopes for warm starts (opaque to callers;
    layout documented in :mod:`planecut.verifier.bounds.alpha_crown`).
    """

    lower: Tensor
    upper: Tensor | None
    intermediate: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)
    alphas: dict | None = None
