"""The verifier's side of the MIP cut worker: start it, drain it, hand its cuts to the search.

:class:`CutSource` starts a :class:`planecut.mip_cuts.worker.CutWorker` on one input region
with the root's intermediate bounds (the worker encodes the network itself, so the search does
not wait for it), and between branch-and-bound rounds :meth:`CutSource.poll` merges the new
validated cuts without blocking. It keeps at most ``max_cuts`` (the search tells it which
matter: :meth:`CutSource.keep`), exposes them as GCP-CROWN :class:`CutTerms`, and reports what
the MIP itself decided: every disjunct proven (the property holds on the region), or an input
where the MIP found a violation (a candidate the verifier confirms with onnxruntime).

The worker may be slow, crash or be killed: the search goes on without cuts. :meth:`stop`
ends it (and its solver) — called when the verdict is reached, at the deadline, and on errors.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Mapping

import numpy as np
import torch

from planecut.verifier.bounds.gcp_crown import CutTerms, cut_terms
from planecut.verifier.graph.ir import Graph

Tensor = torch.Tensor
#: networks with at most this many ReLU neurons are encoded in the verifier's process
PARENT_ENCODE_NEURONS = 4096


@dataclass
class CutStats:
    received: int = 0
    rejected: int = 0
    dropped: int = 0  # kept out by the cap (smallest multipliers)
    first_cut_s: float | None = None
    refreshes: int = 0  # root re-optimisations with a new cut set
    refresh_seconds: float = 0.0  # ... and the time they took
    mip_status: str = ""  # proved / candidate / unknown / error
    root_margin: float | None = None  # root proof margin with the cuts (> 0 proves)
    refined_neurons: int = 0  # intermediate neurons the worker's MIP tightened ...
    refined_improved: int = 0  # ... and those whose interval shrank


@dataclass
class CutSource:
    """Parent-side state of the cut worker during one search (see module doc)."""

    graph: Graph
    like: Tensor
    max_cuts: int = 1000
    stats: CutStats = field(default_factory=CutStats)

    def __post_init__(self) -> None:
        self._worker = None
        self._cuts = None  # CutSet
        self._terms: CutTerms | None = None
        self._objectives = 0
        self._t0 = time.monotonic()
        self._seen_incumbents = 0
        self._seen_refined = 0
        self._refine_until = 0.0
        self._seen_verdicts: set[int] = set()

    # ------------------------------------------------------------------ lifetime
    def start(self, x_lower: np.ndarray, x_upper: np.ndarray,
              root: Mapping[str, tuple[Tensor, Tensor]],
              disjuncts: list[tuple[np.ndarray, np.ndarray]], seconds: float,
              samples: int = 2000, refine_s: float = 0.0, refine_solve_s: float = 0.4,
              refine_threads: int = 1) -> "CutSource":
        """Start the worker on the box with root bounds ``{relu name: (lo, hi)}`` (one region)
        and the spec's disjuncts ``(C, d)`` (solved in this order), for ``seconds`` of
        solving, the first ``refine_s`` of them tightening the root's intermediate bounds
        (:meth:`refined`) with ``refine_threads`` SCIP solves at once."""
        from planecut.mip_cuts.worker import CutJob, CutWorker

        inter = {k: (lo.detach().double().cpu().numpy().reshape(-1),
                     hi.detach().double().cpu().numpy().reshape(-1)) for k, (lo, hi)
                 in root.items()}
        graph = self.graph
        cpu = graph.converted("cpu")
        xl = np.asarray(x_lower, dtype=np.float64).reshape(-1)
        xu = np.asarray(x_upper, dtype=np.float64).reshape(-1)
        objectives = [(np.atleast_2d(C), np.asarray(d)) for C, d in disjuncts]
        if sum(r.size for r in graph.relu_nodes) <= PARENT_ENCODE_NEURONS:
            # small (fully connected) nets: encoding here takes a fraction of a second, while
            # the worker would first spend seconds importing torch to do it
            from planecut.mip_cuts.encoding import encode_network

            enc = encode_network(cpu, xl, xu, inter)
            job = CutJob(enc, objectives, time_limit=max(0.5, seconds), samples=samples,
                         layer_names=tuple(L.pre_name for L in enc.layers),
                         layer_shapes=tuple(L.shape for L in enc.layers),
                         refine_s=refine_s, refine_solve_s=refine_solve_s,
                         refine_threads=refine_threads)
        else:
            job = CutJob(None, objectives, time_limit=max(0.5, seconds), samples=samples,
                         graph=cpu, x_lower=xl, x_upper=xu, intermediate=inter,
                         refine_s=refine_s, refine_solve_s=refine_solve_s,
                         refine_threads=refine_threads)
        self._objectives = len(disjuncts)
        self._t0 = time.monotonic()
        self._refine_until = self._t0 + refine_s if refine_s > 0 else self._t0
        self._worker = CutWorker().start(job)
        return self

    def stop(self, grace: float = 0.8) -> None:
        """End the worker: ``grace`` seconds for a clean exit, then it is terminated."""
        if self._worker is not None:
            self._worker.stop(grace)

    # ------------------------------------------------------------------ between rounds
    def poll(self) -> bool:
        """Merge new cuts (never blocks); True when the cut set changed."""
        w = self._worker
        if w is None:
            return False
        try:
            batches = w.poll()
        except Exception as exc:  # a broken queue must not stop the search
            self.stats.mip_status = f"error: {exc}"
            return False
        self.stats.rejected = w.cuts_rejected
        if w.error and not self.stats.mip_status.startswith("error"):
            self.stats.mip_status = "error: " + w.error.splitlines()[0]
        if not batches:
            return False
        for cs in batches:
            self.stats.received += len(cs)
            self._cuts = cs if self._cuts is None else self._cuts.concat(cs)
        if self.stats.first_cut_s is None:
            self.stats.first_cut_s = time.monotonic() - self._t0
        self._terms = cut_terms(self._cuts, self.graph, self.like)
        return True

    @property
    def terms(self) -> CutTerms | None:
        return self._terms

    @property
    def count(self) -> int:
        return 0 if self._cuts is None else len(self._cuts)

    def keep(self, idx: Tensor) -> None:
        """Keep only the cuts ``idx`` (in this order): those the search found useful."""
        if self._cuts is None:
            return
        keep = idx.detach().cpu().numpy()
        self.stats.dropped += self.count - len(keep)
        self._cuts = self._cuts.take(keep)
        self._terms = cut_terms(self._cuts, self.graph, self.like) if len(keep) else None

    def proved(self) -> bool:
        """The MIP proved every disjunct (the property holds on the region)."""
        w = self._worker
        if w is None or self._objectives == 0:
            return False
        ok = len(w.verdicts) == self._objectives and \
            all(v.status == "proved" for v in w.verdicts.values())
        if ok:
            self.stats.mip_status = "proved"
        return ok

    def refining(self) -> bool:
        """The worker is still refining bounds (within its refinement time, alive). Read
        after :meth:`poll`."""
        w = self._worker
        return w is not None and not w.refine_finished and not w.done and w.error is None \
            and time.monotonic() < self._refine_until

    def layer_finished(self) -> bool:
        """A layer's final refined bounds arrived and were not handed out yet. Read after
        :meth:`poll`."""
        w = self._worker
        return w is not None and any(rb.final for rb in w.refined[self._seen_refined:])

    def refined(self) -> list:
        """Root intermediate bounds the worker's MIP tightened, not handed out before
        (:class:`planecut.mip_cuts.refine.RefinedBounds`, one per ReLU layer; sound for the
        whole region). Read after :meth:`poll`."""
        w = self._worker
        if w is None:
            return []
        new = w.refined[self._seen_refined:]
        self._seen_refined = len(w.refined)
        for rb in new:
            self.stats.refined_neurons += rb.solved
            self.stats.refined_improved += rb.improved
        return new

    def candidates(self) -> list[np.ndarray]:
        """Inputs where the MIP found the property violated, not handed out before."""
        w = self._worker
        if w is None:
            return []
        new = [inc.x for inc in w.incumbents[self._seen_incumbents:]]
        self._seen_incumbents = len(w.incumbents)
        for k, v in w.verdicts.items():
            if v.status == "candidate" and v.x is not None and k not in self._seen_verdicts:
                self._seen_verdicts.add(k)
                new.append(v.x)
        if new:
            self.stats.mip_status = "candidate"
        return new
