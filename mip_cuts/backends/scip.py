"""SCIP (pyscipopt) backend: solve the MILP and harvest the cutting planes SCIP separates.

Cuts are caught with an event handler on ``ROWADDEDLP``: a row that SCIP's separators created
(``getOrigintype() == SEPA``) and that is globally valid (``not isLocal()``) is a cut
``lhs <= Σ vals·vars + constant <= rhs``; a two-sided row becomes two ``<=`` cuts. Its columns are
mapped back to our variables by name; a row over any variable we did not create (presolve can
invent some) is rejected, never guessed.

Soundness of harvested rows needs the transformed problem to keep *every* feasible point of
the original one, not only the optimal ones. So everything that cuts off feasible but
non-improving points is switched off: dual reductions (strong and weak), reduced-cost and
pseudo-objective propagation, symmetry handling, restarts, and the dual-sparsify presolver
(which adds variables). The worker still validates every cut against real executions before
publishing it.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Callable

import numpy as np

from ..milp import MilpModel

#: parameters that keep the transformed problem's feasible set equal to the original's
SAFE_PARAMS: dict[str, object] = {
    "presolving/dualsparsify/maxrounds": 0,
    "presolving/maxrestarts": 0,
    "misc/allowstrongdualreds": False,
    "misc/allowweakdualreds": False,
    "propagating/redcost/freq": -1,
    "propagating/pseudoobj/freq": -1,
    "misc/usesymmetry": 0,
}


@dataclass
class RawCut:
    """One harvested cut ``Σ vals[i]·v[cols[i]] <= rhs`` in the model's column space."""

    cols: np.ndarray
    vals: np.ndarray
    rhs: float


@dataclass
class ScipStats:
    rows_seen: int = 0
    rows_unmapped: int = 0  # over a variable the encoding did not create
    rows_duplicate: int = 0
    cuts: int = 0
    first_cut_s: float | None = None


@dataclass
class MipResult:
    """``status``: optimal / infeasible / timelimit / interrupted / other SCIP status.
    ``primal``: best objective found (``x`` its input), ``dual``: proven lower bound."""

    status: str
    primal: float = math.inf
    dual: float = -math.inf
    x: np.ndarray | None = None
    seconds: float = 0.0
    stats: ScipStats = field(default_factory=ScipStats)


def _import():
    try:
        import pyscipopt
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("the SCIP backend needs pyscipopt (pip install pyscipopt, or "
                          "planecut[mip])") from e
    return pyscipopt


def build_scip(model: MilpModel, threads: int = 1, verbose: bool = False, safe: bool = True):
    """A pyscipopt Model of ``model`` (the objective constant included); returns (scip, vars).

    ``safe``: with :data:`SAFE_PARAMS` (needed where rows are harvested as cuts; a solve
    that only wants the optimum's bound may keep SCIP's dual reductions)."""
    p = _import()
    scip = p.Model("planecut")
    if not verbose:
        scip.hideOutput()
    for k, v in (SAFE_PARAMS.items() if safe else ()):
        scip.setParam(k, v)
    if threads > 1:
        try:
            scip.setParam("lp/threads", threads)
        except Exception:  # pragma: no cover - parameter absent in some builds
            pass
    names = model.names()
    xs = []
    for j in range(model.n_vars):
        lb = None if not np.isfinite(model.lb[j]) else float(model.lb[j])
        ub = None if not np.isfinite(model.ub[j]) else float(model.ub[j])
        vtype = "B" if model.integer[j] and lb is not None and lb >= 0 and ub is not None \
            and ub <= 1 else ("I" if model.integer[j] else "C")
        xs.append(scip.addVar(names[j], vtype=vtype, lb=lb, ub=ub,
                              obj=float(model.obj[j])))
    if model.obj_const:
        scip.addObjoffset(float(model.obj_const))
    A = model.A
    Term, Expr = p.scip.Term, p.scip.Expr
    for i in range(model.n_rows):
        lo, hi = A.indptr[i], A.indptr[i + 1]
        expr = Expr({Term(xs[c]): float(v) for c, v in zip(A.indices[lo:hi], A.data[lo:hi])})
        rlo, rhi = model.row_lo[i], model.row_hi[i]
        if np.isfinite(rlo) and np.isfinite(rhi):
            if rlo == rhi:
                scip.addCons(expr == float(rhi), name=f"r{i}")
            else:
                scip.addCons(p.scip.ExprCons(expr, lhs=float(rlo), rhs=float(rhi)), name=f"r{i}")
        elif np.isfinite(rhi):
            scip.addCons(expr <= float(rhi), name=f"r{i}")
        elif np.isfinite(rlo):
            scip.addCons(expr >= float(rlo), name=f"r{i}")
    return scip, xs


class _Harvester:
    """Builds the pyscipopt event handler; kept apart so the import stays lazy."""

    def __init__(self, model: MilpModel, on_cuts: Callable[[list[RawCut]], None] | None,
                 on_incumbent: Callable[[np.ndarray, float], None] | None,
                 should_stop: Callable[[], bool] | None, flush_s: float, t0: float) -> None:
        self.n_cols = model.layout.n_cols
        names = model.names()[: self.n_cols]
        self.col_of = {n: j for j, n in enumerate(names)}
        self.col_of.update({"t_" + n: j for n, j in list(self.col_of.items())})
        self.on_cuts, self.on_incumbent, self.should_stop = on_cuts, on_incumbent, should_stop
        self.flush_s, self.t0 = flush_s, t0
        self.buffer: list[RawCut] = []
        self.seen: set[bytes] = set()
        self.stats = ScipStats()
        self.last_flush = time.monotonic()
        self.interrupted = False

    def row_cuts(self, row) -> list[RawCut]:
        cols = row.getCols()
        vals = np.asarray(row.getVals(), dtype=np.float64)
        idx = np.empty(len(cols), dtype=np.int64)
        for i, c in enumerate(cols):
            j = self.col_of.get(c.getVar().name)
            if j is None:
                self.stats.rows_unmapped += 1
                return []
            idx[i] = j
        const = float(row.getConstant())
        out = []
        rhs, lhs = float(row.getRhs()), float(row.getLhs())
        if np.isfinite(rhs) and abs(rhs) < 1e19:
            out.append(RawCut(idx, vals.copy(), rhs - const))
        if np.isfinite(lhs) and abs(lhs) < 1e19:
            out.append(RawCut(idx, -vals, -(lhs - const)))
        return out

    def add_row(self, row) -> None:
        self.stats.rows_seen += 1
        for cut in self.row_cuts(row):
            order = np.argsort(cut.cols)
            key = cut.cols[order].tobytes() + np.round(cut.vals[order], 12).tobytes() + \
                np.float64(round(cut.rhs, 12)).tobytes()
            if key in self.seen:
                self.stats.rows_duplicate += 1
                continue
            self.seen.add(key)
            self.buffer.append(cut)
            self.stats.cuts += 1
            if self.stats.first_cut_s is None:
                self.stats.first_cut_s = time.monotonic() - self.t0

    def flush(self, force: bool = False) -> None:
        now = time.monotonic()
        if self.buffer and self.on_cuts is not None and (force or now - self.last_flush
                                                         >= self.flush_s):
            batch, self.buffer = self.buffer, []
            self.on_cuts(batch)
            self.last_flush = now

    def make(self):
        p = _import()
        harvester = self

        class Handler(p.Eventhdlr):
            def eventinit(self):
                self.model.catchEvent(p.SCIP_EVENTTYPE.ROWADDEDLP, self)
                self.model.catchEvent(p.SCIP_EVENTTYPE.BESTSOLFOUND, self)
                self.model.catchEvent(p.SCIP_EVENTTYPE.NODESOLVED, self)

            def eventexit(self):
                self.model.dropEvent(p.SCIP_EVENTTYPE.ROWADDEDLP, self)
                self.model.dropEvent(p.SCIP_EVENTTYPE.BESTSOLFOUND, self)
                self.model.dropEvent(p.SCIP_EVENTTYPE.NODESOLVED, self)

            def eventexec(self, event):
                et = event.getType()
                if et == p.SCIP_EVENTTYPE.ROWADDEDLP:
                    row = event.getRow()
                    if row.getOrigintype() == p.SCIP_ROWORIGINTYPE.SEPA and not row.isLocal():
                        harvester.add_row(row)
                elif et == p.SCIP_EVENTTYPE.BESTSOLFOUND and harvester.on_incumbent:
                    sol = self.model.getBestSol()
                    x = np.array([self.model.getSolVal(sol, v) for v in harvester.x_vars])
                    harvester.on_incumbent(x, float(self.model.getSolObjVal(sol)))
                harvester.flush()
                if harvester.should_stop is not None and not harvester.interrupted \
                        and harvester.should_stop():
                    harvester.interrupted = True
                    self.model.interruptSolve()

        return Handler()


def solve_scip(model: MilpModel, *, time_limit: float = math.inf, threads: int = 1,
               on_cuts: Callable[[list[RawCut]], None] | None = None,
               on_incumbent: Callable[[np.ndarray, float], None] | None = None,
               should_stop: Callable[[], bool] | None = None, flush_s: float = 0.5,
               node_limit: int | None = None, stop_dual: float | None = None,
               stop_primal: float | None = None,
               root_only: bool = False, verbose: bool = False) -> MipResult:
    """Solve ``model`` with SCIP, streaming harvested cuts to ``on_cuts`` (batches every
    ``flush_s``) and incumbents' inputs to ``on_incumbent``. ``should_stop`` is polled at every
    event; when true, the solve is interrupted. ``root_only`` stops after the root node (cuts
    only). ``stop_dual``/``stop_primal``: end the solve once the dual bound is at least / a
    solution at most this value (stop criteria only). No objective cutoff is set: it would be a dual reduction (see module doc)."""
    t0 = time.monotonic()
    scip, xs = build_scip(model, threads=threads, verbose=verbose)
    h = _Harvester(model, on_cuts, on_incumbent, should_stop, flush_s, t0)
    h.x_vars = xs[: model.layout.n_in]
    scip.includeEventhdlr(h.make(), "planecut_cuts", "harvest global separator rows")
    if np.isfinite(time_limit):
        scip.setParam("limits/time", max(0.1, float(time_limit) - (time.monotonic() - t0)))
    if stop_dual is not None:
        scip.setParam("limits/dual", float(stop_dual))
    if stop_primal is not None:
        scip.setParam("limits/primal", float(stop_primal))
    if root_only:
        scip.setParam("limits/nodes", 1)
    elif node_limit is not None:
        scip.setParam("limits/nodes", int(node_limit))
    # without the GIL, so that the worker's watcher thread runs during the solve
    (scip.optimizeNogil if hasattr(scip, "optimizeNogil") else scip.optimize)()
    h.flush(force=True)
    status = str(scip.getStatus())
    res = MipResult(status=status, seconds=time.monotonic() - t0, stats=h.stats)
    if h.interrupted:
        res.status = "interrupted"
    try:
        res.dual = float(scip.getDualbound())
    except Exception:  # pragma: no cover
        pass
    if scip.getNSols() > 0:
        sol = scip.getBestSol()
        res.primal = float(scip.getSolObjVal(sol))
        res.x = np.array([scip.getSolVal(sol, v) for v in xs[: model.layout.n_in]])
    if status == "infeasible":
        res.dual = math.inf
    return res


class ScipObjectives:
    """One SCIP model of a MILP's constraints, minimised for one objective after another.

    Building the model is the slow part of a short solve on an image network: pyscipopt takes
    about 0.55 s to enter the 200,000 coefficients of an mnist 256-wide net's first layer,
    more than half of a 1 s solve. Bound refinement minimises hundreds of objectives over the
    same constraints, so the model is built once and only the objective changes. Dual
    reductions stay on (``safe=False``): only the optimum's bound is wanted, no rows, and
    presolve is off."""

    def __init__(self, model: MilpModel, threads: int = 1) -> None:
        self.scip, self.vars = build_scip(model, threads=threads, safe=False)
        # presolve reruns at every objective (the transformed problem is freed) and took
        # 0.6-0.8 s on an mnist 256-wide net's second layer before the first bound came:
        # without it the same solves reach in 0.6 s what they reached in 1 s with it
        self.scip.setParam("presolving/maxrounds", 0)
        # only the dual bound is wanted: no primal heuristics, and fast separation. Measured on
        # six neurons of that layer: 0.4 s solves then end tighter than 0.6 s ones did with
        # SCIP's defaults (presolve off in both)
        self.p = _import()
        self.scip.setHeuristics(self.p.SCIP_PARAMSETTING.OFF)
        self.scip.setSeparating(self.p.SCIP_PARAMSETTING.FAST)
        self.no_stop = self.scip.getParam("limits/dual")  # SCIP's default: never

    def minimise(self, obj: np.ndarray, const: float, seconds: float,
                 stop_at: float | None = None) -> float:
        """A sound lower bound on ``min obj·v + const`` after at most ``seconds`` (+inf when
        infeasible, −inf when no bound yet). ``stop_at``: end once the bound reaches it."""
        scip, p = self.scip, self.p
        scip.freeTransform()
        nz = np.nonzero(obj)[0]
        expr = p.scip.Expr({p.scip.Term(self.vars[j]): float(obj[j]) for j in nz})
        scip.setObjective(expr, "minimize", clear=True)
        scip.setParam("limits/time", max(0.01, float(seconds)))
        scip.setParam("limits/dual",
                      self.no_stop if stop_at is None else float(stop_at - const))
        (scip.optimizeNogil if hasattr(scip, "optimizeNogil") else scip.optimize)()
        if str(scip.getStatus()) == "infeasible":
            return math.inf
        try:
            bound = float(scip.getDualbound())
        except Exception:  # pragma: no cover
            return -math.inf
        if abs(bound) >= scip.infinity():  # no bound yet (or an unbounded problem)
            return -math.inf if bound < 0 else math.inf
        return bound + const
