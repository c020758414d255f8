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


@dataclass
class BoundResult:
    """Bounds on ``C · y`` for a batch of input boxes.

    ``lower``/``upper`` are ``(B, K)`` (``upper`` may be None when not requested).
    ``intermediate`` maps the name of every nonlinear node to ``(lower, upper)`` bounds on its
    *input* (pre-activation), each ``(B, *shape)`` — the bounds branch and bound splits on and
    the MIP encoding uses. ``alphas`` holds optimised slopes for warm starts (opaque to callers).
    """

    lower: Tensor
    upper: Tensor | None
    intermediate: dict[str, tuple[Tensor, Tensor]] = field(default_factory=dict)
    alphas: dict | None = None
