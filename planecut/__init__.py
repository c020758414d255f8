"""planecut: a neural-network verifier (bound propagation, branch and bound, MIP cuts).

The repository keeps the user's top-level folders (``vnnlib/``, ``verifier/``, ...), but they are
installed under this namespace (``planecut.vnnlib``, ``planecut.verifier``, ...) so that they
never shadow the official ``vnnlib`` package on PyPI or claim generic names like ``verifier``.
"""

__version__ = "0.1.0"
