"""``planecut bench run``: a whole suite, results.csv written as instances finish.

Order of work: find the instances (``suite``), filter them (``--select``, ``--range``), drop
those already in results.csv (``--resume``), run the rest on an executor (local thread pool or
ray), append each result to results.csv and print a progress line, then print the summary of
every selected instance (earlier rows included) and exit 1 if any answer was wrong.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from planecut.benchmarks.instance import InstanceResult, RunOptions
from planecut.benchmarks.progress import Progress
from planecut.benchmarks.report import error_lines, summary_table
from planecut.benchmarks.results import ResultsWriter, done_keys, read_results
from planecut.benchmarks.suite import Instance, load_suite, result_key, select_instances

EXIT_OK, EXIT_WRONG, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
RESULTS_NAME = "results.csv"


@dataclass(frozen=True)
class SuiteRun:
    """Everything ``bench run`` was asked to do."""

    suite: Path
    out_dir: Path
    options: RunOptions = field(default_factory=RunOptions)
    select: tuple[str, ...] = ()
    index_range: slice | None = None
    benchmarks: tuple[str, ...] = ()
    resume: bool = False
    force: bool = False  # replace an existing results.csv
    jobs: int | None = None  # parallel instances (local: 1; local ray: all cores)
    executor: str = "local"  # local | ray
    address: str | None = None  # ray cluster to connect to (local ray when None)
    cpus_per_task: float = 1.0

    @property
    def results_path(self) -> Path:
        return self.out_dir / RESULTS_NAME


def _execute(run: SuiteRun, todo: list[Instance]) -> Iterator[InstanceResult]:
    if run.executor == "ray":
        from planecut.benchmarks.ray_executor import run_ray

        device = run.options.device or ""
        return run_ray(todo, run.options, address=run.address,
                       num_cpus=max(1, round(run.jobs * run.cpus_per_task)) if run.jobs else None,
                       cpus_per_task=run.cpus_per_task,
                       gpus_per_task=1.0 if device.startswith("cuda") else 0.0)
    from planecut.benchmarks.local_executor import run_local

    return run_local(todo, run.options, run.jobs or 1)


def run_suite(run: SuiteRun, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the suite; the summary goes to ``out``, progress and problems to ``err``."""
    out = out if out is not None else sys.stdout
    err = err if err is not None else sys.stderr
    instances = load_suite(run.suite, list(run.benchmarks) or None)
    if not instances:
        print(f"planecut bench: no instances.csv under {run.suite}", file=err)
        return EXIT_USAGE
    chosen = select_instances(instances, list(run.select) or None, run.index_range)
    if run.results_path.exists() and not (run.resume or run.force):
        print(f"planecut bench: {run.results_path} exists; --resume to continue it or "
              "--force to replace it", file=err)
        return EXIT_USAGE
    done = done_keys(run.results_path) if run.resume else set()
    todo = [i for i in chosen if i.key not in done]
    print(f"planecut bench: {len(chosen)} instances selected, {len(chosen) - len(todo)} already "
          f"in {run.results_path}, {len(todo)} to run ({run.executor}, "
          f"{run.jobs or (1 if run.executor == 'local' else 'all CPUs')} at a time)",
          file=err, flush=True)
    progress = Progress(len(todo), err)
    with ResultsWriter(run.results_path, append=run.resume) as writer:
        results = _execute(run, todo)
        try:
            for r in results:
                writer.write(r)
                progress.update(r)
        except KeyboardInterrupt:
            print(f"planecut bench: interrupted; {progress.done} finished instance(s) are in "
                  f"{run.results_path} (--resume continues)", file=err, flush=True)
            return EXIT_INTERRUPTED
        finally:
            results.close()  # type: ignore[attr-defined]  # stops workers on an early exit
    final = selection_results(run.results_path, chosen)
    print(summary_table(final), file=out)
    wrong = error_lines(final)
    for line in wrong:
        print(line, file=out)
    out.flush()
    return EXIT_WRONG if wrong else EXIT_OK


def selection_results(path: Path, chosen: list[Instance]) -> list[InstanceResult]:
    """The rows of ``path`` for the chosen instances (the last row where one was run twice),
    with the expected answer as ``expected.csv`` gives it now."""
    rows = {result_key(r.benchmark, r.onnx, r.vnnlib): r for r in read_results(path)}
    return [dataclasses.replace(rows[i.key], expected=i.expected)
            for i in chosen if i.key in rows]
