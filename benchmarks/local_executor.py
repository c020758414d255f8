"""Instances in parallel on this machine: a thread pool, each thread driving one subprocess.

Threads suffice because the work happens in the ``planecut verify`` processes; a thread only
waits for its child and re-checks a counterexample. Results come back in completion order.
When the consumer stops early (Ctrl-C, an exception), every running child's process group is
killed and queued instances are dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor, as_completed

from planecut.benchmarks.instance import (InstanceResult, RunOptions, failed_result,
                                          run_instance)
from planecut.benchmarks.process import ProcessGroups
from planecut.benchmarks.suite import Instance


def run_local(instances: list[Instance], opts: RunOptions, jobs: int = 1
              ) -> Iterator[InstanceResult]:
    """Run ``instances`` with ``jobs`` at a time; yield each result as it finishes."""
    groups = ProcessGroups()
    pool = ThreadPoolExecutor(max_workers=max(1, jobs), thread_name_prefix="planecut-bench")
    try:
        futures: dict[Future, Instance] = {pool.submit(run_instance, inst, opts, groups): inst
                                           for inst in instances}
        for fut in as_completed(futures):
            try:
                result = fut.result()
            except Exception as exc:  # noqa: BLE001 - one bad instance must not end the run
                result = failed_result(futures[fut], opts,
                                       f"runner failed: {type(exc).__name__}: {exc}")
            yield result
    finally:
        groups.kill_all()
        pool.shutdown(wait=False, cancel_futures=True)
