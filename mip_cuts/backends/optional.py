"""Optional MILP backends, for users who have them: Gurobi (gurobipy) and OR-Tools.

They solve a :class:`~planecut.mip_cuts.milp.MilpModel` (a full MIP solve is a complete verifier
for small networks) but are *not* cut sources: neither exposes the cuts it separates. gurobipy's
pip build carries a size-limited licence (2000 variables and rows) unless a full licence is
installed; OR-Tools' linear solver wrapper drives its bundled SCIP or CBC.
"""

from __future__ import annotations

import math
import time

import numpy as np

from ..milp import MilpModel
from .highs import HighsResult

MipResult = HighsResult  # status, objective, bound, x, seconds: the same fields


def solve_gurobi(model: MilpModel, *, time_limit: float = math.inf, threads: int = 1
                 ) -> MipResult:
    """Solve with Gurobi; ``ImportError`` without gurobipy, ``RuntimeError`` when the model is
    beyond the installed licence."""
    try:
        import gurobipy as gp
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("the Gurobi backend needs gurobipy (pip install gurobipy)") from e
    t0 = time.monotonic()
    env = gp.Env(params={"OutputFlag": 0})
    m = gp.Model(env=env)
    m.Params.Threads = int(threads)
    if np.isfinite(time_limit):
        m.Params.TimeLimit = float(time_limit)
    vtype = [gp.GRB.INTEGER if i else gp.GRB.CONTINUOUS for i in model.integer]
    x = m.addMVar(model.n_vars, lb=np.where(np.isfinite(model.lb), model.lb, -gp.GRB.INFINITY),
                  ub=np.where(np.isfinite(model.ub), model.ub, gp.GRB.INFINITY),
                  vtype=vtype)
    m.setObjective(model.obj @ x + float(model.obj_const), gp.GRB.MINIMIZE)
    A = model.A.tocsr()
    lo, hi = model.row_lo, model.row_hi
    fin_hi, fin_lo = np.isfinite(hi), np.isfinite(lo)
    eq = fin_hi & fin_lo & (lo == hi)
    if eq.any():
        m.addConstr(A[eq] @ x == hi[eq])
    up = fin_hi & ~eq
    if up.any():
        m.addConstr(A[up] @ x <= hi[up])
    dn = fin_lo & ~eq
    if dn.any():
        m.addConstr(A[dn] @ x >= lo[dn])
    try:
        m.optimize()
    except gp.GurobiError as e:
        raise RuntimeError(f"Gurobi: {e}") from e
    res = MipResult(status={gp.GRB.OPTIMAL: "optimal", gp.GRB.INFEASIBLE: "infeasible",
                            gp.GRB.TIME_LIMIT: "time limit reached"}.get(m.Status,
                                                                         f"status {m.Status}"),
                    seconds=time.monotonic() - t0)
    if m.SolCount > 0:
        res.objective = float(m.ObjVal)
        res.x = np.asarray(x.X, dtype=np.float64)
    if res.status == "optimal":
        res.bound = float(m.ObjBound)
    elif res.status == "infeasible":
        res.bound = math.inf
    else:
        try:
            res.bound = float(m.ObjBound)
        except (AttributeError, gp.GurobiError):  # pragma: no cover
            pass
    m.dispose()
    env.dispose()
    return res


def solve_ortools(model: MilpModel, *, time_limit: float = math.inf, solver: str = "SCIP"
                  ) -> MipResult:
    """Solve with OR-Tools' linear solver wrapper (``solver``: SCIP, CBC, ...)."""
    try:
        from ortools.linear_solver import pywraplp
    except ImportError as e:  # pragma: no cover - depends on the install
        raise ImportError("the OR-Tools backend needs ortools (pip install ortools)") from e
    t0 = time.monotonic()
    s = pywraplp.Solver.CreateSolver(solver)
    if s is None:  # pragma: no cover - solver not compiled in
        raise RuntimeError(f"OR-Tools has no {solver} solver in this build")
    inf = s.infinity()
    xs = [s.IntVar(float(lo) if np.isfinite(lo) else -inf, float(hi) if np.isfinite(hi) else inf,
                   f"v{j}") if integer else
          s.NumVar(float(lo) if np.isfinite(lo) else -inf, float(hi) if np.isfinite(hi) else inf,
                   f"v{j}")
          for j, (lo, hi, integer) in enumerate(zip(model.lb, model.ub, model.integer))]
    A = model.A.tocsr()
    for i in range(model.n_rows):
        lo, hi = model.row_lo[i], model.row_hi[i]
        c = s.Constraint(float(lo) if np.isfinite(lo) else -inf,
                         float(hi) if np.isfinite(hi) else inf)
        for j, v in zip(A.indices[A.indptr[i]:A.indptr[i + 1]],
                        A.data[A.indptr[i]:A.indptr[i + 1]]):
            c.SetCoefficient(xs[j], float(v))
    obj = s.Objective()
    for j, v in enumerate(model.obj):
        if v:
            obj.SetCoefficient(xs[j], float(v))
    obj.SetOffset(float(model.obj_const))
    obj.SetMinimization()
    if np.isfinite(time_limit):
        s.SetTimeLimit(int(max(1, time_limit * 1000)))
    st = s.Solve()
    names = {pywraplp.Solver.OPTIMAL: "optimal", pywraplp.Solver.INFEASIBLE: "infeasible",
             pywraplp.Solver.FEASIBLE: "time limit reached"}
    res = MipResult(status=names.get(st, f"status {st}"), seconds=time.monotonic() - t0)
    if st in (pywraplp.Solver.OPTIMAL, pywraplp.Solver.FEASIBLE):
        res.objective = float(obj.Value())
        res.x = np.array([v.solution_value() for v in xs])
        res.bound = float(obj.BestBound()) if st == pywraplp.Solver.FEASIBLE else res.objective
    elif st == pywraplp.Solver.INFEASIBLE:
        res.bound = math.inf
    return res
