"""The cut worker: a separate process that runs SCIP on the verification MILP and streams
validated cutting planes (and what the MIP itself finds) to the verifier through a queue.

Why a process and not a thread: SCIP runs for as long as we let it, holds native state, and
must never take the verifier down if it crashes or is killed. The process is started with the
*spawn* method (no forked copy of torch or of the parent's threads) and receives only numpy
data (:class:`CutJob`); it never imports torch.

Lifetime guarantees (tested): it stops within about a second of :meth:`CutWorker.stop` or of
its deadline (SCIP's own time limit, the stop event polled at every SCIP event, and a hard
terminate after a grace period); it dies with its parent — ``PR_SET_PDEATHSIG`` on Linux when
started from the main thread, and in every case a watcher thread that exits the process as
soon as its parent process is gone (the solve runs with the GIL released, so the watcher runs).

Messages on the queue (all picklable dataclasses): :class:`CutBatch` (only new, de-duplicated,
validated cuts; ``version`` counts batches), :class:`Incumbent` (an input where the MIP found
the spec row ``<= 0``: a *candidate* counterexample that the verifier must confirm with
onnxruntime), :class:`MipVerdict` per objective, and finally :class:`WorkerDone` or
:class:`WorkerFailed`.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue as queue_mod
import signal
import sys
import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .cutset import CutSet
from .encoding import NetworkEncoding
from .milp import build_milp
from .refine import RefinedBounds, refine_bounds
from .validate import ValidationReport, cuts_from_rows, sample_inputs, validate

#: seconds :meth:`CutWorker.stop` waits for a clean exit before terminating the process
STOP_GRACE_S = 0.8
#: the MIP's optimum (or dual bound) must exceed this, relative to the objective's scale, to
#: count as a proof: far above SCIP's feasibility tolerance (1e-6 per row, which big-M rows
#: of a deep network can accumulate), and above the verifier's own proof margin
PROOF_TOL = 1e-4


@dataclass
class CutJob:
    """Everything the worker needs, as numpy data.

    ``objectives``: one ``(C, d)`` per spec disjunct (violated iff ``C·out <= d`` row-wise);
    the worker solves ``min max_r (C_r·out − d_r)`` for each in turn and harvests cuts from all.
    ``deadline_s``: seconds of solver time from the worker's start (the parent's global deadline
    minus what has passed). ``samples``: executions each cut must hold on.
    """

    encoding: NetworkEncoding | None
    objectives: list[tuple[np.ndarray, np.ndarray]]
    time_limit: float = 60.0
    threads: int = 1
    samples: int = 2000
    seed: int = 0
    flush_s: float = 0.5
    layer_names: tuple[str, ...] = ()
    layer_shapes: tuple[tuple[int, ...], ...] = ()
    root_only: bool = False
    # end each objective's solve as soon as its sign is known (proof or violation); False
    # keeps SCIP closing the gap (and separating cuts) until the time limit
    stop_when_decided: bool = True
    # instead of ``encoding``: the graph, box and root bounds, encoded in the worker (a conv
    # net's encoding takes seconds that the verifier's own search should not wait for; the
    # worker then imports torch)
    graph: Any = None
    x_lower: np.ndarray | None = None
    x_upper: np.ndarray | None = None
    intermediate: dict[str, tuple[np.ndarray, np.ndarray]] | None = None
    # before the cuts: MIP-tighten intermediate bounds for at most this many seconds (0: off),
    # each solve at most ``refine_solve_s`` (see :mod:`.refine`); every refined layer is sent
    # as a :class:`RefinedBounds`, and the cut MILPs use the refined bounds
    refine_s: float = 0.0
    refine_solve_s: float = 0.4
    refine_threads: int = 1  # SCIP solves at once while refining (threads of the worker)


@dataclass
class CutBatch:
    version: int
    cuts: CutSet
    report: ValidationReport
    elapsed: float


@dataclass
class Incumbent:
    objective: int
    x: np.ndarray
    value: float
    elapsed: float


@dataclass
class MipVerdict:
    """``status``: ``proved`` (the objective's MIP optimum is > 0: no violation of that
    disjunct), ``candidate`` (its optimum is <= 0; ``x`` to be confirmed) or ``unknown``."""

    objective: int
    status: str
    primal: float
    dual: float
    x: np.ndarray | None
    elapsed: float
    solver_status: str = ""


@dataclass
class RefineFinished:
    """The worker's bound refinement is over (its time spent, or every layer done)."""

    elapsed: float


@dataclass
class WorkerDone:
    elapsed: float
    stats: dict[str, Any] = field(default_factory=dict)


@dataclass
class WorkerFailed:
    message: str


# --------------------------------------------------------------------------- in the child


def _die_with_parent(parent_pid: int, from_main_thread: bool) -> None:
    if from_main_thread and sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
        except Exception:  # pragma: no cover - best effort; the watcher below still runs
            pass
    if os.getppid() != parent_pid:  # the parent died before we got here
        os._exit(0)

    def watch() -> None:
        while True:
            time.sleep(0.2)
            if os.getppid() != parent_pid:
                os._exit(0)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()


def _worker_main(job: CutJob, out: "mp.Queue", stop: "mp.synchronize.Event", parent_pid: int,
                 from_main_thread: bool) -> None:
    _die_with_parent(parent_pid, from_main_thread)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    t0 = time.monotonic()
    try:
        _run(job, out, stop, t0)
    except Exception as e:  # report, never raise into the void
        out.put(WorkerFailed(f"{type(e).__name__}: {e}\n{traceback.format_exc(limit=5)}"))


def _run(job: CutJob, out: "mp.Queue", stop, t0: float) -> None:
    from .backends.scip import solve_scip

    enc = job.encoding
    if enc is None:
        import torch

        from .encoding import encode_network

        torch.set_num_threads(1)
        enc = encode_network(job.graph, job.x_lower, job.x_upper, job.intermediate)
        job.layer_names = job.layer_names or tuple(L.pre_name for L in enc.layers)
        job.layer_shapes = job.layer_shapes or tuple(L.shape for L in enc.layers)
    refined = {"refine_s": 0.0, "refined_neurons": 0, "refined_improved": 0}
    if job.refine_s > 0:
        def on_layer(rb: RefinedBounds) -> None:
            refined["refined_neurons"] += rb.solved
            refined["refined_improved"] += rb.improved
            out.put(rb)

        t_ref = time.monotonic()
        enc = refine_bounds(enc, min(job.refine_s, job.time_limit - (t_ref - t0)),
                            solve_seconds=job.refine_solve_s, should_stop=stop.is_set,
                            threads=job.refine_threads,
                            on_layer=on_layer)
        refined["refine_s"] = time.monotonic() - t_ref
        out.put(RefineFinished(time.monotonic() - t0))
    rng = np.random.default_rng(job.seed)
    X = sample_inputs(enc, job.samples, rng)
    incumbents: list[np.ndarray] = []
    seen: set[bytes] = set()
    version = 0
    totals = {"encoded_s": time.monotonic() - t0, "cuts_raw": 0, "cuts_sent": 0,
              "cuts_rejected": 0, "duplicates": 0,
              "rows_unmapped": 0, "first_cut_s": None, "objectives": len(job.objectives),
              **refined}

    def elapsed() -> float:
        return time.monotonic() - t0

    for i, (C, d) in enumerate(job.objectives):
        left = job.time_limit - elapsed()
        if left <= 0.05 or stop.is_set():
            break
        model = build_milp(enc, C, d)

        def on_cuts(raw, model=model) -> None:
            nonlocal version, X
            cs = cuts_from_rows(model.layout, [(c.cols, c.vals, c.rhs) for c in raw],
                                layer_names=job.layer_names, layer_shapes=job.layer_shapes)
            keys = cs.keys()
            fresh = [j for j, k in enumerate(keys) if k not in seen]
            totals["cuts_raw"] += len(cs)
            totals["duplicates"] += len(cs) - len(fresh)
            if not fresh:
                return
            seen.update(keys[j] for j in fresh)
            if incumbents:
                X = np.concatenate([X, np.asarray(incumbents)])
                incumbents.clear()
            good, rep = validate(cs.take(np.asarray(fresh)), enc, X)
            totals["cuts_rejected"] += rep.rejected
            if len(good):
                version += 1
                good.version = version
                totals["cuts_sent"] += len(good)
                if totals["first_cut_s"] is None:
                    totals["first_cut_s"] = elapsed()
                out.put(CutBatch(version, good, rep, elapsed()))
            elif rep.rejected:
                out.put(CutBatch(version, CutSet.empty(model.layout), rep, elapsed()))

        def on_incumbent(x: np.ndarray, value: float, i=i) -> None:
            incumbents.append(np.clip(x, enc.x_lower, enc.x_upper))
            if value <= 0:
                out.put(Incumbent(i, x.copy(), value, elapsed()))

        scale = 1.0 + float(np.abs(np.asarray(d)).max(initial=0.0))
        res = solve_scip(model, time_limit=left, threads=job.threads, on_cuts=on_cuts,
                         on_incumbent=on_incumbent, should_stop=stop.is_set,
                         flush_s=job.flush_s, root_only=job.root_only,
                         stop_dual=2 * PROOF_TOL * scale if job.stop_when_decided else None,
                         stop_primal=0.0 if job.stop_when_decided else None)
        totals["rows_unmapped"] += res.stats.rows_unmapped
        if res.status == "optimal" and res.primal > PROOF_TOL * scale:
            status = "proved"
        elif res.status == "infeasible":
            status = "proved"
        elif res.x is not None and res.primal <= 0:
            status = "candidate"
        elif res.dual > PROOF_TOL * scale:  # stopped early, but the bound already proves it
            status = "proved"
        else:
            status = "unknown"
        out.put(MipVerdict(i, status, res.primal, res.dual, res.x, elapsed(), res.status))
        if status == "candidate":
            break  # one violated disjunct decides the property, if confirmed
    out.put(WorkerDone(elapsed(), totals))


# --------------------------------------------------------------------------- in the parent


class CutWorker:
    """Parent-side handle: ``start(job)``, non-blocking ``poll()``, ``stop()``.

    ``poll`` returns the new cut batches and records the rest: ``incumbents`` (candidates to
    confirm), ``verdicts`` (per objective), ``done``/``error``, ``stats``. The worker dying
    without a word (killed, crashed) shows as ``error``; the verifier simply goes on without
    cuts.
    """

    def __init__(self) -> None:
        self._proc: mp.process.BaseProcess | None = None
        self._queue: Any = None
        self._stop: Any = None
        self.incumbents: list[Incumbent] = []
        self.refined: list[RefinedBounds] = []  # in arrival order (consumers keep a cursor)
        self.refine_finished = False
        self.verdicts: dict[int, MipVerdict] = {}
        self.batches = 0
        self.cuts_received = 0
        self.cuts_rejected = 0
        self.first_cut_s: float | None = None
        self.done = False
        self.error: str | None = None
        self.stats: dict[str, Any] = {}
        self._t_start = 0.0
        self._unreadable = False  # set once the worker was killed: never read its queue again

    def start(self, job: CutJob) -> "CutWorker":
        ctx = mp.get_context("spawn")
        self._queue = ctx.Queue()
        self._stop = ctx.Event()
        self._proc = ctx.Process(
            target=_worker_main, name="planecut-cut-worker", daemon=True,
            args=(job, self._queue, self._stop, os.getpid(),
                  threading.current_thread() is threading.main_thread()))
        self._t_start = time.monotonic()
        self._proc.start()
        return self

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    def poll(self, timeout: float = 0.0) -> list[CutSet]:
        """New cut batches since the last call (never blocks longer than ``timeout``)."""
        out: list[CutSet] = []
        if self._queue is None or self._unreadable:
            return out
        if self._proc is not None and self._proc.exitcode not in (None, 0):
            # killed or crashed, perhaps half-way through writing a message: reading the
            # queue could block for ever on the missing bytes, so it is not read again
            self._unreadable = True
            if not self.done and self.error is None:
                self.error = f"cut worker exited unexpectedly (exit code {self._proc.exitcode})"
            return out
        first = True
        while True:
            try:
                msg = self._queue.get(timeout=timeout) if first and timeout > 0 else \
                    self._queue.get_nowait()
            except (queue_mod.Empty, EOFError, OSError):
                break
            first = False
            self._handle(msg, out)
        if not self.done and self.error is None and self._proc is not None \
                and not self._proc.is_alive() and self._queue_empty():
            code = self._proc.exitcode
            self.error = f"cut worker exited unexpectedly (exit code {code})"
        return out

    def _queue_empty(self) -> bool:
        try:
            return self._queue.empty()
        except (OSError, ValueError):  # pragma: no cover
            return True

    def _handle(self, msg: Any, out: list[CutSet]) -> None:
        if isinstance(msg, CutBatch):
            self.batches += 1
            self.cuts_rejected += msg.report.rejected
            if len(msg.cuts):
                out.append(msg.cuts)
                self.cuts_received += len(msg.cuts)
                if self.first_cut_s is None:
                    self.first_cut_s = time.monotonic() - self._t_start
        elif isinstance(msg, Incumbent):
            self.incumbents.append(msg)
        elif isinstance(msg, RefinedBounds):
            self.refined.append(msg)
        elif isinstance(msg, RefineFinished):
            self.refine_finished = True
        elif isinstance(msg, MipVerdict):
            self.verdicts[msg.objective] = msg
        elif isinstance(msg, WorkerDone):
            self.done = True
            self.stats = dict(msg.stats)
        elif isinstance(msg, WorkerFailed):
            self.error = msg.message

    def wait(self, timeout: float) -> list[CutSet]:
        """Collect batches until the worker is done or ``timeout`` seconds pass."""
        end = time.monotonic() + timeout
        out: list[CutSet] = []
        while not self.done and self.error is None and time.monotonic() < end:
            out += self.poll(timeout=min(0.2, max(0.0, end - time.monotonic())))
        out += self.poll()
        return out

    def stop(self, grace: float = STOP_GRACE_S) -> None:
        """Ask the worker to stop; terminate it after ``grace`` s; kill it if it lingers."""
        p = self._proc
        if p is None:
            return
        if self._stop is not None:
            self._stop.set()
        p.join(grace)
        if p.is_alive():
            # terminated, possibly mid-write: its queue must not be read any more (poll)
            self._unreadable = True
            p.terminate()
            p.join(0.5)
        if p.is_alive():  # pragma: no cover - SIGTERM ignored
            p.kill()
            p.join(0.5)
        # messages sent before a clean exit stay readable
        try:
            self.poll()
        except Exception:  # pragma: no cover
            pass
        if self._queue is not None:
            self._queue.cancel_join_thread()

    def __enter__(self) -> "CutWorker":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
