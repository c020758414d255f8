"""The public Python API: ``verify`` one (model, property) pair within a time limit.

The driver reads top to bottom (attack, incomplete bounds, a last attack) and is the one place
that turns the parts' outcomes into a verdict, so the soundness rules live here:

* ``sat`` only with a counterexample that onnxruntime confirms on the original ONNX file;
* ``unsat`` only when, for every input region, every disjunct has a row whose lower bound is
  strictly above its threshold;
* bad input is ``error`` with a one-line cause; running out of time is ``timeout``.

Heavy modules (torch, onnx, onnxruntime) are imported inside functions so that ``planecut
--help`` and argument errors stay instant.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from planecut.errors import DeadlineExceeded, PlanecutError, check_deadline
from planecut.verifier.config import VerifierConfig
from planecut.verifier.result import Result

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from planecut.verifier.bounds.types import AlphaOptions
    from planecut.verifier.graph.ir import Graph
    from planecut.vnnlib.spec import Spec

Log = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


def resolve_device(name: str) -> "torch.device":
    """``auto`` picks CUDA when present; asking for CUDA without it is a config error."""
    import torch

    from planecut.errors import ConfigError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} requested but CUDA is not available")
    return torch.device(name)


def verify(model_path: str | Path, spec_path: str | Path, timeout: float = 60.0,
           config: VerifierConfig | None = None, log: Log | None = None) -> Result:
    """Verify the VNN-LIB property ``spec_path`` on the ONNX model ``model_path``.

    Returns a :class:`Result` whose verdict is ``sat`` (with a confirmed counterexample),
    ``unsat``, ``unknown`` (bounds too loose, no counterexample found), ``timeout`` or
    ``error``. Never raises for bad input; the answer comes within ``timeout`` seconds plus
    well under a second.
    """
    t0 = time.monotonic()
    deadline = t0 + timeout
    config = config or VerifierConfig()
    log = log or _quiet
    timings: dict[str, float] = {}
    spec = None
    try:
        run = _prepare(Path(model_path), Path(spec_path), config, deadline, timings, log)
        spec = run.spec
        result = run.execute()
    except PlanecutError as exc:
        result = Result("error", message=str(exc))
    except DeadlineExceeded:
        result = Result("timeout", spec=spec)
    except MemoryError:
        result = Result("unknown", message="out of memory", spec=spec)
    result.seconds = time.monotonic() - t0
    result.timings = {**timings, **result.timings}
    if result.spec is None:
        result.spec = spec
    return result


def _prepare(model_path: Path, spec_path: Path, config: VerifierConfig, deadline: float,
             timings: dict[str, float], log: Log) -> "_InstanceRun":
    """Parse, load and cross-check the inputs: every input error surfaces here, before any
    bounding work starts."""
    from planecut.vnnlib.parse import check_dimensions, parse_spec

    t = time.monotonic()
    spec = parse_spec(spec_path)
    timings["parse"] = time.monotonic() - t
    log(f"spec: {len(spec.regions)} input region(s), {spec.num_disjuncts} disjunct(s), "
        f"{spec.num_inputs} inputs, {spec.num_outputs} outputs (VNN-LIB {spec.version})")
    check_deadline(deadline)

    t = time.monotonic()
    import torch

    from planecut.verifier.graph import describe, load_onnx

    timings["import"] = time.monotonic() - t
    t = time.monotonic()
    graph = load_onnx(model_path)
    check_dimensions(spec, graph.num_inputs, graph.num_outputs)
    if config.preset == "auto":
        from planecut.verifier.config import apply_preset, auto_preset
        from planecut.verifier.features import model_features

        features = model_features(graph, spec)
        log(f"features: {features.summary()}")
        choice = auto_preset(features, config.bab.input_split_max_dim)
        config = apply_preset(config, choice.name, choice.adjust)
        log(f"preset: {choice}")
    elif config.preset != "none":
        from planecut.verifier.config import apply_preset

        config = apply_preset(config, config.preset)
        log(f"preset: {config.preset}")
    device = resolve_device(config.device)
    dtype = torch.float64 if config.dtype == "float64" else torch.float32
    graph.to(device=device, dtype=dtype)
    if device.type == "cpu":
        torch.set_num_threads(_cpu_threads(graph, config.threads))
    timings["load"] = time.monotonic() - t
    log(f"model: {describe(graph)} on {device}")
    check_deadline(deadline)
    torch.manual_seed(config.seed)
    return _InstanceRun(model_path, spec, graph, config, deadline, device, dtype, log)


@dataclass
class _InstanceRun:
    """One verification in progress (the parts' state between phases)."""

    model_path: Path
    spec: "Spec"
    graph: "Graph"
    config: VerifierConfig
    deadline: float
    device: "torch.device"
    dtype: "torch.dtype"
    log: Log

    def __post_init__(self) -> None:
        from planecut.verifier.spec_tensors import SpecTensors

        self.tensors = SpecTensors.from_spec(self.spec, device=self.device, dtype=self.dtype) \
            if self.spec.regions else None
        self.timings: dict[str, float] = {}
        self.stats: dict[str, float | int | str] = {}
        self._checker = None
        self._root: dict[int, dict] = {}  # region -> intermediate bounds of the last method
        self._root_alphas: dict[int, dict] = {}  # region -> its alpha-CROWN slopes (bounded alone)
        self._attack_round = 0

    # ------------------------------------------------------------------ phases
    def execute(self) -> Result:
        cfg = self.config
        if not self.spec.regions:
            # every case of the counterexample region is empty: nothing can violate it
            self.log("the counterexample region is empty: the property holds")
            return self._result("unsat")
        if cfg.attack.enabled:
            found = self._attack(cfg.attack.restarts, cfg.attack.steps)
            if found is not None:
                return found
        unproven = self._bound()
        if not unproven:
            return self._result("unsat")
        if cfg.bab.enabled:
            outcome = self._branch_and_bound(unproven)
            if outcome is not None:
                return outcome
        if cfg.attack.enabled and cfg.attack.rounds > 1:
            # bounds failed: a harder attack on the regions left, before giving up
            found = self._attack(cfg.attack.restarts * 4, cfg.attack.steps * 2,
                                 regions=unproven)
            if found is not None:
                return found
        return self._result("unknown")

    def _result(self, verdict: str, counterexample=None) -> Result:
        return Result(verdict, counterexample=counterexample, spec=self.spec,
                      timings=self.timings, stats=self.stats)

    def _add_time(self, phase: str, seconds: float) -> None:
        self.timings[phase] = self.timings.get(phase, 0.0) + seconds

    @property
    def checker(self):
        if self._checker is None:
            from planecut.verifier.attack.check import OnnxChecker

            g = self.graph
            self._checker = OnnxChecker(self.model_path, g.input_name, g.onnx_input_shape,
                                        g.onnx_input_dtype)
        return self._checker

    def _attack(self, restarts: int, steps: int, regions: list[int] | None = None
                ) -> Result | None:
        """One PGD round; the attack stops at the first candidate onnxruntime confirms."""
        import torch

        from planecut.verifier.attack.pgd import pgd_attack
        from planecut.verifier.spec_tensors import SpecTensors

        t = time.monotonic()
        checked = self.timings.get("check", 0.0)
        st = self.tensors if regions is None else SpecTensors.from_spec(
            self.spec, regions, device=self.device, dtype=self.dtype)
        gen = torch.Generator().manual_seed(self.config.attack.seed + self._attack_round)
        self._attack_round += 1
        # keep one round's batch moderate: restarts x regions forward passes per step
        restarts = max(1, min(restarts, 4096 // max(1, st.num_regions)))
        try:
            out = pgd_attack(self.graph, st, restarts=restarts, steps=steps,
                             step_size=self.config.attack.step_size, generator=gen,
                             deadline=self.deadline, confirm=self._confirm)
            surrogate = self._logit_graph()
            if out.counterexample is None and surrogate is not None:
                # a saturated softmax passes no gradient: search on its logits instead
                out = pgd_attack(surrogate, st, restarts=restarts, steps=steps,
                                 step_size=self.config.attack.step_size, generator=gen,
                                 deadline=self.deadline, confirm=self._confirm)
                self.log("attack: searched the logits before the final softmax too")
        finally:  # onnxruntime's share is counted under "check"
            self._add_time("attack", time.monotonic() - t
                           - (self.timings.get("check", 0.0) - checked))
        best = out.best_margin
        prev = self.stats.get("attack_best_margin")
        self.stats["attack_best_margin"] = best if prev is None else min(best, float(prev))
        self.log(f"attack round {self._attack_round}: {restarts} restart(s) x "
                 f"{st.num_regions} region(s), {out.steps} steps, best margin {best:.4g}"
                 + (f", {out.rejected} candidate(s) rejected by onnxruntime"
                    if out.rejected else ""))
        cex = out.counterexample
        return None if cex is None else self._result("sat", cex)

    def _logit_graph(self):
        """The network cut before its final softmax, if it has one (see attack.surrogate)."""
        if not hasattr(self, "_logits"):
            from planecut.verifier.attack.surrogate import logit_graph

            self._logits = logit_graph(self.graph)
        return self._logits

    def _confirm(self, x: "torch.Tensor", regions: "torch.Tensor"):
        """Check candidate inputs (N, n_in) of spec regions (N,) with onnxruntime."""
        t = time.monotonic()
        try:
            for i in range(min(int(x.shape[0]), 16)):
                check_deadline(self.deadline)
                cex = self.checker.confirm(self.spec, x[i].double().cpu().numpy(),
                                           int(regions[i]))
                if cex is not None:
                    self.log("counterexample confirmed with onnxruntime")
                    return cex
        finally:
            self._add_time("check", time.monotonic() - t)
        return None

    def _progress(self, p) -> None:
        self.log(f"bab: {p.domains_left} domain(s) left, worst bound {p.worst_margin:.4g}, "
                 f"{p.domains_visited} visited, {p.domains_per_second:.0f} domains/s")

    def _branch_and_bound(self, unproven: list[int]) -> Result | None:
        """Complete search on the regions incomplete bounds left; None if it gave up."""
        from planecut.verifier.graph.ir import Relu
        from planecut.verifier.spec_tensors import SpecTensors

        cfg = self.config.bab
        st = SpecTensors.from_spec(self.spec, unproven, device=self.device, dtype=self.dtype)
        mode = cfg.mode
        if mode == "auto":
            mode = "input" if self.graph.num_inputs <= cfg.input_split_max_dim else "activation"
        nonlinear = [n for n in self.graph.nodes if not hasattr(n, "linear")]
        if mode == "activation" and not all(isinstance(n, Relu) for n in nonlinear):
            kinds = sorted({n.kind for n in nonlinear if not isinstance(n, Relu)})
            self.log(f"no activation split for {', '.join(kinds)} nodes: search skipped")
            return self._bound_longer(unproven)
        t = time.monotonic()
        self.log(f"branch and bound ({mode} split) on {len(unproven)} region(s)")
        if mode == "input":
            out = self._input_split(st, cfg)
        else:
            from planecut.verifier.bab.activation_split import activation_split_bab

            root = {name: (torch_cat([self._root[r][name][0] for r in unproven]),
                           torch_cat([self._root[r][name][1] for r in unproven]))
                    for name in self._root[unproven[0]]}
            source = self._cut_source(unproven, root)
            try:
                out = activation_split_bab(self.graph, st, root, config=cfg,
                                           deadline=self.deadline, confirm=self._confirm,
                                           progress=self._progress,
                                           margin=self.config.bounds.proof_margin,
                                           cut_source=source,
                                           root_alphas=self._root_alphas.get(unproven[0])
                                           if len(unproven) == 1 else None,
                                           cut_refresh_seconds=self.config.cuts.refresh_seconds,
                                           refine_pause_after=self.config.cuts.refine_pause_after)
            finally:
                if source is not None:  # past the deadline there is no time for niceties
                    source.stop(grace=min(0.8, max(0.05, self.deadline - time.monotonic())))
                    self._cut_stats(source)
        self._add_time("bab", time.monotonic() - t)
        self.stats.update(bab_mode=mode, bab_domains=out.domains_visited,
                          bab_domains_per_second=out.domains_per_second,
                          bab_bound_seconds=out.bound_seconds,
                          bab_worst_margin=out.worst_margin,
                          bab_rows_dropped=out.rows_dropped, bab_reroots=out.reroots)
        if out.row_lower is not None:
            self.stats["bab_open_row_lower"] = out.row_lower
        self.log(f"bab: {out.verdict} after {out.domains_visited} domain(s), "
                 f"{out.domains_per_second:.0f} domains/s"
                 f"{f', {out.reroots} restart(s) from MIP-refined roots' if out.reroots else ''}"
                 f"{' (' + out.message + ')' if out.message else ''}")
        if out.verdict == "sat":
            return self._result("sat", out.counterexample)
        if out.verdict in ("unsat", "timeout"):
            return self._result(out.verdict)
        return None

    def _bound_longer(self, unproven: list[int]) -> Result | None:
        """Where no complete search applies (sigmoid/tanh nets), spend the time left on
        alpha-CROWN runs of doubling length, each warm-started from the last one's slopes and
        intersected with its bounds; ``unsat`` once every region is proven, else None. Before
        the tangent points could leave ``[l, u]``, this proved ERAN sigmoid idx 6981 (root
        margin −1.33, proven after 200 iterations at 42 s); the root now proves it alone, and on
        that net nothing is left for these runs to prove (measured at 60 s)."""
        from planecut.verifier.bounds import compute_bounds
        from planecut.verifier.spec_tensors import SpecTensors

        bcfg = self.config.bounds
        iterations = max(1, bcfg.alpha_iterations)
        specs = {r: SpecTensors.from_spec(self.spec, [r], device=self.device, dtype=self.dtype)
                 for r in unproven}
        per_iteration = self.timings.get("alpha-crown", 0.0) / iterations
        reserve = LAST_ATTACK_RESERVE_S if self.config.attack.enabled else 0.0
        t = time.monotonic()
        left = list(unproven)
        try:
            while left and self.deadline - time.monotonic() > reserve + 1.0:
                # twice the last run, or what fits in the time left (a run cut short by the
                # deadline yields nothing)
                fits = (self.deadline - reserve - time.monotonic()) / max(1e-3, per_iteration)
                iterations = int(min(2 * iterations, 0.9 * fits))
                if iterations < bcfg.alpha_iterations:
                    break
                t_round = time.monotonic()
                alpha = self._alpha_options(iterations)
                still, worsts = [], []
                for r in left:
                    st = specs[r]
                    res = compute_bounds(self.graph, st.lower, st.upper, st.C, "alpha-crown",
                                         alpha=alpha, deadline=self.deadline - reserve,
                                         alpha_init=self._root_alphas.get(r),
                                         known_bounds=self._root.get(r))
                    self._root_alphas[r] = res.alphas
                    self._root[r] = dict(res.intermediate)
                    worsts.append(float(st.disjunct_max(res.lower - st.d).min()))
                    if not bool(st.proven_disjuncts(res.lower, bcfg.proof_margin).all()):
                        still.append(r)
                per_iteration = (time.monotonic() - t_round) / iterations
                self.stats["alpha-crown_worst_lower_margin"] = min(worsts)
                self.log(f"alpha-crown, {iterations} iterations: "
                         f"{len(left) - len(still)}/{len(left)} region(s) proven, worst margin "
                         f"{min(worsts):.4g}")
                left = still
        except DeadlineExceeded:
            pass
        finally:
            self._add_time("alpha-crown-longer", time.monotonic() - t)
        return self._result("unsat") if not left else None

    def _input_split(self, st, cfg):
        """Input-split BaB; ``input_branching: portfolio`` alternates the two branching rules
        in restarts of doubling length (sb 2 s, lookahead 2 s, sb 4 s, ...): each rule solves
        instances the other one cannot (measured on ACAS Xu: sb proves prop 3 and 5 within a
        second where lookahead stalls; lookahead proves prop 1 on nets 2_2 and 5_5 in under a
        second where sb needs 30 s or more), and the restarts cost at most about twice the
        better rule's time."""
        import dataclasses

        from planecut.verifier.bab.input_split import input_split_bab

        def run(c, deadline):
            return input_split_bab(self.graph, st, config=c, deadline=deadline,
                                   confirm=self._confirm, progress=self._progress,
                                   margin=self.config.bounds.proof_margin)

        if cfg.input_branching != "portfolio":
            return run(cfg, self.deadline)
        rules = [dataclasses.replace(cfg, input_branching=b) for b in ("sb", "lookahead")]
        slice_s, i, out = 2.0, 0, None
        total_domains, t0 = 0, time.monotonic()
        while time.monotonic() < self.deadline:
            end = min(self.deadline, time.monotonic() + slice_s)
            out = run(rules[i % 2], end)
            total_domains += out.domains_visited
            if out.verdict in ("sat", "unsat"):
                break
            i += 1
            if i % 2 == 0:
                slice_s *= 2
        if out is not None:
            out.domains_visited = total_domains
            out.seconds = time.monotonic() - t0
        return out

    def _cut_source(self, unproven: list[int], root: dict):
        """The MIP cut worker for this search, or None (``cuts.mode``; ``auto``: one region of
        a ReLU network with unstable neurons at the root, on a machine with 2+ cores)."""
        import os

        ccfg = self.config.cuts
        if ccfg.mode == "off" or len(unproven) != 1:
            if ccfg.mode == "mip" and len(unproven) != 1:
                self.log("cuts: the MIP worker handles one input region; not started")
            return None
        unstable = sum(int(((lo < 0) & (hi > 0)).sum()) for lo, hi in root.values())
        from planecut.verifier.graph.ir import Add
        residual = any(isinstance(n, Add) and len(n.inputs) > 1 for n in self.graph.nodes)
        if ccfg.mode == "auto" and (residual or unstable < ccfg.auto_min_unstable
                                    or (os.cpu_count() or 1) < 2
                                    or self.deadline - time.monotonic() < ccfg.auto_min_seconds):
            return None
        import numpy as np

        from planecut.verifier.bab.cut_source import CutSource

        region = self.spec.regions[unproven[0]]
        disjuncts = [(np.atleast_2d(dj.C), np.asarray(dj.d)) for dj in region.disjuncts]
        seconds = max(0.5, self.deadline - time.monotonic())
        source = CutSource(self.graph, self.tensors.lower, max_cuts=ccfg.max_cuts)
        # MIP bound refinement pays on fully connected nets (the reference's "bab-refine");
        # a conv layer's MILP is too large for solves of a second
        from planecut.verifier.graph.ir import Conv
        dense = not any(isinstance(n, Conv) for n in self.graph.nodes)
        refine_s = ccfg.refine_fraction * seconds if dense else 0.0
        try:
            source.start(region.lower, region.upper, root, disjuncts, seconds, ccfg.samples,
                         refine_s=refine_s, refine_solve_s=ccfg.refine_solve_seconds,
                         refine_threads=ccfg.refine_threads or (os.cpu_count() or 1))
        except Exception as exc:  # the search goes on without cuts
            self.log(f"cuts: could not start the MIP worker ({type(exc).__name__}: {exc})")
            return None
        self.log(f"cuts: MIP worker started (SCIP, {unstable} unstable neurons at the root)")
        return source

    def _cut_stats(self, source) -> None:
        s = source.stats
        self.stats.update(cuts_received=s.received, cuts_used=source.count,
                          cuts_rejected=s.rejected, cuts_dropped=s.dropped,
                          cuts_first_s=-1.0 if s.first_cut_s is None else s.first_cut_s,
                          cuts_refreshes=s.refreshes, cuts_refresh_seconds=s.refresh_seconds,
                          mip_status=s.mip_status or "unknown",
                          refined_neurons=s.refined_neurons,
                          refined_improved=s.refined_improved)
        if s.root_margin is not None:
            self.stats["cuts_root_margin"] = s.root_margin
        self.log(f"cuts: {s.received} received, {source.count} used, {s.rejected} rejected, "
                 f"first after {s.first_cut_s if s.first_cut_s is not None else float('nan'):.1f}s, "
                 f"MIP {s.mip_status or 'undecided'}")

    def _alpha_options(self, iterations: int) -> "AlphaOptions":
        """alpha-CROWN settings from ``config.bounds`` with ``iterations`` steps."""
        from planecut.verifier.bounds.types import AlphaOptions

        bcfg = self.config.bounds
        return AlphaOptions(iterations=iterations, lr=bcfg.alpha_lr, lr_line=bcfg.alpha_lr_line,
                            lr_decay=bcfg.alpha_lr_decay,
                            early_stop_patience=bcfg.alpha_early_stop,
                            optimise_intermediate=bcfg.optimise_intermediate,
                            intermediate_objective=self._intermediate_objective())

    def _intermediate_objective(self) -> str:
        choice = self.config.bounds.intermediate_objective
        if choice != "auto":
            return choice
        from planecut.verifier.graph.ir import Sigmoid, Tanh
        s_shaped = any(isinstance(n, (Sigmoid, Tanh)) for n in self.graph.nodes)
        return "layerwise" if s_shaped else "joint"

    def _bound(self) -> list[int]:
        """Incomplete bounds, cheapest method first; returns the regions left unproven."""
        from planecut.verifier.bounds import compute_bounds
        from planecut.verifier.spec_tensors import SpecTensors

        bcfg = self.config.bounds
        alpha = self._alpha_options(bcfg.alpha_iterations)
        unproven = list(range(len(self.spec.regions)))
        for method in bcfg.methods:
            if not unproven:
                break
            t = time.monotonic()
            still: list[int] = []
            chunk = max(1, bcfg.region_batch)
            i = 0
            while i < len(unproven):
                part = unproven[i:i + chunk]
                st = SpecTensors.from_spec(self.spec, part, device=self.device, dtype=self.dtype)
                try:
                    res = compute_bounds(self.graph, st.lower, st.upper, st.C, method=method,
                                         alpha=alpha, deadline=self.deadline)
                except RuntimeError as exc:  # CUDA out of memory: halve the batch, go on
                    if "out of memory" not in str(exc).lower() or chunk == 1:
                        raise
                    chunk = max(1, chunk // 2)
                    self.log(f"out of memory: bounding {chunk} region(s) at a time")
                    _empty_cache()
                    continue
                for j, r in enumerate(part):  # root bounds for branch and bound
                    if len(part) == 1 and res.alphas:
                        self._root_alphas[r] = res.alphas
                    self._root[r] = {k: (lo[j:j + 1], hi[j:j + 1])
                                     for k, (lo, hi) in res.intermediate.items()}
                proven = st.proven_disjuncts(res.lower, bcfg.proof_margin)
                done = proven.all(dim=1)
                still.extend(r for r, ok in zip(part, done.tolist()) if not ok)
                # best proof margin per region (> 0 proves it); the worst one is reported
                worst = float(st.disjunct_max(res.lower - st.d).min())
                key = f"{method}_worst_lower_margin"
                self.stats[key] = min(worst, float(self.stats.get(key, worst)))
                i += len(part)
            self._add_time(method, time.monotonic() - t)
            self.log(f"{method}: {len(unproven) - len(still)}/{len(unproven)} region(s) "
                     f"proven ({time.monotonic() - t:.2f}s)")
            unproven = still
        self.stats["regions_unproven"] = len(unproven)
        self.stats["regions"] = len(self.spec.regions)
        return unproven


SMALL_NET_PARAMETERS = 1_000_000
#: seconds kept for the last attack round when bounds alone keep going until the deadline
LAST_ATTACK_RESERVE_S = 2.0


def _cpu_threads(graph: "Graph", requested: int) -> int:
    import os

    if requested > 0:
        return requested
    params = sum(t.numel() for n in graph.nodes for t in n.tensors().values())
    return 1 if params < SMALL_NET_PARAMETERS else max(1, os.cpu_count() or 1)


def torch_cat(tensors: list) -> "torch.Tensor":
    import torch

    return torch.cat(tensors, dim=0)


def _empty_cache() -> None:
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()
