"""``planecut cuts MODEL SPEC``: run the cut worker on a property and look at what it produces.

For the first input region of the spec: intermediate bounds from alpha-CROWN (CROWN where the
network is too large for it), the MILP encoding, the cut worker for ``--time-limit`` seconds;
every validated cut is written to one ``.npz`` (format in :mod:`planecut.mip_cuts.cutset`), and
the command prints the cut counts over time, the time to the first cut, rejected cuts, and the
LP bound of each spec disjunct without and with the cuts (HiGHS) next to SCIP's MIP bounds.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np


@dataclass
class CutRun:
    """What one inspection run measured (also returned to Python callers and tests)."""

    n_vars: int
    n_binaries: int
    cuts: "object"  # CutSet of every validated cut
    first_cut_s: float | None
    timeline: list[tuple[float, int]] = field(default_factory=list)  # (seconds, cuts so far)
    rejected: int = 0
    lp_without: list[float] = field(default_factory=list)
    lp_with: list[float] = field(default_factory=list)
    mip: list[tuple[str, float, float]] = field(default_factory=list)  # (status, primal, dual)
    worker_error: str | None = None
    bound_method: str = ""


def region_encoding(model_path: str | Path, spec_path: str | Path, region: int = 0,
                    method: str = "alpha-crown"):
    """(graph, spec, encoding) of one input region, intermediate bounds from ``method``."""
    import torch

    from planecut.verifier.bounds import compute_bounds
    from planecut.verifier.graph import load_onnx
    from planecut.vnnlib.parse import check_dimensions, parse_spec

    from .encoding import encode_network

    spec = parse_spec(spec_path)
    graph = load_onnx(model_path)
    check_dimensions(spec, graph.num_inputs, graph.num_outputs)
    graph.to(dtype=torch.float64)
    r = spec.regions[region]
    xl = torch.as_tensor(r.lower, dtype=torch.float64)[None]
    xu = torch.as_tensor(r.upper, dtype=torch.float64)[None]
    C = torch.as_tensor(np.concatenate([np.atleast_2d(d.C) for d in r.disjuncts]),
                        dtype=torch.float64)
    try:
        br = compute_bounds(graph, xl, xu, C, method=method)
    except Exception:  # alpha-CROWN out of budget on a big net: CROWN is always available
        method = "crown"
        br = compute_bounds(graph, xl, xu, C, method=method)
    enc = encode_network(graph, r.lower, r.upper, br.intermediate)
    enc.meta["bound_method"] = method
    return graph, spec, enc


def run_cuts(model_path: str | Path, spec_path: str | Path, time_limit: float,
             log=print, samples: int = 2000) -> CutRun:
    from .backends.highs import solve_highs
    from .cutset import CutSet
    from .milp import ColumnLayout, build_milp
    from .worker import CutJob, CutWorker

    graph, spec, enc = region_encoding(model_path, spec_path)
    r = spec.regions[0]
    names = tuple(L.pre_name for L in enc.layers)
    shapes = tuple(L.shape for L in enc.layers)
    objectives = [(np.atleast_2d(d.C), np.asarray(d.d)) for d in r.disjuncts]
    models = [build_milp(enc, C, d) for C, d in objectives]
    run = CutRun(n_vars=models[0].n_vars, n_binaries=int(models[0].integer.sum()),
                 cuts=CutSet.empty(ColumnLayout(enc.n_in, tuple(enc.layer_sizes())),
                                   layer_names=names, layer_shapes=shapes),
                 first_cut_s=None, bound_method=enc.meta.get("bound_method", ""))
    log(f"MILP: {run.n_vars} variables ({run.n_binaries} binary, {enc.num_unstable} unstable "
        f"neurons), {models[0].n_rows} rows; bounds from {run.bound_method}")
    run.lp_without = [solve_highs(m, relax=True).objective for m in models]
    # the worker solves the hardest disjuncts first and skips those the LP already proves
    order = [i for i in np.argsort(run.lp_without) if not run.lp_without[i] > 0] or \
        [int(np.argmin(run.lp_without))]
    job = CutJob(enc, [objectives[i] for i in order], time_limit=time_limit,
                 layer_names=names, layer_shapes=shapes, samples=samples,
                 stop_when_decided=False)  # inspection: keep separating until the limit
    t0 = time.monotonic()
    worker = CutWorker().start(job)
    next_report = 1.0
    try:
        while time.monotonic() - t0 < time_limit + 2.0:
            for cs in worker.poll(timeout=0.2):
                run.cuts = run.cuts.concat(cs)
            now = time.monotonic() - t0
            if now >= next_report or worker.done:
                run.timeline.append((now, len(run.cuts)))
                next_report = now + 1.0
            if worker.done or worker.error:
                break
    finally:
        worker.stop()
    for cs in worker.poll():
        run.cuts = run.cuts.concat(cs)
    run.timeline.append((time.monotonic() - t0, len(run.cuts)))
    run.first_cut_s = worker.first_cut_s
    run.rejected = worker.cuts_rejected
    run.worker_error = worker.error
    verdicts = {order[k]: v for k, v in worker.verdicts.items()}
    for i, m in enumerate(models):
        if len(run.cuts):
            mc = m.with_rows(run.cuts.coeffs, np.full(len(run.cuts), -np.inf), run.cuts.rhs)
            run.lp_with.append(solve_highs(mc, relax=True).objective)
        else:
            run.lp_with.append(run.lp_without[i])
        v = verdicts.get(i)
        run.mip.append((f"{v.status} ({v.solver_status})", v.primal, v.dual) if v else
                       ("not run", math.nan, math.nan))
    return run


def add_cuts_parser(sub) -> None:
    c = sub.add_parser("cuts", help="run the MIP cut worker on a property and save its cuts",
                       description="Run SCIP on the MILP of MODEL over SPEC's first input "
                       "region, harvest and validate its cutting planes, write them to --out.")
    c.add_argument("model", help="ONNX model")
    c.add_argument("spec", help="VNN-LIB property")
    c.add_argument("--time-limit", type=float, default=30.0,
                   help="seconds of MIP solving (default 30)")
    c.add_argument("--out", type=Path, help="write the validated cuts to this .npz")
    c.add_argument("--samples", type=int, default=2000,
                   help="network executions every cut is checked against (default 2000)")


def cuts_main(args: argparse.Namespace) -> int:
    from planecut.errors import PlanecutError

    if args.time_limit <= 0:
        print("planecut: error: --time-limit must be positive", file=sys.stderr)
        return 2
    try:
        run = run_cuts(args.model, args.spec, args.time_limit,
                       log=lambda m: print(m, file=sys.stderr, flush=True),
                       samples=args.samples)
    except PlanecutError as exc:
        print(f"planecut: {exc}", file=sys.stderr)
        return 1
    except (ValueError, ImportError) as exc:
        print(f"planecut: error: {exc}", file=sys.stderr)
        return 1
    marks = {}
    end = run.timeline[-1][0] if run.timeline else 0.0
    for t, n in run.timeline:
        for m in (5, 15, 60):
            if t <= m and m <= end + 1.0:
                marks[m] = n
    print(f"cuts: {len(run.cuts)} validated, {run.rejected} rejected; first cut after "
          + (f"{run.first_cut_s:.2f}s" if run.first_cut_s is not None else "- (none)"))
    print("cuts by time: " + ", ".join([f"{m}s: {marks[m]}" for m in sorted(marks)] +
                                        [f"end ({end:.1f}s): {len(run.cuts)}"]))
    for i, (lp0, lp1, (st, pr, du)) in enumerate(zip(run.lp_without, run.lp_with, run.mip)):
        print(f"disjunct {i}: LP bound {lp0:.6g} -> {lp1:.6g} with cuts; MIP {st}: "
              f"bound {du:.6g}, best {pr:.6g}")
    if run.worker_error:
        print(f"planecut: cut worker: {run.worker_error.splitlines()[0]}", file=sys.stderr)
    if args.out:
        try:
            run.cuts.save_npz(args.out)
        except OSError as exc:
            print(f"planecut: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
            return 1
        print(f"wrote {args.out}")
    return 0
