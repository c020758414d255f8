"""Counterexample text for a ``sat`` result, in the query's own VNN-LIB version.

VNN-COMP's checker re-runs the network on the reported input and checks the reported output
against the spec, so values are written with ``repr(float(v))`` (shortest text that reads back
to the same float64, up to 17 significant digits): a counterexample must survive the round
trip bit for bit.

* 1.0 (VNN-COMP classic)::

    sat
    ((X_0 0.5)
     (X_1 -0.25)
     (Y_0 1.0))

* 2.0: a header ``NAME TYPE [d1,d2,...]`` per declared input, then per output, each followed
  by its values, one per line, in row-major order::

    sat
    X float32 [1,2]
    0.5
    -0.25
    Y float32 [1]
    1.0
"""

from __future__ import annotations

import re

import numpy as np

from planecut.vnnlib.spec import Spec, TensorDecl

__all__ = ["format_counterexample", "parse_counterexample"]

_V1_ENTRY = re.compile(r"\(\s*([XY])_(\d+)\s+([^\s()]+)\s*\)")
_V2_HEADER = re.compile(r"(\S+)\s+(\S+)\s+\[([^\]]*)\]\Z")


def format_counterexample(spec: Spec, x_flat: np.ndarray, y_flat: np.ndarray) -> str:
    """The full result-file text (ending in a newline) for a ``sat`` answer on ``spec``."""
    x = _flat(x_flat, spec.num_inputs, "input")
    y = _flat(y_flat, spec.num_outputs, "output")
    if spec.version == "1.0":
        entries = [f"(X_{i} {v!r})" for i, v in enumerate(x)]
        entries += [f"(Y_{i} {v!r})" for i, v in enumerate(y)]
        return "sat\n(" + "\n ".join(entries) + ")\n"
    lines = ["sat"]
    for decls, values in ((spec.inputs, x), (spec.outputs, y)):
        pos = 0
        for d in decls:
            lines.append(f"{d.name} {d.dtype} [{','.join(str(s) for s in d.shape)}]")
            lines.extend(repr(v) for v in values[pos:pos + d.size])
            pos += d.size
    return "\n".join(lines) + "\n"


def parse_counterexample(text: str, spec: Spec) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a result file's counterexample back as flat float64 ``(x, y)``.

    Accepts both formats whatever ``spec.version`` is (1.0 entries are flat indices; 2.0
    blocks are matched to ``spec``'s declarations by name). ``y`` is None when the file gives
    no output values. Raises ValueError for anything that is not a complete counterexample.
    """
    body = text.strip()
    first, _, rest = body.partition("\n")
    if first.strip() not in ("sat", "violated"):
        raise ValueError(f"not a counterexample: first line is {first.strip()[:40]!r}, "
                         "expected 'sat'")
    rest = rest.strip()
    if rest.startswith("("):
        return _parse_v1(rest, spec)
    return _parse_v2(rest, spec)


def _flat(v: np.ndarray, n: int, what: str) -> list[float]:
    a = np.asarray(v, dtype=np.float64).reshape(-1)
    if a.size != n:
        raise ValueError(f"counterexample {what} has {a.size} values, the spec has {n}")
    return [float(t) for t in a]


def _parse_v1(text: str, spec: Spec) -> tuple[np.ndarray, np.ndarray | None]:
    x = np.full(spec.num_inputs, np.nan)
    y = np.full(spec.num_outputs, np.nan)
    seen_y = False
    for var, idx, val in _V1_ENTRY.findall(text):
        arr = x if var == "X" else y
        seen_y |= var == "Y"
        i = int(idx)
        if i >= arr.size:
            raise ValueError(f"counterexample names {var}_{i}, the spec has only {arr.size} "
                             f"{'inputs' if var == 'X' else 'outputs'}")
        arr[i] = _number(val, f"{var}_{i}")
    _complete(x, "X_")
    if not seen_y:
        return x, None
    _complete(y, "Y_")
    return x, y


def _parse_v2(text: str, spec: Spec) -> tuple[np.ndarray, np.ndarray | None]:
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    blocks: dict[str, list[float]] = {}
    k = 0
    while k < len(lines):
        m = _V2_HEADER.match(lines[k])
        if m is None:
            raise ValueError(f"expected a header 'NAME TYPE [shape]', found {lines[k][:60]!r}")
        name, shape_text = m.group(1), m.group(3)
        shape = [int(s) for s in shape_text.split(",") if s.strip()]
        size = int(np.prod(shape)) if shape else 1
        values = lines[k + 1:k + 1 + size]
        if len(values) != size:
            raise ValueError(f"{name} needs {size} values, found {len(values)}")
        blocks[name] = [_number(v, name) for v in values]
        k += 1 + size
    x = _gather(blocks, spec.inputs, spec.num_inputs, required=True)
    y = _gather(blocks, spec.outputs, spec.num_outputs, required=False)
    return x, y  # type: ignore[return-value]


def _gather(blocks: dict[str, list[float]], decls: tuple[TensorDecl, ...], n: int,
            required: bool) -> np.ndarray | None:
    if not any(d.name in blocks for d in decls) and not required:
        return None
    parts = []
    for d in decls:
        if d.name not in blocks:
            raise ValueError(f"counterexample has no values for {d.name}")
        if len(blocks[d.name]) != d.size:
            raise ValueError(f"{d.name} has {len(blocks[d.name])} values, declared {d.size}")
        parts.append(blocks[d.name])
    out = np.asarray([v for p in parts for v in p], dtype=np.float64)
    if out.size != n:
        raise ValueError(f"counterexample has {out.size} values, the spec has {n}")
    return out


def _number(text: str, name: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"value of {name} is not a number: {text[:40]!r}") from None


def _complete(a: np.ndarray, prefix: str) -> None:
    missing = np.flatnonzero(np.isnan(a))
    if missing.size:
        raise ValueError(f"counterexample has no value for {prefix}{int(missing[0])}")
