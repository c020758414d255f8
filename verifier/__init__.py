"""The verifier (installed as ``planecut.verifier``): graph, bounds, attack, API and CLI.

``verify`` and ``compute_bounds`` are imported on first use so that importing this package (and
``planecut --help``) does not pay for torch.
"""

from __future__ import annotations

from typing import Any

from planecut.verifier.config import VerifierConfig, load_config
from planecut.verifier.result import Result

__all__ = ["Result", "VerifierConfig", "compute_bounds", "load_config", "verify"]


def __getattr__(name: str) -> Any:
    if name == "verify":
        from planecut.verifier.api import verify

        return verify
    if name == "compute_bounds":
        from planecut.verifier.bounds import compute_bounds

        return compute_bounds
    raise AttributeError(name)
