"""Soundness of the whole verifier against an exact MILP on small random ReLU networks.

Ground truth: a big-M MILP (HiGHS, tight tolerances) of a small fully connected ReLU network
over the input box. For each disjunct ``C·y <= d`` it minimises ``t`` subject to
``t >= C_k·y - d_k``; the property is violated iff some disjunct's optimum is ``<= 0``. Big-M
constants are interval bounds (IBP) tightened neuron by neuron with the LP of the triangle
relaxation, widened slightly so that rounding and LP tolerances never make them invalid. Every
optimum is cross-checked: the network evaluated at the MILP's minimiser must reproduce it.

Instances are random ONNX networks (Gemm + Relu, opset 13, fixed seeds) with VNN-LIB 1.0
properties of three kinds: robustness (``(or (and (>= Y_j Y_label)) ...)`` with the box radius
set near the critical radius), a single threshold (``(<= Y_a c)`` / ``(>= Y_a c)``), and several
disjuncts of threshold rows. Thresholds and radii are set from the MILP optimum plus or minus
a gap of at least ``GAP_MIN`` relative, about half of the instances each way, so the ground
truth is robust to rounding (float32 ONNX vs float64 MILP).

``verify`` must never contradict the MILP (a contradiction is a release-blocking bug; the
failure message names the seed), ``sat`` must carry a counterexample that lies in the box and
violates the property on onnxruntime, and nothing may end in ``error``. CI runs 40 properties
with the default configuration and 20 with the activation-split search forced (a short
per-property timeout keeps CI fast); ``-m slow`` runs 300 properties per mode with the full
``TIMEOUT`` and asserts that at least 95% of them are decided.

Helpers live in this file: tests run with ``--import-mode=importlib``, so a sibling helper
module cannot be imported by name.
"""

from __future__ import annotations

import faulthandler
import functools
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from planecut.verifier.api import verify
from planecut.verifier.config import BabConfig, CutsConfig, VerifierConfig

GAP_MIN = 2e-3  # smallest |optimum| / scale of a generated property
GAP_MAX = 0.3
TIMEOUT = 20.0  # per property, as the slow tests run it
CI_TIMEOUT = 5.0  # per property in the CI slices
CI_SEEDS = range(40)
SLOW_SEEDS = range(1000, 1300)


# --------------------------------------------------------------------------- networks


@dataclass
class Net:
    """A fully connected ReLU network: ``ws[i]`` ``(out, in)`` float32 values held as float64
    (exact), ReLU after every layer but the last."""

    ws: list[np.ndarray]
    bs: list[np.ndarray]

    @property
    def n_in(self) -> int:
        return self.ws[0].shape[1]

    @property
    def n_out(self) -> int:
        return self.ws[-1].shape[0]

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Outputs (N, n_out) for inputs (N, n_in), float64."""
        h = np.atleast_2d(x)
        for i, (w, b) in enumerate(zip(self.ws, self.bs)):
            h = h @ w.T + b
            if i < len(self.ws) - 1:
                h = np.maximum(h, 0.0)
        return h


def random_net(rng: np.random.Generator) -> Net:
    n_in = int(rng.integers(2, 7))
    hidden = [int(rng.integers(6, 17)) for _ in range(int(rng.integers(2, 4)))]
    n_out = int(rng.integers(2, 5))
    dims = [n_in, *hidden, n_out]
    ws, bs = [], []
    for a, b in zip(dims[:-1], dims[1:]):
        w = rng.normal(size=(b, a)) * 1.3 / np.sqrt(a)
        ws.append(w.astype(np.float32).astype(np.float64))
        bs.append((rng.normal(size=b) * 0.3).astype(np.float32).astype(np.float64))
    return Net(ws, bs)


def write_onnx(net: Net, path: Path) -> None:
    nodes, inits = [], []
    cur = "X"
    for i, (w, b) in enumerate(zip(net.ws, net.bs)):
        inits.append(numpy_helper.from_array(w.astype(np.float32), f"W{i}"))
        inits.append(numpy_helper.from_array(b.astype(np.float32), f"B{i}"))
        out = "Y" if i == len(net.ws) - 1 else f"g{i}"
        nodes.append(helper.make_node("Gemm", [cur, f"W{i}", f"B{i}"], [out], transB=1))
        cur = out
        if i < len(net.ws) - 1:
            nodes.append(helper.make_node("Relu", [cur], [f"r{i}"]))
            cur = f"r{i}"
    graph = helper.make_graph(
        nodes, "random_fc",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, net.n_in])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, net.n_out])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.write_bytes(model.SerializeToString())


def ort_outputs(path: Path, x: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = np.atleast_2d(x)
    return np.stack([sess.run(None, {"X": xi.astype(np.float32).reshape(1, -1)})[0].reshape(-1)
                     for xi in x]).astype(np.float64)


# --------------------------------------------------------------------------- MILP truth


def ibp(net: Net, xl: np.ndarray, xu: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pre-activation bounds of every hidden layer by interval arithmetic, widened by a
    relative 1e-7 (+1e-9) so that float64 rounding cannot make them invalid."""
    lo, hi = xl.astype(np.float64), xu.astype(np.float64)
    out = []
    for w, b in zip(net.ws[:-1], net.bs[:-1]):
        c, r = (lo + hi) / 2, (hi - lo) / 2
        zc, zr = w @ c + b, np.abs(w) @ r
        pad = 1e-7 * (np.abs(zc) + zr) + 1e-9
        zl, zu = zc - zr - pad, zc + zr + pad
        out.append((zl, zu))
        lo, hi = np.maximum(zl, 0.0), np.maximum(zu, 0.0)
    return out


@dataclass
class _Encoding:
    """Columns ``x | h (post-activation) per layer | a (binary) per layer | t`` and rows of
    the big-M encoding of the first ``len(bounds)`` hidden layers."""

    nv: int
    col_lo: np.ndarray
    col_hi: np.ndarray
    integer: np.ndarray  # bool per column
    rows: list[tuple[dict[int, float], float, float]]  # (coefficients, lower, upper)
    last: list[int]  # columns of the last encoded layer's outputs
    t_col: int


def _encode(net: Net, xl: np.ndarray, xu: np.ndarray,
            bounds: list[tuple[np.ndarray, np.ndarray]]) -> _Encoding:
    """Big-M encoding of the hidden layers that ``bounds`` covers. With the binaries relaxed to
    [0, 1] it is the triangle relaxation (the LP used to tighten bounds)."""
    n0 = net.n_in
    sizes = [len(lo) for lo, _ in bounds]
    h_off, a_off, pos = [], [], n0
    for n in sizes:
        h_off.append(pos)
        pos += n
    for n in sizes:
        a_off.append(pos)
        pos += n
    t_col = pos
    nv = pos + 1
    col_lo, col_hi = np.full(nv, -np.inf), np.full(nv, np.inf)
    integer = np.zeros(nv, dtype=bool)
    col_lo[:n0], col_hi[:n0] = xl, xu
    rows: list[tuple[dict[int, float], float, float]] = []
    prev = list(range(n0))
    for i, n in enumerate(sizes):
        w, b = net.ws[i], net.bs[i]
        zl, zu = bounds[i]
        for j in range(n):
            h, a = h_off[i] + j, a_off[i] + j
            integer[a] = True
            neg = {p: -float(w[j, k]) for k, p in enumerate(prev)}  # -(z - b)
            if zu[j] <= 0:  # stably inactive: h = 0
                col_lo[h] = col_hi[h] = 0.0
                col_lo[a] = col_hi[a] = 0.0
            elif zl[j] >= 0:  # stably active: h = z
                col_lo[h], col_hi[h] = 0.0, np.inf
                col_lo[a] = col_hi[a] = 1.0
                rows.append(({**neg, h: 1.0}, float(b[j]), float(b[j])))
            else:
                col_lo[h], col_hi[h] = 0.0, float(zu[j])
                col_lo[a], col_hi[a] = 0.0, 1.0
                rows.append(({**neg, h: 1.0}, float(b[j]), np.inf))  # h >= z
                # h <= z - l (1 - a)   <=>   h - (z - b) - l a <= b - l
                rows.append(({**neg, h: 1.0, a: -float(zl[j])}, -np.inf, float(b[j] - zl[j])))
                rows.append(({h: 1.0, a: -float(zu[j])}, -np.inf, 0.0))  # h <= u a
        prev = [h_off[i] + j for j in range(n)]
    return _Encoding(nv, col_lo, col_hi, integer, rows, prev, t_col)


def _highs(enc: _Encoding, cost: np.ndarray, integer: bool, extra_rows=()):
    import highspy
    from scipy.sparse import coo_matrix

    rows = list(enc.rows) + list(extra_rows)
    ri, ci, vals = [], [], []
    for i, (r, _, _) in enumerate(rows):
        for p, v in r.items():
            ri.append(i)
            ci.append(p)
            vals.append(v)
    A = coo_matrix((vals, (ri, ci)), shape=(len(rows), enc.nv)).tocsc()
    inf = highspy.kHighsInf
    fin = lambda a, s: np.where(np.isfinite(a), a, s * inf)  # noqa: E731
    lp = highspy.HighsLp()
    lp.num_col_, lp.num_row_ = enc.nv, len(rows)
    lp.col_cost_ = np.asarray(cost, dtype=np.float64)
    lp.col_lower_ = fin(enc.col_lo, -1)
    lp.col_upper_ = fin(enc.col_hi, 1)
    lp.row_lower_ = fin(np.array([r[1] for r in rows], dtype=np.float64), -1)
    lp.row_upper_ = fin(np.array([r[2] for r in rows], dtype=np.float64), 1)
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = A.indptr.astype(np.int32)
    lp.a_matrix_.index_ = A.indices.astype(np.int32)
    lp.a_matrix_.value_ = A.data.astype(np.float64)
    lp.a_matrix_.num_col_, lp.a_matrix_.num_row_ = enc.nv, len(rows)
    if integer:
        lp.integrality_ = [highspy.HighsVarType.kInteger if v else
                           highspy.HighsVarType.kContinuous for v in enc.integer]
    h = highspy.Highs()
    h.setOptionValue("output_flag", False)
    h.setOptionValue("threads", 1)
    h.passModel(lp)
    return h


def lp_bounds(net: Net, xl: np.ndarray, xu: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Pre-activation bounds layer by layer: each neuron minimised and maximised over the
    triangle relaxation of the layers before it (built on the bounds found so far),
    intersected with IBP and widened by 1e-6 relative so that LP tolerances cannot make
    them invalid. Valid big-M constants, much tighter than IBP."""
    import highspy

    boxes = ibp(net, xl, xu)
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for i, (w, b) in enumerate(zip(net.ws[:-1], net.bs[:-1])):
        if i == 0:  # the box itself: interval arithmetic is exact on one affine layer
            out.append(boxes[0])
            continue
        enc = _encode(net, xl, xu, out)
        h = _highs(enc, np.zeros(enc.nv), integer=False)
        lo, hi = boxes[i][0].copy(), boxes[i][1].copy()
        for j in range(w.shape[0]):
            for sense in (1.0, -1.0):
                cost = np.zeros(enc.nv)
                cost[enc.last] = sense * w[j]
                h.changeColsCost(enc.nv, np.arange(enc.nv, dtype=np.int32), cost)
                h.run()
                if h.getModelStatus() != highspy.HighsModelStatus.kOptimal:
                    continue  # keep the IBP bound
                v = sense * h.getInfo().objective_function_value + b[j]
                pad = 1e-6 * (1 + abs(v))
                if sense > 0:
                    lo[j] = max(lo[j], v - pad)
                else:
                    hi[j] = min(hi[j], v + pad)
        out.append((lo, hi))
    return out


@dataclass
class MilpResult:
    value: float  # min over the box of max_k (C_k·y - d_k)
    x: np.ndarray  # a minimiser
    gap: float  # HiGHS's final |primal - dual bound|


def milp_min(net: Net, xl: np.ndarray, xu: np.ndarray, C: np.ndarray, d: np.ndarray,
             bounds: list[tuple[np.ndarray, np.ndarray]] | None = None) -> MilpResult:
    """``min_x max_k (C_k·y(x) - d_k)`` over the box, exactly (big-M MILP, HiGHS)."""
    import highspy

    enc = _encode(net, xl, xu, lp_bounds(net, xl, xu) if bounds is None else bounds)
    # spec rows: C_k (W h + b) - d_k <= t   <=>   (C_k W)·h - t <= d_k - C_k b
    cw, cb = C @ net.ws[-1], C @ net.bs[-1]
    extra = []
    for k in range(C.shape[0]):
        r = {p: float(cw[k, m]) for m, p in enumerate(enc.last) if cw[k, m] != 0}
        r[enc.t_col] = -1.0
        extra.append((r, -np.inf, float(d[k] - cb[k])))
    cost = np.zeros(enc.nv)
    cost[enc.t_col] = 1.0
    h = _highs(enc, cost, integer=True, extra_rows=extra)
    h.setOptionValue("mip_rel_gap", 1e-9)
    h.setOptionValue("mip_abs_gap", 1e-9)
    h.setOptionValue("mip_feasibility_tolerance", 1e-9)
    h.setOptionValue("primal_feasibility_tolerance", 1e-9)
    h.setOptionValue("time_limit", 120.0)
    h.run()
    status = h.getModelStatus()
    assert status == highspy.HighsModelStatus.kOptimal, h.modelStatusToString(status)
    info = h.getInfo()
    v = np.asarray(h.getSolution().col_value)
    gap = abs(info.objective_function_value - info.mip_dual_bound)
    return MilpResult(float(info.objective_function_value), np.clip(v[:net.n_in], xl, xu), gap)


def margin_of(net: Net, x: np.ndarray, C: np.ndarray, d: np.ndarray) -> np.ndarray:
    """``max_k (C_k·y - d_k)`` at each input (N,)."""
    y = net.forward(x)
    return (y @ C.T - d).max(axis=1)


def exact_min(net: Net, xl, xu, C, d) -> float:
    """The MILP optimum, cross-checked at its own minimiser: the true minimum lies between the
    MILP's dual bound and the margin at the minimiser; both must agree to 1e-7 (relative)."""
    res = milp_min(net, xl, xu, C, d)
    at_x = float(margin_of(net, res.x, C, d)[0])
    scale = 1.0 + abs(res.value)
    assert at_x >= res.value - 1e-6 * scale, (at_x, res.value)
    assert at_x - res.value <= 1e-6 * scale and res.gap <= 1e-6 * scale, (at_x, res.value,
                                                                           res.gap)
    return res.value


# --------------------------------------------------------------------------- properties


@dataclass
class Instance:
    seed: int
    kind: str  # robust | threshold | multi
    net: Net
    xl: np.ndarray
    xu: np.ndarray
    disjuncts: list[tuple[np.ndarray, np.ndarray]]  # (C, d): violated iff C y <= d
    optima: list[float]  # MILP optimum of each disjunct (<= 0: violated)
    truth: str  # sat | unsat
    scale: float
    model_path: Path | None = None
    spec_path: Path | None = None
    notes: dict = field(default_factory=dict)

    @property
    def margin(self) -> float:
        return min(self.optima)

    def describe(self) -> str:
        return (f"seed={self.seed} kind={self.kind} truth={self.truth} margin={self.margin:.4g}"
                f" scale={self.scale:.3g} net={[self.net.n_in] + [w.shape[0] for w in self.net.ws]}"
                f" model={self.model_path} spec={self.spec_path}")


def _f32(a: np.ndarray) -> np.ndarray:
    return np.asarray(a, dtype=np.float32).astype(np.float64)


def _box(centre: np.ndarray, radius: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    xl, xu = _f32(centre - radius), _f32(centre + radius)
    xu = np.where(xu <= xl, _f32(np.nextafter(xl.astype(np.float32), np.float32(np.inf))), xu)
    return xl, xu


def _gap(rng: np.random.Generator, scale: float) -> float:
    return scale * float(np.exp(rng.uniform(np.log(GAP_MIN), np.log(GAP_MAX))))


def _robust(seed: int, rng: np.random.Generator, net: Net) -> Instance:
    centre = rng.uniform(-1, 1, net.n_in)
    y0 = net.forward(centre)[0]
    label = int(np.argmax(y0))
    others = [j for j in range(net.n_out) if j != label]
    disjuncts = []
    for j in others:
        C = np.zeros((1, net.n_out))
        C[0, label], C[0, j] = 1.0, -1.0  # Y_label - Y_j <= 0  <=>  Y_j >= Y_label
        disjuncts.append((C, np.zeros(1)))
    scale = 1.0 + float(np.abs(y0).max())
    # critical radius estimated by sampling (cheap; an upper bound on the true one), then the
    # MILP decides the radius actually used
    u = rng.uniform(-1, 1, size=(4000, net.n_in))
    u[:500] = np.sign(u[:500])  # corners

    def sampled(eps: float) -> float:
        return min(float(margin_of(net, centre + eps * u, C, d).min()) for C, d in disjuncts)

    lo, hi = 0.0, 0.5
    if sampled(hi) > 0:
        crit = hi
    else:
        for _ in range(30):
            mid = (lo + hi) / 2
            lo, hi = (mid, hi) if sampled(mid) > 0 else (lo, mid)
        crit = (lo + hi) / 2
    want_sat = rng.random() < 0.5
    r = float(np.exp(rng.uniform(np.log(0.05), np.log(0.5))))
    eps = crit * (1 + r) if want_sat else crit * (1 - r)
    for _ in range(20):
        xl, xu = _box(centre, np.full(net.n_in, eps))
        optima = [exact_min(net, xl, xu, C, d) for C, d in disjuncts]
        if abs(min(optima)) >= GAP_MIN * scale:
            break
        eps *= 1.2 if min(optima) <= 0 else 0.83  # move away from the boundary
    else:  # pragma: no cover - never seen
        raise AssertionError(f"seed {seed}: could not place a robust property")
    truth = "sat" if min(optima) <= 0 else "unsat"
    return Instance(seed, "robust", net, xl, xu, disjuncts, optima, truth, scale)


def _threshold_rows(rng: np.random.Generator, net: Net, centre, nrows: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``±Y_a <= base`` with bases near the centre's values (shifted together later)."""
    y0 = net.forward(centre)[0]
    outs = rng.choice(net.n_out, size=min(nrows, net.n_out), replace=False)
    C = np.zeros((len(outs), net.n_out))
    base = np.zeros(len(outs))
    for k, a in enumerate(outs):
        s = 1.0 if rng.random() < 0.5 else -1.0
        C[k, a] = s
        base[k] = s * y0[a] + rng.normal() * 0.3
    return C, base


def _thresholds(seed: int, rng: np.random.Generator, net: Net, kind: str) -> Instance:
    centre = rng.uniform(-1, 1, net.n_in)
    radius = rng.uniform(0.02, 0.5, net.n_in)
    xl, xu = _box(centre, radius)
    scale = 1.0 + float(np.abs(net.forward(centre)).max())
    nd = 1 if kind == "threshold" else int(rng.integers(2, 4))
    want_sat = rng.random() < 0.5
    sat_j = int(rng.integers(nd))
    disjuncts, optima = [], []
    for j in range(nd):
        C, base = _threshold_rows(rng, net, centre, 1 if kind == "threshold"
                                  else int(rng.integers(1, 3)))
        v = exact_min(net, xl, xu, C, base)  # violated iff v <= shift
        violate = want_sat and (j == sat_j or rng.random() < 0.3)
        gap = _gap(rng, scale)
        shift = v + gap if violate else v - gap
        d = base + shift
        disjuncts.append((C, d))
        optima.append(v - shift)  # shifting every row's threshold shifts the optimum
    truth = "sat" if min(optima) <= 0 else "unsat"
    return Instance(seed, kind, net, xl, xu, disjuncts, optima, truth, scale)


def _num(v: float) -> str:
    return repr(float(v))


def vnnlib_text(inst: Instance) -> str:
    lines = [f"; planecut MILP harness, seed {inst.seed}, {inst.kind}, truth {inst.truth}"]
    lines += [f"(declare-const X_{i} Real)" for i in range(inst.net.n_in)]
    lines += [f"(declare-const Y_{i} Real)" for i in range(inst.net.n_out)]
    for i, (lo, hi) in enumerate(zip(inst.xl, inst.xu)):
        lines.append(f"(assert (>= X_{i} {_num(lo)}))")
        lines.append(f"(assert (<= X_{i} {_num(hi)}))")
    terms = []
    for C, d in inst.disjuncts:
        atoms = []
        for row, dk in zip(C, d):
            nz = np.flatnonzero(row)
            if len(nz) == 2:  # Y_label - Y_j <= 0
                pos, neg = (nz[0], nz[1]) if row[nz[0]] > 0 else (nz[1], nz[0])
                assert dk == 0.0
                atoms.append(f"(>= Y_{neg} Y_{pos})")
            elif row[nz[0]] > 0:
                atoms.append(f"(<= Y_{nz[0]} {_num(dk)})")
            else:
                atoms.append(f"(>= Y_{nz[0]} {_num(-dk)})")
        terms.append(f"(and {' '.join(atoms)})")
    lines.append(f"(assert (or {' '.join(terms)}))")
    return "\n".join(lines) + "\n"


_WORKDIR = Path(tempfile.mkdtemp(prefix="planecut_milp_"))


@functools.lru_cache(maxsize=None)
def make_instance(seed: int) -> Instance:
    """The property for ``seed`` (deterministic), written under a temporary folder."""
    rng = np.random.default_rng(seed)
    net = random_net(rng)
    kind = ("robust", "threshold", "multi")[seed % 3]
    inst = _robust(seed, rng, net) if kind == "robust" else _thresholds(seed, rng, net, kind)
    inst.model_path = _WORKDIR / f"net_{seed}.onnx"
    inst.spec_path = _WORKDIR / f"prop_{seed}.vnnlib"
    write_onnx(net, inst.model_path)
    inst.spec_path.write_text(vnnlib_text(inst))
    return inst


# --------------------------------------------------------------------------- running verify


@functools.lru_cache(maxsize=None)
def run_instance(seed: int, mode: str = "auto", timeout: float = TIMEOUT, cuts: str = "auto"
                 ) -> tuple[str, str]:
    """(verdict, problem) of ``verify`` on the seed's instance with branch-and-bound ``mode``
    and MIP cut worker mode ``cuts``; ``problem`` is empty when the answer is consistent with
    the MILP."""
    inst = make_instance(seed)
    # "mip+refine": the worker first MIP-tightens the root's intermediate bounds (half its time)
    cuts_cfg = CutsConfig(mode="mip", refine_fraction=0.5, refine_solve_seconds=0.3) \
        if cuts == "mip+refine" else CutsConfig(mode=cuts)
    cfg = VerifierConfig(device="cpu", bab=BabConfig(mode=mode), cuts=cuts_cfg)
    # a verify() that ignores its deadline would hang the suite: leave a stack dump behind
    faulthandler.dump_traceback_later(timeout + 60, exit=False)
    try:
        res = verify(inst.model_path, inst.spec_path, timeout=timeout, config=cfg)
    finally:
        faulthandler.cancel_dump_traceback_later()
    v = res.verdict
    where = f"[mode={mode}, cuts={cuts}] {inst.describe()}"
    if v == "error":
        return v, f"ERROR ({res.message}) on {where}"
    if v in ("sat", "unsat") and v != inst.truth:
        return v, (f"CONTRADICTION: verify says {v}, MILP says {inst.truth} (optima per "
                   f"disjunct {inst.optima}): {where}")
    if v == "sat":
        cex = res.counterexample
        x = np.asarray(cex.x, dtype=np.float64).reshape(-1)
        if x.shape != (inst.net.n_in,) or np.any(x < inst.xl) or np.any(x > inst.xu):
            return v, f"counterexample outside the box: x={x.tolist()} {where}"
        y = ort_outputs(inst.model_path, x)[0]
        if not any(np.all(C @ y <= d) for C, d in inst.disjuncts):
            return v, (f"counterexample does not violate the property on onnxruntime: "
                       f"x={x.tolist()} y={y.tolist()} {where}")
    if res.seconds > timeout + 1.5:
        return v, f"took {res.seconds:.1f}s > timeout {timeout}: {where}"
    return v, ""


def _run_many(seeds, mode: str = "auto", timeout: float = TIMEOUT, cuts: str = "auto"
              ) -> tuple[dict[str, int], list[str], float]:
    counts = {"sat": 0, "unsat": 0, "unknown": 0, "timeout": 0, "error": 0}
    problems, undecided = [], []
    for s in seeds:
        v, problem = run_instance(s, mode, timeout, cuts)
        counts[v] += 1
        if problem:
            problems.append(problem)
        if v not in ("sat", "unsat"):
            undecided.append(s)
    decided = (counts["sat"] + counts["unsat"]) / max(1, len(seeds))
    truths = [make_instance(s).truth for s in seeds]
    print(f"\n[bab mode {mode}, cuts {cuts}, timeout {timeout:g}s] {len(seeds)} properties (MILP: "
          f"{truths.count('sat')} sat, {truths.count('unsat')} unsat); verify: {counts}; "
          f"decided {decided:.0%}; undecided seeds {undecided}")
    return counts, problems, decided


# --------------------------------------------------------------------------- tests: the harness


@pytest.mark.parametrize("seed", [0, 1, 2, 4, 5, 7])
def test_milp_truth_agrees_with_dense_sampling(seed):
    """The MILP optimum is the minimum over the box: never above a sampled point, attained by
    its minimiser, and on sat instances dense sampling finds violations the MILP also sees
    (and onnxruntime confirms at the MILP's minimiser)."""
    inst = make_instance(seed)
    rng = np.random.default_rng(seed + 7)
    xs = rng.uniform(inst.xl, inst.xu, size=(100_000, inst.net.n_in))
    corners = np.where(rng.random((2000, inst.net.n_in)) < 0.5, inst.xl, inst.xu)
    xs = np.concatenate([xs, corners])
    for (C, d), opt in zip(inst.disjuncts, inst.optima):
        s = margin_of(inst.net, xs, C, d)
        assert opt <= s.min() + 1e-9, (opt, s.min())
        if s.min() <= 0:
            assert opt <= 0
        res = milp_min(inst.net, inst.xl, inst.xu, C, d)
        assert margin_of(inst.net, res.x, C, d)[0] == pytest.approx(opt, abs=1e-7)
        if opt <= 0:
            y = ort_outputs(inst.model_path, res.x)[0]
            assert np.all(C @ y <= d), "MILP minimiser does not violate on onnxruntime"


@pytest.mark.parametrize("seed", [3, 6])
def test_milp_truth_on_a_grid(seed):
    """Two-input networks: the MILP optimum and a fine grid's minimum agree up to the grid's
    Lipschitz error."""
    rng = np.random.default_rng(seed)
    net = random_net(rng)
    net = Net([rng.normal(size=(net.ws[0].shape[0], 2)) / np.sqrt(2), *net.ws[1:]], net.bs)
    xl, xu = np.array([-1.0, -0.5]), np.array([0.5, 1.0])
    n = 601
    g0, g1 = np.linspace(xl[0], xu[0], n), np.linspace(xl[1], xu[1], n)
    xs = np.stack(np.meshgrid(g0, g1), -1).reshape(-1, 2)
    for k in range(net.n_out):
        C = np.zeros((1, net.n_out))
        C[0, k] = 1.0 if k % 2 else -1.0
        d = np.zeros(1)
        opt = milp_min(net, xl, xu, C, d).value
        grid = float(margin_of(net, xs, C, d).min())
        lip = np.linalg.norm(C @ net.ws[-1], 2) * np.prod([np.linalg.norm(w, 2)
                                                           for w in net.ws[:-1]])
        h = float(np.max((xu - xl) / (n - 1)))
        assert opt <= grid + 1e-9
        assert grid - opt <= lip * h * np.sqrt(2) / 2 + 1e-9


@pytest.mark.parametrize("seed", [11, 12])
def test_milp_truth_agrees_with_exact_lp_enumeration(seed):
    """An independent exact method: enumerate every phase pattern of the unstable neurons and
    decide each piece with the exact LP (planecut.verifier.bab.exact_lp); the smallest piece
    optimum is the global minimum, which the MILP must reproduce."""
    import itertools

    import torch

    from planecut.verifier.bab.exact_lp import solve_fully_split
    from planecut.verifier.graph.ir import Dense, Graph, Relu

    rng = np.random.default_rng(seed)
    for _ in range(200):  # a net and box with a handful of unstable neurons
        net = random_net(rng)
        centre = rng.uniform(-1, 1, net.n_in)
        xl, xu = _box(centre, np.full(net.n_in, rng.uniform(0.05, 0.3)))
        bounds = lp_bounds(net, xl, xu)
        unstable = [(lo < 0) & (hi > 0) for lo, hi in bounds]
        if 4 <= sum(int(u.sum()) for u in unstable) <= 9:
            break
    nodes, cur = [], "x"
    for i, (w, b) in enumerate(zip(net.ws, net.bs)):
        nodes.append(Dense(f"d{i}", (cur,), (w.shape[0],), weight=torch.as_tensor(w),
                           bias_=torch.as_tensor(b)))
        cur = f"d{i}"
        if i < len(net.ws) - 1:
            nodes.append(Relu(f"r{i}", (cur,), (w.shape[0],)))
            cur = f"r{i}"
    graph = Graph("x", (net.n_in,), nodes, cur)
    inter = {f"r{i}": (torch.as_tensor(lo), torch.as_tensor(hi))
             for i, (lo, hi) in enumerate(bounds)}
    where = [(layer, j) for layer, u in enumerate(unstable) for j in np.flatnonzero(u)]
    C = np.zeros((2, net.n_out))
    C[0, 0], C[1, net.n_out - 1] = 1.0, -1.0
    d = np.array([0.3, -0.2])
    best = np.inf
    for bits in itertools.product([1, -1], repeat=len(where)):
        splits = [np.zeros(len(lo), np.int8) for lo, _ in bounds]
        for (layer, j), b in zip(where, bits):
            splits[layer][j] = b
        dec = solve_fully_split(graph, xl, xu, splits, inter, C, d)
        assert dec.status != "unknown", dec
        if dec.margin is not None:
            best = min(best, dec.margin)
    opt = milp_min(net, xl, xu, C, d).value
    assert opt == pytest.approx(best, abs=1e-7 * (1 + abs(opt)))


def test_milp_big_m_bounds_are_valid():
    """Sampled pre-activations stay inside the (widened) IBP bounds used as big-M constants."""
    for seed in range(5):
        inst = make_instance(seed)
        xs = np.random.default_rng(seed).uniform(inst.xl, inst.xu, size=(20000, inst.net.n_in))
        h = xs
        for (w, b), (lo, hi) in zip(zip(inst.net.ws[:-1], inst.net.bs[:-1]),
                                    ibp(inst.net, inst.xl, inst.xu)):
            z = h @ w.T + b
            assert np.all(z >= lo) and np.all(z <= hi)
            h = np.maximum(z, 0)


def test_generated_properties_are_balanced_and_robust():
    """Both answers occur in similar numbers, every kind occurs, and each ground truth sits at
    least GAP_MIN (relative) away from the decision boundary; the files parse to our C, d."""
    from planecut.vnnlib.parse import parse_spec

    insts = [make_instance(s) for s in CI_SEEDS]
    sat = sum(i.truth == "sat" for i in insts)
    assert 0.3 * len(insts) <= sat <= 0.7 * len(insts), sat
    assert {i.kind for i in insts} == {"robust", "threshold", "multi"}
    for inst in insts:
        assert abs(inst.margin) >= 0.9 * GAP_MIN * inst.scale, inst.describe()
        spec = parse_spec(inst.spec_path)
        assert len(spec.regions) == 1
        reg = spec.regions[0]
        np.testing.assert_array_equal(reg.lower, inst.xl)
        np.testing.assert_array_equal(reg.upper, inst.xu)
        # the parsed disjuncts describe the same sets: same violation at random outputs
        ys = np.random.default_rng(0).normal(size=(500, inst.net.n_out)) * 3
        for y in ys:
            ours = any(np.all(C @ y <= d) for C, d in inst.disjuncts)
            theirs = any(np.all(dj.C @ y <= dj.d) for dj in reg.disjuncts)
            assert ours == theirs, inst.describe()


# --------------------------------------------------------------------------- tests: verify


def test_verify_never_contradicts_milp():
    """CI slice: 40 properties with the default configuration (input split for these small
    inputs); no contradiction, no error, valid counterexamples. A short timeout keeps CI fast
    whatever the search does; the slow tests give every property the full TIMEOUT."""
    _, problems, _ = _run_many(list(CI_SEEDS), "auto", CI_TIMEOUT)
    assert not problems, "\n".join(problems)


def test_verify_activation_split_never_contradicts_milp():
    """CI slice of the activation-split search (forced: these inputs are small enough for
    input split by default)."""
    _, problems, _ = _run_many(list(CI_SEEDS)[::2], "activation", CI_TIMEOUT)
    assert not problems, "\n".join(problems)


def test_verify_with_mip_cuts_never_contradicts_milp():
    """CI slice of the activation-split search with the MIP cut worker forced on: its cuts
    (GCP-CROWN) and its own verdicts never contradict the MILP."""
    _, problems, _ = _run_many(list(CI_SEEDS)[1::4], "activation", CI_TIMEOUT, cuts="mip")
    assert not problems, "\n".join(problems)


def test_verify_with_refined_bounds_never_contradicts_milp():
    """CI slice with the worker's MIP bound refinement on: the search adopts its bounds (and
    drops domains they contradict) without ever contradicting the MILP."""
    _, problems, _ = _run_many(list(CI_SEEDS)[3::8], "activation", CI_TIMEOUT,
                               cuts="mip+refine")
    assert not problems, "\n".join(problems)


@pytest.mark.slow
@pytest.mark.parametrize("mode,cuts", [("auto", "auto"), ("activation", "auto"),
                                       ("activation", "mip"), ("activation", "mip+refine")])
def test_verify_never_contradicts_milp_many(mode, cuts):
    _, problems, _ = _run_many(list(SLOW_SEEDS), mode, cuts=cuts)
    assert not problems, "\n".join(problems)


@pytest.mark.slow
def test_bab_decides_small_nets():
    """Complete verification decides (sat or unsat) at least 95% of the small properties with
    the default configuration. Slow until branch and bound lands."""
    counts, problems, decided = _run_many(list(SLOW_SEEDS)[:100])
    assert not problems, "\n".join(problems)
    assert decided >= 0.95, counts
