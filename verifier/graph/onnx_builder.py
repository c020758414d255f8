"""IR emission for the ONNX loader: variables, batch-axis bookkeeping and node builders.

Why a ``batched`` flag per tensor: IR tensors are ``(B, *per_example_shape)`` while ONNX
tensors carry either a leading batch axis of size 1 (most models) or none at all (rank-1
inputs such as ``test_nano``). The invariant kept for every variable is: *one example's IR
value, reshaped to the ONNX shape, equals the ONNX value* (the ONNX batch size being 1). When
``batched`` is true, ONNX axis 0 is that batch axis and per-example axis ``k`` is ONNX axis
``k + 1``; otherwise per-example axes are ONNX axes. An op that needs ONNX axis 0 of a batched
tensor (Concat/Transpose/Slice on it) first *unbatches* it (the size-1 axis becomes a
per-example axis), which is exact because examples never interact.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence, Union

import numpy as np
import torch

from planecut.errors import ModelError, UnsupportedError
from planecut.verifier.graph import ir
from planecut.verifier.graph.onnx_axes import norm_axis


@dataclass(frozen=True)
class Var:
    """A tensor computed from the model input: IR tensor ``name`` with ONNX shape ``shape``."""

    name: str
    shape: tuple[int, ...]  # ONNX shape, batch axis (size 1) included when ``batched``
    batched: bool

    @property
    def pe(self) -> tuple[int, ...]:
        """Per-example (IR) shape."""
        return self.shape[1:] if self.batched else self.shape

    @property
    def rank(self) -> int:
        return len(self.shape)


Value = Union[np.ndarray, Var]  # an ONNX tensor: constant (numpy) or variable


def to_tensor(arr: np.ndarray) -> torch.Tensor:
    """Weights as torch tensors, sharing memory when numpy already owns a writable buffer."""
    arr = np.asarray(arr)
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float32)
    if not arr.flags.writeable or not arr.flags.c_contiguous:
        arr = np.array(arr, order="C")
    return torch.from_numpy(arr)


class Builder:
    """Emits IR nodes for one ONNX node at a time (``begin``) and tracks fresh names."""

    def __init__(self, reserved: Sequence[str]) -> None:
        self.nodes: list[ir.Node] = []
        self._names: set[str] = set(reserved)
        self.label = ""  # "Conv (node 'conv1')" for messages
        self.onnx_node = ""
        self._stem = "t"
        self._step_start = 0

    # ----------------------------------------------------------------- naming / emission

    def begin(self, op: str, name: str, first_output: str) -> None:
        self.label = f"{op} (node '{name or first_output}')"
        self.onnx_node = name or first_output
        self._stem = first_output or name or op
        self._step_start = len(self.nodes)

    def unsupported(self, what: str) -> UnsupportedError:
        return UnsupportedError(f"{self.label}: {what}")

    def malformed(self, what: str) -> ModelError:
        return ModelError(f"{self.label}: {what}")

    def _fresh(self, base: str) -> str:
        name, k = base, 1
        while name in self._names:
            k += 1
            name = f"{base}#{k}"
        self._names.add(name)
        return name

    def emit(self, cls: type[ir.Node], inputs: Sequence[Var], shape: Sequence[int],
             batched: bool, **fields: Any) -> Var:
        """Append a ``cls`` node; ``shape`` is the ONNX output shape."""
        shape = tuple(int(s) for s in shape)
        if any(s <= 0 for s in shape):
            raise self.unsupported(f"empty tensor of shape {shape}")
        name = self._fresh(f"{self._stem}/{cls.kind}")
        pe = shape[1:] if batched else shape
        self.nodes.append(cls(name=name, inputs=tuple(v.name for v in inputs), shape=pe,
                              onnx_node=self.onnx_node, **fields))
        return Var(name, shape, batched)

    def publish(self, var: Var, onnx_name: str) -> Var:
        """Rename the node that produced ``var`` in this step after the ONNX tensor it computes,
        so IR names match ONNX names for the tensors users know."""
        step = self.nodes[self._step_start:]
        last = next((n for n in reversed(step) if n.name == var.name), None)
        if last is None or onnx_name in self._names:
            return var
        if any(var.name in n.inputs for n in step):
            return var
        self._names.discard(last.name)
        self._names.add(onnx_name)
        last.name = onnx_name
        return Var(onnx_name, var.shape, var.batched)

    # ----------------------------------------------------------------- batch-axis layout

    def unbatch(self, v: Var) -> Var:
        """Make ONNX axis 0 a per-example axis (exact: its size is 1)."""
        if not v.batched:
            return v
        return self.emit(ir.Reshape, [v], v.shape, False)

    def batch(self, v: Var) -> Var:
        """Treat ONNX axis 0 as the batch axis (needs size 1): conv/pool layouts need it."""
        if v.batched:
            return v
        if v.rank == 0 or v.shape[0] != 1:
            raise self.unsupported(f"needs a leading batch axis of size 1, got shape {v.shape}")
        return self.emit(ir.Reshape, [v], v.shape, True)

    def pe_axis(self, v: Var, axis: int) -> tuple[Var, int]:
        """Per-example axis for ONNX ``axis`` (unbatching when it is the batch axis)."""
        a = norm_axis(axis, v.rank)
        if v.batched:
            if a == 0:
                return self.unbatch(v), 0
            return v, a - 1
        return v, a

    def same_layout(self, vs: Sequence[Var], uses_axis0: bool = False) -> list[Var]:
        """Give variables of equal rank the same ``batched`` flag: batched when possible,
        unbatched when the op works on ONNX axis 0 (``uses_axis0``)."""
        if all(v.batched for v in vs) and not uses_axis0:
            return list(vs)
        if not uses_axis0 and all(v.batched or (v.rank >= 2 and v.shape[0] == 1) for v in vs):
            return [self.batch(v) for v in vs]
        return [self.unbatch(v) for v in vs]

    def spatial(self, v: Var, nd: int) -> Var:
        """``(1, C, *spatial)`` with ``nd`` spatial axes, batched: the conv/pool layout."""
        if v.rank != nd + 2:
            raise self.unsupported(f"expects a rank-{nd + 2} input, got shape {v.shape}")
        return self.batch(v)

    # ----------------------------------------------------------------- shape ops

    def reshape(self, v: Var, target: Sequence[int]) -> Var:
        target = tuple(int(t) for t in target)
        if int(np.prod(target, dtype=np.int64)) != int(np.prod(v.shape, dtype=np.int64)):
            raise self.malformed(f"cannot reshape {v.shape} to {target}")
        batched = len(target) >= 2 and target[0] == 1
        if target == v.shape and batched == v.batched:
            return v
        return self.emit(ir.Reshape, [v], target, batched)

    def transpose(self, v: Var, perm: Sequence[int]) -> Var:
        perm = [norm_axis(p, v.rank) for p in perm]
        if sorted(perm) != list(range(v.rank)):
            raise self.malformed(f"invalid permutation {perm}")
        if perm == list(range(v.rank)):
            return v
        shape = tuple(v.shape[p] for p in perm)
        if v.batched and perm[0] == 0:
            return self.emit(ir.Transpose, [v], shape, True, perm=tuple(p - 1 for p in perm[1:]))
        v = self.unbatch(v)
        return self.emit(ir.Transpose, [v], shape, False, perm=tuple(perm))

    def pe_transpose(self, v: Var, pe_perm: Sequence[int]) -> Var:
        """Transpose by a per-example permutation (the batch axis, if any, stays first)."""
        if v.batched:
            return self.transpose(v, [0] + [p + 1 for p in pe_perm])
        return self.transpose(v, pe_perm)

    def broadcast_to(self, v: Var, target: Sequence[int]) -> Var:
        """Explicit ONNX broadcasting of a variable (the IR has no implicit broadcast)."""
        target = tuple(int(t) for t in target)
        if v.shape == target:
            return v
        if v.rank < len(target):
            v = self.emit(ir.Reshape, [v], (1,) * (len(target) - v.rank) + v.shape, v.batched)
        for a, (have, want) in enumerate(zip(v.shape, target)):
            if have == want:
                continue
            if have != 1:
                raise self.malformed(f"cannot broadcast {v.shape} to {target}")
            v = self.take(v, a, np.zeros(want, np.int64))
        return v

    def take(self, v: Var, axis: int, indices: Sequence[int] | np.ndarray) -> Var:
        """Indices ``indices`` (1-D, repeats allowed) of ONNX ``axis``: a Gather."""
        a = norm_axis(axis, v.rank)
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if idx.size == v.shape[a] and np.array_equal(idx, np.arange(idx.size)):
            return v
        v, pa = self.pe_axis(v, a)
        shape = v.shape[:a] + (idx.size,) + v.shape[a + 1:]
        return self.emit(ir.Gather, [v], shape, v.batched, axis=pa,
                         indices=torch.from_numpy(idx.copy()), keepdim=True)

    def pad(self, v: Var, begins: Sequence[int], ends: Sequence[int], value: float = 0.0
            ) -> Var:
        """Constant padding with per-ONNX-axis ``begins``/``ends`` (negative = crop)."""
        begins, ends = [int(b) for b in begins], [int(e) for e in ends]
        if not any(begins) and not any(ends):
            return v
        if v.batched and (begins[0] or ends[0]):
            v = self.unbatch(v)
        lo = 1 if v.batched else 0
        pads: list[int] = []
        for a in range(v.rank - 1, lo - 1, -1):  # torch order: last axis first
            pads += [begins[a], ends[a]]
        while pads and pads[-1] == 0 and pads[-2] == 0:
            pads = pads[:-2]
        shape = tuple(d + b + e for d, b, e in zip(v.shape, begins, ends))
        return self.emit(ir.Pad, [v], shape, v.batched, pads=tuple(pads), value=float(value))

    def slice_axis(self, v: Var, axis: int, sel: range) -> Var:
        """Keep indices ``sel`` of ONNX ``axis`` (Slice for positive steps, else Gather)."""
        a = norm_axis(axis, v.rank)
        if len(sel) == v.shape[a] and sel.step == 1:
            return v
        if len(sel) == 0:
            raise self.unsupported(f"empty slice of axis {a} of shape {v.shape}")
        if sel.step < 0:
            return self.take(v, a, list(sel))
        v, pa = self.pe_axis(v, a)
        shape = v.shape[:a] + (len(sel),) + v.shape[a + 1:]
        return self.emit(ir.Slice, [v], shape, v.batched, axis=pa, start=sel.start,
                         stop=sel[-1] + 1, step=sel.step)

    # ----------------------------------------------------------------- affine ops

    def add(self, xs: Sequence[Var], signs: Sequence[float]) -> Var:
        """``sum_i signs[i] * xs[i]`` of variables, with ONNX broadcasting."""
        shape = np.broadcast_shapes(*(x.shape for x in xs))
        xs = self.same_layout([self.broadcast_to(x, shape) for x in xs])
        if len(xs) == 1 and signs[0] > 0:
            return xs[0]
        return self.emit(ir.Add, xs, xs[0].shape, xs[0].batched,
                         signs=tuple(float(s) for s in signs))

    def relu(self, v: Var) -> Var:
        return self.emit(ir.Relu, [v], v.shape, v.batched)

    def align_const(self, v: Var, c: np.ndarray) -> np.ndarray:
        """A constant broadcastable to ``v.shape`` (not enlarging it) as a per-example one."""
        c = np.asarray(c)
        if c.ndim > v.rank:
            if any(d != 1 for d in c.shape[: c.ndim - v.rank]):
                raise self.malformed(f"constant of shape {c.shape} does not fit {v.shape}")
            c = c.reshape(c.shape[c.ndim - v.rank:])
        c = c.reshape((1,) * (v.rank - c.ndim) + c.shape)
        for have, want in zip(c.shape, v.shape):
            if have not in (1, want):
                raise self.malformed(f"constant of shape {c.shape} does not fit {v.shape}")
        return c[0] if v.batched else c

    def affine(self, v: Var, scale: np.ndarray | None = None, shift: np.ndarray | None = None
               ) -> Var:
        """``v * scale + shift`` with ONNX-broadcastable constants (the variable may grow)."""
        target = v.shape
        for c in (scale, shift):
            if c is not None:
                target = np.broadcast_shapes(target, np.shape(c))
        v = self.broadcast_to(v, target)
        s = None if scale is None else self.align_const(v, scale)
        t = None if shift is None else self.align_const(v, shift)
        if s is not None and np.all(s == 1):
            s = None
        if t is not None and not np.any(t):
            t = None
        if s is None and t is None:
            return v
        return self.emit(ir.ElementwiseAffine, [v], v.shape, v.batched,
                         scale=None if s is None else to_tensor(s),
                         shift=None if t is None else to_tensor(t))

    def axis_linear(self, v: Var, axis: int, weight: np.ndarray,
                    bias: np.ndarray | None = None) -> Var:
        """Apply ``weight`` (out, in) along ONNX ``axis`` (a Dense, transposed around if the
        axis is not the last one)."""
        v, pa = self.pe_axis(v, axis)
        a = pa + 1 if v.batched else pa  # the ONNX axis, in v's (possibly new) layout
        weight = np.asarray(weight)
        if weight.ndim != 2 or v.pe[pa] != weight.shape[1]:
            raise self.malformed(f"input of shape {v.shape} does not fit the weight: axis {a} "
                                 f"should have size {weight.shape[-1]}")
        r = len(v.pe)
        if pa != r - 1:
            perm = [i for i in range(r) if i != pa] + [pa]
            v = self.pe_transpose(v, perm)
        shape = v.shape[:-1] + (weight.shape[0],)
        out = self.emit(ir.Dense, [v], shape, v.batched, weight=to_tensor(weight),
                        bias_=None if bias is None else to_tensor(np.reshape(bias, -1)))
        if pa != r - 1:
            inv = list(np.argsort(perm))
            out = self.pe_transpose(out, inv)
        assert out.shape[a] == weight.shape[0]
        return out


def need_var(b: Builder, x: Value | None, what: str = "input") -> Var:
    """``x`` must depend on the model input (e.g. the data operand of a Conv)."""
    if not isinstance(x, Var):
        raise b.unsupported(f"{what} must be computed from the model input")
    return x


def need_const(b: Builder, x: Value | None, what: str) -> np.ndarray:
    """``x`` must be a constant (weights, shapes, indices)."""
    if isinstance(x, Var):
        raise b.unsupported(f"{what} must be constant (it depends on the model input)")
    if x is None:
        raise b.malformed(f"missing {what}")
    return x


def as_float(b: Builder, c: np.ndarray, what: str) -> np.ndarray:
    """A numeric constant as a float array (integer/bool constants are promoted)."""
    if c.dtype.kind not in "fiub":
        raise b.malformed(f"{what} has non-numeric type {c.dtype}")
    return c if c.dtype.kind == "f" else c.astype(np.float32)
