"""Falsification: PGD on the spec margin, confirmed on the original model with onnxruntime."""

from planecut.verifier.attack.check import Counterexample, OnnxChecker, snap_into_box
from planecut.verifier.attack.pgd import AttackOutcome, pgd_attack

__all__ = ["AttackOutcome", "Counterexample", "OnnxChecker", "pgd_attack", "snap_into_box"]
