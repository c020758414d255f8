"""VNN-LIB parsing (installed as ``planecut.vnnlib``): text in, :class:`Spec` out.

Knows nothing of torch or ONNX. Version 1.0 files are read by our own fast parser; version 2.0
files by the official ``vnnlib`` package from PyPI.
"""

from planecut.vnnlib.spec import Disjunct, InputRegion, Spec, TensorDecl

__all__ = ["Disjunct", "InputRegion", "Spec", "TensorDecl", "parse_spec"]


def parse_spec(path: str) -> Spec:
    """Parse a VNN-LIB file (1.0 or 2.0, detected from the text; ``.gz`` accepted)."""
    from planecut.vnnlib.parse import parse_spec as _parse

    return _parse(path)
