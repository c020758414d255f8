"""Deciding a fully split branch-and-bound domain exactly with one LP.

Once every ReLU of a domain is either split (its phase fixed by the domain's constraints) or
stable by the domain's pre-activation bounds, the network is *linear* on the domain: each ReLU
is the identity (active) or zero (inactive). The network then is one affine map ``x -> A x + c``
and every pre-activation is an affine function ``z_i(x) = a_i·x + c_i``. Whether the domain
holds a violation is the LP

    min t   s.t.   x in [x_lower, x_upper],
                   a_i·x + c_i >= 0   for active neurons,   a_i·x + c_i <= 0 for inactive ones,
                   C_k·(A x + c) - d_k <= t   for every row k of the disjunct,

and the property is violated on the domain iff ``t* <= 0``. The affine pieces come from one
masked forward pass of an identity batch (input columns in chunks), so Dense, Conv and every
other linear node of the IR are handled alike.

Numerics (soundness first):

* ``infeasible`` (proven: no violation in the domain) is declared only when HiGHS reports the LP
  infeasible (the split constraints are contradictory; a phase row whose interval over the
  whole box already contradicts its phase counts too) or when its optimum ``t*`` exceeds a
  tolerance relative to the scale of the spec rows. HiGHS's feasibility tolerances only relax
  the constraints, i.e. lower ``t*``: they never hide a violation.
* ``feasible`` comes with the LP's witness ``x`` (clipped into the box); it is a candidate the
  caller must confirm on the original model (onnxruntime) before reporting ``sat``.
* ``unknown`` for solver trouble, the time limit, or ``0 < t* <= tolerance`` (the witness, if
  any, is still returned there: it may well be a real counterexample).

Neuron identity is ``(relu_layer, flat_index)`` as in :mod:`planecut.verifier.graph.ir`.
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from planecut.mip_cuts.backends.highs import new_highs
from planecut.verifier.graph.ir import Graph, LinearNode, Relu

Tensor = torch.Tensor

#: elements (float64) of one chunk of the identity batch, per tensor (about 64 MiB)
CHUNK_ELEMENTS = 2**23
#: phase rows of stable neurons are added only while the dense rows stay below this many
#: entries (they are implied by sound bounds; they only make witnesses exact)
STABLE_ROWS_BUDGET = 4_000_000
#: relative optimality margin: ``t* > OPT_TOL * scale`` is needed to declare ``infeasible``
OPT_TOL = 1e-6
#: relative tolerance for deciding a phase row from its interval over the box alone
ROW_TOL = 1e-9


@dataclass
class LpDecision:
    """Outcome of :func:`solve_fully_split`.

    ``status``: ``infeasible`` (proven: the domain cannot violate the property), ``feasible``
    (``x`` is a candidate counterexample, flat float64 inside the box; confirm it before use)
    or ``unknown`` (solver trouble, time limit, or too close to call; ``x`` may still be set).
    ``margin``: the LP optimum ``t* = min max_k (C_k·y - d_k)`` over the domain (``<= 0`` means
    violated), None when not solved to optimality. ``disjunct``: with ``row_disjunct``, the
    disjunct that ``x`` violates. ``message``: why, for ``unknown``.
    """

    status: str
    x: np.ndarray | None = None
    margin: float | None = None
    disjunct: int | None = None
    message: str = ""


# --------------------------------------------------------------------------- helpers


def _flat_np(a: Any, dtype=np.float64) -> np.ndarray:
    if isinstance(a, Tensor):
        a = a.detach().cpu().numpy()
    return np.asarray(a, dtype=dtype).reshape(-1)


def exact_lp_supported(graph: Graph) -> bool:
    """True if every node of ``graph`` is linear or a ReLU (what the exact LP can encode)."""
    return all(isinstance(n, (LinearNode, Relu)) for n in graph.nodes)


def _layer_bounds(graph: Graph, intermediate: Mapping[str, Any]
                  ) -> list[tuple[np.ndarray, np.ndarray] | None]:
    out: list[tuple[np.ndarray, np.ndarray] | None] = []
    for relu in graph.relu_nodes:
        if relu.name not in intermediate:
            out.append(None)
            continue
        lo, hi = intermediate[relu.name]
        lo, hi = _flat_np(lo), _flat_np(hi)
        if lo.size != relu.size or hi.size != relu.size:
            raise ValueError(f"intermediate bounds of {relu.name} have {lo.size}/{hi.size} "
                             f"entries, expected {relu.size} (one domain)")
        out.append((lo, hi))
    return out


def _layer_splits(graph: Graph, splits: Sequence[Any] | None) -> list[np.ndarray]:
    relus = graph.relu_nodes
    if splits is None:
        return [np.zeros(r.size, dtype=np.int8) for r in relus]
    if len(splits) != len(relus):
        raise ValueError(f"splits has {len(splits)} layers, the graph {len(relus)} ReLU layers")
    out = []
    for r, s in zip(relus, splits):
        if s is None:
            out.append(np.zeros(r.size, dtype=np.int8))
            continue
        s = _flat_np(s, np.int64)
        if s.size != r.size:
            raise ValueError(f"splits of {r.name} have {s.size} entries, expected {r.size}")
        out.append(np.sign(s).astype(np.int8))
    return out


def _phases(splits: list[np.ndarray], bounds: list[tuple[np.ndarray, np.ndarray] | None]
            ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """(phase per layer: +1 active / -1 inactive / 0 unstable, split mask per layer).

    A split decides the phase; an unsplit neuron takes it from its bounds (``lower >= 0``
    active, ``upper <= 0`` inactive).
    """
    phases, split_mask = [], []
    for s, b in zip(splits, bounds):
        ph = s.astype(np.int8).copy()
        free = ph == 0
        if b is not None:
            lo, hi = b
            ph[free & (lo >= 0)] = 1
            ph[free & (lo < 0) & (hi <= 0)] = -1
        phases.append(ph)
        split_mask.append(~free)
    return phases, split_mask


def neurons_left(splits: Sequence[Any] | None, intermediate: Mapping[str, Any],
                 graph: Graph) -> int:
    """Number of unsplit neurons that are unstable by ``intermediate`` (``lower < 0 < upper``,
    or no bounds given for the layer). 0 means the domain is fully split: the network is linear
    on it and :func:`solve_fully_split` decides it."""
    phases, _ = _phases(_layer_splits(graph, splits), _layer_bounds(graph, intermediate))
    return int(sum(int((p == 0).sum()) for p in phases))


# --------------------------------------------------------------------------- affine pieces


_GRAPH_CACHE: "weakref.WeakKeyDictionary[Graph, tuple[tuple, Graph]]" = \
    weakref.WeakKeyDictionary()


def _fingerprint(graph: Graph, device: torch.device) -> tuple:
    return (str(device), tuple(id(n) for n in graph.nodes),
            tuple((id(t), t.data_ptr(), t._version, t.dtype, str(t.device))
                  for n in graph.nodes for t in n.tensors().values()))


def _graph64(graph: Graph, device: torch.device) -> Graph:
    """A float64 copy of ``graph`` on ``device`` (cached; the caller's graph is untouched)."""
    key = _fingerprint(graph, device)
    hit = _GRAPH_CACHE.get(graph)
    if hit is not None and hit[0] == key:
        return hit[1]
    g64 = graph.converted(device, torch.float64)
    if g64 is graph:  # already float64 there (caching it under itself would keep it alive)
        return g64
    try:
        _GRAPH_CACHE[graph] = (key, g64)
    except TypeError:  # pragma: no cover - not weak-referenceable
        pass
    return g64


def _masked_pass(graph: Graph, x: Tensor, masks: list[Tensor], with_bias: bool,
                 rows: list[Tensor]) -> tuple[list[Tensor], Tensor]:
    """Evaluate the graph with every ReLU replaced by multiplication with its 0/1 mask.

    With ``with_bias=False`` every node applies only its linear part, so a batch of unit
    vectors yields columns of the linear map; with ``with_bias=True`` on a zero input it yields
    the constant term. Returns (selected pre-activations ``(B, len(rows[l]))`` per ReLU layer,
    flat output ``(B, n_out)``).
    """
    B = x.shape[0]
    values: dict[str, Tensor] = {graph.input_name: x.reshape(B, *graph.input_shape)}
    last: dict[str, int] = {}
    for i, n in enumerate(graph.nodes):
        for name in n.inputs:
            last[name] = i
    picked: list[Tensor] = []
    layer = 0
    for i, n in enumerate(graph.nodes):
        xs = [values[name] for name in n.inputs]
        if isinstance(n, Relu):
            z = xs[0]
            picked.append(z.reshape(B, -1)[:, rows[layer]])
            out = z * masks[layer]
            layer += 1
        elif isinstance(n, LinearNode):
            out = n.linear(*xs)
            if with_bias:
                b = n.bias
                if b is not None:
                    out = out + b
        else:
            raise ValueError(f"exact LP: unsupported nonlinear node {n.name} ({n.kind}); "
                             "only ReLU networks are linear on a fully split domain")
        values[n.name] = out
        for name in n.inputs:
            if last.get(name) == i and name != graph.output_name:
                values.pop(name, None)
    return picked, values[graph.output_name].reshape(B, -1)


@dataclass
class AffinePieces:
    """The network on one fully split domain: ``y = A x + c``; ``phase_A x + phase_c`` are the
    pre-activations of the constrained neurons, ``phase_sign`` +1 (must be >= 0) / -1 (<= 0);
    ``phase_id`` their ``(relu_layer, flat_index)``."""

    A: np.ndarray  # (n_out, n_in)
    c: np.ndarray  # (n_out,)
    phase_A: np.ndarray  # (m, n_in)
    phase_c: np.ndarray  # (m,)
    phase_sign: np.ndarray  # (m,) int8
    phase_id: np.ndarray  # (m, 2) int64


def affine_pieces(graph: Graph, phases: Sequence[np.ndarray], constrain: Sequence[np.ndarray],
                  *, device: torch.device | str | None = None,
                  chunk_elements: int = CHUNK_ELEMENTS) -> AffinePieces:
    """Affine map of the network with the given ReLU phases (+1 identity, -1 zero; no 0) and
    the affine pre-activations of the neurons flagged in ``constrain`` (bool per layer)."""
    if device is None:
        ts = [t for n in graph.nodes for t in n.tensors().values()]
        device = ts[0].device if ts else torch.device("cpu")
    device = torch.device(device)
    g = _graph64(graph, device)
    relus = g.relu_nodes
    masks = [torch.as_tensor((p > 0).astype(np.float64), device=device).reshape(r.shape)
             for p, r in zip(phases, relus)]
    rows_np = [np.flatnonzero(c) for c in constrain]
    rows = [torch.as_tensor(r, dtype=torch.long, device=device) for r in rows_np]
    n_in = g.num_inputs
    with torch.no_grad():
        zero = torch.zeros(1, n_in, dtype=torch.float64, device=device)
        pc, yc = _masked_pass(g, zero, masks, True, rows)
        width = max([n_in] + [n.size for n in g.nodes])
        chunk = max(1, min(n_in, chunk_elements // max(1, width)))
        pa_parts: list[list[Tensor]] = [[] for _ in relus]
        ya_parts: list[Tensor] = []
        for s in range(0, n_in, chunk):
            e = min(n_in, s + chunk)
            eye = torch.zeros(e - s, n_in, dtype=torch.float64, device=device)
            eye[torch.arange(e - s, device=device), torch.arange(s, e, device=device)] = 1.0
            pa, ya = _masked_pass(g, eye, masks, False, rows)
            for l, t in enumerate(pa):
                pa_parts[l].append(t.cpu())
            ya_parts.append(ya.cpu())
    A = torch.cat(ya_parts, 0).t().numpy().copy()
    c = yc[0].cpu().numpy().copy()
    pA = [torch.cat(p, 0).t().numpy() for p in pa_parts]
    phase_A = np.concatenate(pA, 0) if pA else np.zeros((0, n_in))
    phase_c = np.concatenate([t[0].cpu().numpy() for t in pc]) if pc else np.zeros(0)
    sign = np.concatenate([phases[l][r] for l, r in enumerate(rows_np)]) if rows_np \
        else np.zeros(0, dtype=np.int8)
    ids = np.concatenate([np.stack([np.full(r.size, l), r], 1) for l, r in enumerate(rows_np)]) \
        if rows_np else np.zeros((0, 2), dtype=np.int64)
    return AffinePieces(A, c, phase_A.reshape(-1, n_in), phase_c, sign.astype(np.int8),
                        ids.astype(np.int64).reshape(-1, 2))


# --------------------------------------------------------------------------- LP


def _solve_lp(Aub: np.ndarray, bub: np.ndarray, cost: np.ndarray, lb: np.ndarray,
              ub: np.ndarray, time_limit: float | None) -> tuple[str, np.ndarray | None,
                                                                    float | None, str]:
    """``min cost·v  s.t.  Aub v <= bub, lb <= v <= ub`` with HiGHS.

    Returns (``optimal`` | ``infeasible`` | ``unknown``, v, objective, message)."""
    import highspy

    inf = highspy.kHighsInf
    m, n = Aub.shape
    lp = highspy.HighsLp()
    lp.num_col_ = n
    lp.num_row_ = m
    lp.col_cost_ = np.asarray(cost, dtype=np.float64)
    lp.col_lower_ = np.where(np.isfinite(lb), lb, -inf).astype(np.float64)
    lp.col_upper_ = np.where(np.isfinite(ub), ub, inf).astype(np.float64)
    lp.row_lower_ = np.full(m, -inf)
    lp.row_upper_ = np.asarray(bub, dtype=np.float64)
    # column-wise sparse storage
    nz = Aub != 0
    counts = nz.sum(0)
    start = np.zeros(n + 1, dtype=np.int32)
    np.cumsum(counts, out=start[1:])
    rr, cc = np.nonzero(nz.T)  # rr: column, cc: row, column-major order
    lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
    lp.a_matrix_.start_ = start
    lp.a_matrix_.index_ = cc.astype(np.int32)
    lp.a_matrix_.value_ = Aub.T[rr, cc].astype(np.float64)
    lp.a_matrix_.num_col_ = n
    lp.a_matrix_.num_row_ = m

    status = highspy.HighsModelStatus
    for presolve in ("on", "off"):
        h = new_highs()  # silent: no banner on the CLI's stdout
        h.setOptionValue("presolve", presolve)
        if time_limit is not None:
            h.setOptionValue("time_limit", max(1e-3, float(time_limit)))
        h.passModel(lp)
        h.run()
        st = h.getModelStatus()
        if st == status.kOptimal:
            sol = h.getSolution()
            v = np.asarray(sol.col_value, dtype=np.float64)
            return "optimal", v, float(h.getInfo().objective_function_value), ""
        if st == status.kInfeasible:
            return "infeasible", None, None, ""
        if st == status.kUnboundedOrInfeasible and presolve == "on":
            continue  # presolve could not tell which: solve the original model
        return "unknown", None, None, f"HiGHS: {h.modelStatusToString(st)}"
    return "unknown", None, None, "HiGHS: unbounded or infeasible"  # pragma: no cover


def _decide_disjunct(pieces: AffinePieces, prow_A: np.ndarray, prow_b: np.ndarray,
                     xl: np.ndarray, xu: np.ndarray, C: np.ndarray, d: np.ndarray,
                     time_limit: float | None) -> LpDecision:
    n_in = xl.size
    G = C @ pieces.A  # (K, n_in)
    g0 = C @ pieces.c - d  # row k: G_k x + g0_k <= t
    xmax = np.maximum(np.abs(xl), np.abs(xu))
    scale = float(np.max(np.abs(g0) + np.abs(G) @ xmax, initial=0.0))
    scale = max(1.0, scale, float(np.max(np.abs(d), initial=0.0)))
    # t is bounded below only so the LP is never unbounded (no rows, unbounded boxes); any
    # negative bound keeps the sign of t*, and this one leaves the most violating point free
    t_floor = -1e6 * scale
    K = C.shape[0]
    Aub = np.zeros((prow_A.shape[0] + K, n_in + 1))
    Aub[:prow_A.shape[0], :n_in] = prow_A
    Aub[prow_A.shape[0]:, :n_in] = G
    Aub[prow_A.shape[0]:, n_in] = -1.0
    bub = np.concatenate([prow_b, -g0])
    cost = np.zeros(n_in + 1)
    cost[n_in] = 1.0
    lb = np.concatenate([xl, [t_floor]])
    ub = np.concatenate([xu, [np.inf]])
    status, v, obj, msg = _solve_lp(Aub, bub, cost, lb, ub, time_limit)
    if status == "infeasible":
        return LpDecision("infeasible", message="the domain's phase constraints are infeasible")
    if status != "optimal":
        return LpDecision("unknown", message=msg)
    x = np.clip(v[:n_in], xl, xu)
    t_star = float(obj)
    if t_star > OPT_TOL * scale:
        return LpDecision("infeasible", margin=t_star)
    if t_star <= 0:  # (no rows: an empty conjunction holds anywhere in the domain)
        return LpDecision("feasible", x=x, margin=t_star if K else -np.inf)
    return LpDecision("unknown", x=x, margin=t_star,
                      message=f"LP optimum {t_star:.3g} within tolerance of 0")


def solve_fully_split(graph: Graph, x_lower: Any, x_upper: Any, splits: Sequence[Any] | None,
                      intermediate: Mapping[str, Any], C: Any, d: Any, *,
                      time_limit: float | None = None, row_disjunct: Any = None,
                      disjunct_valid: Any = None, stable_rows: bool | None = None,
                      device: torch.device | str | None = None) -> LpDecision:
    """Decide exactly whether one fully split domain can violate the property.

    Args:
        graph: a ReLU network (linear nodes and :class:`Relu` only).
        x_lower, x_upper: the domain's input box, flat ``(n_in,)`` or shaped (one domain).
        splits: per ReLU layer, ``(n_l,)`` int8 (+1 active, -1 inactive, 0 not split); None for
            no splits.
        intermediate: ReLU node name -> (lower, upper) pre-activation bounds of the domain,
            flat or shaped; an unsplit neuron with ``lower >= 0`` / ``upper <= 0`` takes the
            active / inactive phase. Every other unsplit neuron is an error (see
            :func:`neurons_left`).
        C, d: ``(K, n_out)``, ``(K,)``: the domain violates the property iff some ``x`` gives
            ``C·y <= d`` on every row (one disjunct) — or, with ``row_disjunct`` ``(K,)`` and
            ``disjunct_valid`` ``(J,)`` (the layout of :class:`~planecut.verifier.spec_tensors.
            SpecTensors`), on every row of some valid disjunct ``j`` (rows with
            ``row_disjunct >= J`` are padding).
        time_limit: wall-clock seconds for the whole call's LP solves (``unknown`` past it).
        stable_rows: also constrain the phases of neurons stable by their bounds (implied by
            sound bounds; makes the witness's phases exact). Default: when the dense rows fit
            in :data:`STABLE_ROWS_BUDGET` entries.

    Returns:
        :class:`LpDecision`: ``infeasible`` (proven), ``feasible`` (candidate ``x``; confirm it
        on the original model) or ``unknown``.
    """
    t0 = time.monotonic()
    if not exact_lp_supported(graph):
        bad = next(n for n in graph.nodes if not isinstance(n, (LinearNode, Relu)))
        raise ValueError(f"exact LP: unsupported node {bad.name} ({bad.kind})")
    xl, xu = _flat_np(x_lower), _flat_np(x_upper)
    n_in = graph.num_inputs
    if xl.size != n_in or xu.size != n_in:
        raise ValueError(f"input box has {xl.size}/{xu.size} entries, expected {n_in}")
    if np.any(xl > xu):
        return LpDecision("infeasible", message="empty input box")
    C = np.asarray(C.detach().cpu().numpy() if isinstance(C, Tensor) else C, dtype=np.float64)
    C = C.reshape(-1, graph.num_outputs)
    d = _flat_np(d)
    if d.size != C.shape[0]:
        raise ValueError(f"C has {C.shape[0]} rows but d {d.size} entries")

    phases, split_mask = _phases(_layer_splits(graph, splits), _layer_bounds(graph, intermediate))
    left = int(sum(int((p == 0).sum()) for p in phases))
    if left:
        raise ValueError(f"exact LP: {left} unsplit unstable neuron(s) left; the network is "
                         "not linear on this domain")
    if stable_rows is None:
        n_split = sum(int(m.sum()) for m in split_mask)
        n_all = sum(p.size for p in phases)
        stable_rows = (n_all - n_split) * n_in <= STABLE_ROWS_BUDGET
    constrain = [np.ones(p.size, bool) if stable_rows else m for p, m in zip(phases, split_mask)]
    pieces = affine_pieces(graph, phases, constrain, device=device)

    # phase rows as  a·x <= b : active  -(a·x + c) <= 0 -> -a·x <= c ; inactive a·x <= -c
    sgn = pieces.phase_sign.astype(np.float64)
    pa = -sgn[:, None] * pieces.phase_A
    pb = sgn * pieces.phase_c
    # decide rows from their interval over the box: always satisfied (drop) or never (empty)
    centre, radius = (xl + xu) / 2, (xu - xl) / 2
    mid = pa @ centre
    spread = np.abs(pa) @ radius
    tol = ROW_TOL * (1.0 + np.abs(pb) + np.abs(pa) @ np.maximum(np.abs(xl), np.abs(xu)))
    if np.any(mid - spread > pb + tol):
        return LpDecision("infeasible", message="a split contradicts the input box")
    keep = mid + spread > pb  # not implied by the box
    pa, pb = pa[keep], pb[keep]
    # normalise rows so HiGHS's absolute tolerances mean the same for every neuron
    norm = np.max(np.abs(pa), axis=1, initial=0.0)
    norm[norm == 0] = 1.0
    pa, pb = pa / norm[:, None], pb / norm

    if row_disjunct is None:
        groups = [(None, np.arange(C.shape[0]))]
    else:
        rd = _flat_np(row_disjunct, np.int64)
        if disjunct_valid is None:
            raise ValueError("row_disjunct needs disjunct_valid")
        valid = _flat_np(disjunct_valid, bool)
        groups = [(j, np.flatnonzero(rd == j)) for j in range(valid.size) if valid[j]]
    worst = "infeasible"
    last: LpDecision | None = None
    best_margin = None
    for j, idx in groups:
        remaining = None
        if time_limit is not None:
            remaining = time_limit - (time.monotonic() - t0)
            if remaining <= 0:
                return LpDecision("unknown", message="time limit")
        dec = _decide_disjunct(pieces, pa, pb, xl, xu, C[idx], d[idx], remaining)
        dec.disjunct = j
        if dec.status == "feasible":
            return dec
        if dec.status == "unknown":
            worst = "unknown"
            last = dec
        if dec.margin is not None:
            best_margin = dec.margin if best_margin is None else min(best_margin, dec.margin)
    if worst == "unknown":
        assert last is not None
        return last
    return LpDecision("infeasible", margin=best_margin)
