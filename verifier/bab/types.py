"""Data that crosses the branch-and-bound module's boundary."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from planecut.verifier.attack.check import Counterexample


@dataclass
class BabProgress:
    """A snapshot for live progress lines (stderr) and statistics."""

    elapsed: float
    domains_left: int
    domains_visited: int
    worst_margin: float  # lowest lower bound of (C·y - d) over unproven domains; > 0 proves
    domains_per_second: float


@dataclass
class BabOutcome:
    """How a search ended.

    ``verdict``: ``unsat`` (every domain proven), ``sat`` (``counterexample`` confirmed with
    onnxruntime), ``timeout`` (deadline passed), ``unknown`` (search gave up, e.g. a domain
    that cannot be split further and could not be decided, or memory ran out).
    """

    verdict: str
    counterexample: "Counterexample | None" = None
    domains_visited: int = 0
    seconds: float = 0.0
    bound_seconds: float = 0.0
    worst_margin: float = float("-inf")
    message: str = ""
    # per spec row, the lowest lower bound of ``C·y`` over the domains still open when the
    # search ended (empty when none was open): the global bound an unproven run reached
    row_lower: list[float] | None = None
    # spec rows the search stopped bounding (their disjunct proven at the root, or later in
    # every open domain)
    rows_dropped: int = 0
    # times the search started over from a root re-bounded with MIP-refined layers
    reroots: int = 0

    @property
    def domains_per_second(self) -> float:
        return self.domains_visited / self.seconds if self.seconds > 0 else 0.0


# Confirms candidate inputs (N, n_in) of the given spec regions (N,) with onnxruntime; returns a
# counterexample for the first that truly violates the property, else None.
Confirm = Callable[["torch.Tensor", "torch.Tensor"], "Counterexample | None"]
Progress = Callable[[BabProgress], None]
