"""The outcome of one verification, and how it is written as a VNN-COMP result file."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover - keeps `planecut --help` free of torch imports
    from planecut.verifier.attack.check import Counterexample
    from planecut.vnnlib.spec import Spec

VERDICTS = ("sat", "unsat", "timeout", "unknown", "error")


@dataclass
class Result:
    """``verdict`` is one of :data:`VERDICTS`.

    ``sat`` always carries a ``counterexample`` confirmed with onnxruntime; ``error`` carries a
    one-line ``message``. ``timings`` holds seconds per phase (load, attack, bounds, ...);
    ``stats`` holds figures for reports (e.g. proven disjuncts, best margin).
    """

    verdict: str
    seconds: float = 0.0
    message: str = ""
    counterexample: "Counterexample | None" = None
    spec: "Spec | None" = field(default=None, repr=False)
    timings: dict[str, float] = field(default_factory=dict)
    stats: dict[str, float | int | str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"unknown verdict {self.verdict!r}")
        if self.verdict == "sat" and self.counterexample is None:
            raise ValueError("a sat result needs a confirmed counterexample")

    def result_file_text(self) -> str:
        """VNN-COMP result file: the verdict, then for ``sat`` the counterexample in the format
        of the query's VNN-LIB version."""
        if self.verdict == "sat":
            from planecut.vnnlib.counterexample import format_counterexample

            assert self.counterexample is not None and self.spec is not None
            return format_counterexample(self.spec, self.counterexample.x,
                                         self.counterexample.y)
        return self.verdict + "\n"
