"""``planecut bench plot``: a cactus plot and a per-benchmark bar chart of one or more runs.

Two PNG files: ``--out FILE.png`` gets the cactus plot (instances solved within a time, one
line per results file, time on a log axis) and ``FILE_bars.png`` next to it the bar chart
(instances solved per benchmark, one bar per results file). "Solved" means a correct answer
under the rules of :mod:`planecut.benchmarks.score` (wrong answers do not count).

Figures are built with matplotlib's object API on the Agg canvas, without pyplot, so nothing
global (backend, current figure) is touched; the functions return the Figures for inspection.
matplotlib is optional (``pip install planecut[plots]``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from planecut.benchmarks.score import Run, is_correct, truth


class MatplotlibMissingError(RuntimeError):
    """matplotlib is not installed."""


def _new_figure(size: tuple[float, float]) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MatplotlibMissingError("planecut bench plot needs matplotlib: pip install "
                                     "'planecut[plots]' (or pip install 'matplotlib>=3.7')"
                                     ) from None
    fig = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def solved_times(runs: list[Run]) -> list[dict[tuple[str, str, str], float]]:
    """For each run, the seconds of each instance it answered correctly."""
    keys = {k for run in runs for k in run.rows}
    known = {k: truth([run.rows[k] for run in runs if k in run.rows]) for k in keys}
    return [{k: r.seconds for k, r in run.rows.items() if is_correct(r, known[k]) is True}
            for run in runs]


def cactus_figure(runs: list[Run]) -> Any:
    """Instances solved (y) within a per-instance time (x, log scale): one step line per run."""
    fig = _new_figure((7.0, 4.5))
    ax = fig.add_subplot()
    for run, solved in zip(runs, solved_times(runs)):
        times = sorted(max(t, 1e-3) for t in solved.values() if not math.isnan(t))
        ax.step(times, list(range(1, len(times) + 1)), where="post",
                label=f"{run.label} ({len(times)})")
    ax.set_xscale("log")
    ax.set_xlabel("time per instance (s)")
    ax.set_ylabel("instances solved")
    ax.set_title("cactus plot")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="upper left")
    return fig


def bars_figure(runs: list[Run]) -> Any:
    """Instances solved per benchmark: grouped bars, one per run."""
    per_run = solved_times(runs)
    benches = sorted({k[0] for run in runs for k in run.rows})
    fig = _new_figure((max(6.0, 1.2 * len(benches) * max(1, len(runs)) / 2 + 2), 4.5))
    ax = fig.add_subplot()
    width = 0.8 / max(1, len(runs))
    for i, (run, solved) in enumerate(zip(runs, per_run)):
        counts = [sum(k[0] == b for k in solved) for b in benches]
        xs = [j + (i - (len(runs) - 1) / 2) * width for j in range(len(benches))]
        ax.bar(xs, counts, width=width, label=run.label)
    ax.set_xticks(range(len(benches)), benches, rotation=30, ha="right")
    ax.set_ylabel("instances solved")
    ax.set_title("solved per benchmark")
    ax.legend()
    return fig


def bars_path(out: Path) -> Path:
    """Where the bar chart goes: ``FILE_bars.png`` next to ``FILE.png``."""
    out = Path(out)
    return out.with_name(f"{out.stem}_bars{out.suffix or '.png'}")


def plot_runs(runs: list[Run], out: Path) -> tuple[Any, Any]:
    """Write the cactus plot to ``out`` and the bar chart to :func:`bars_path`; return both
    Figures (cactus, bars)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    cactus, bars = cactus_figure(runs), bars_figure(runs)
    cactus.savefig(out, dpi=120)
    bars.savefig(bars_path(out), dpi=120)
    return cactus, bars
