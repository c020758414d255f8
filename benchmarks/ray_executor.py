"""Instances as ray tasks: on a local ray started for the run, or on an existing cluster.

Each task runs :func:`~planecut.benchmarks.instance.run_instance` (the same subprocess as the
local executor) with its own resources: ``num_cpus`` per task and one GPU when the run uses
CUDA (ray then sets ``CUDA_VISIBLE_DEVICES`` for the worker, which the ``planecut verify``
child inherits). Results stream back with ``ray.wait`` in completion order.

ray's own task retries are switched off (``max_retries=0``) and a task whose worker or node is
lost is resubmitted here, once, so that every retry is visible on stderr; an instance lost twice
becomes a ``lost`` row. On a cluster every node needs planecut installed in the same Python
environment and the benchmark files at the same absolute paths (a shared file system).

ray is optional (``pip install planecut[cluster]``) and imported only here, when used.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any

from planecut.benchmarks.instance import (InstanceResult, RunOptions, failed_result,
                                          run_instance)
from planecut.benchmarks.suite import Instance

Task = Callable[[Instance, RunOptions], InstanceResult]

# exceptions that mean the task's worker, node or result was lost, not that the task failed
_LOST = ("WorkerCrashedError", "NodeDiedError", "LocalRayletDiedError", "OwnerDiedError",
         "ObjectLostError", "OutOfMemoryError", "RaySystemError")


class RayUnavailableError(RuntimeError):
    """ray is not installed, or the ray to use cannot be started or reached."""


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayUnavailableError("--executor ray needs the ray package: pip install "
                              "'planecut[cluster]' (or pip install 'ray>=2.9')") from None
    return ray


def run_ray(instances: list[Instance], opts: RunOptions, *, address: str | None = None,
            num_cpus: int | None = None, cpus_per_task: float = 1.0,
            gpus_per_task: float = 0.0, retries: int = 1, task: Task | None = None
            ) -> Iterator[InstanceResult]:
    """Run ``instances`` as ray tasks; yield each result as it finishes.

    Without ``address`` a local ray is started with ``num_cpus`` CPUs (default: all) and shut
    down at the end; with one, the run connects to that cluster. A ray already initialised by
    the caller is used as it is and left running.
    """
    ray = import_ray()
    started = False
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
            else:
                ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False,
                         logging_level=logging.WARNING, log_to_driver=False)
        except Exception as exc:  # noqa: BLE001 - connection refused, bad address, ...
            where = f"the ray cluster at {address}" if address else "a local ray"
            raise RayUnavailableError(f"cannot start or reach {where}: "
                                      f"{type(exc).__name__}: {_first_line(exc)}") from None
        started = True
    if started and not address and gpus_per_task > 0 \
            and ray.cluster_resources().get("GPU", 0) < gpus_per_task:
        ray.shutdown()  # the tasks could never be scheduled: say so instead of waiting
        raise RayUnavailableError("a CUDA device was asked for, but the local ray found no GPU")
    lost = tuple(getattr(ray.exceptions, n) for n in _LOST if hasattr(ray.exceptions, n))
    remote = ray.remote(task or _run_task).options(
        num_cpus=cpus_per_task, num_gpus=gpus_per_task, max_retries=0)
    pending: dict[Any, tuple[Instance, int]] = {remote.remote(inst, opts): (inst, 0)
                                                for inst in instances}
    try:
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            ref = ready[0]
            inst, attempt = pending.pop(ref)
            try:
                result = ray.get(ref)
            except lost as exc:
                if attempt < retries:
                    print(f"ray: {inst.benchmark} {inst.onnx} {inst.vnnlib}: worker lost "
                          f"({type(exc).__name__}); retrying", file=sys.stderr, flush=True)
                    pending[remote.remote(inst, opts)] = (inst, attempt + 1)
                    continue
                result = failed_result(inst, opts, f"ray worker lost {attempt + 1} times: "
                                       f"{type(exc).__name__}: {_first_line(exc)}")
            except Exception as exc:  # noqa: BLE001 - the task itself raised: record, go on
                cause = getattr(exc, "cause", None) or exc  # RayTaskError wraps the exception
                result = failed_result(inst, opts, f"ray task failed: {type(cause).__name__}: "
                                       f"{_first_line(cause)}")
            yield result
    finally:
        for ref in pending:
            ray.cancel(ref)  # a running task's KeyboardInterrupt kills its child
        if started:
            ray.shutdown()


def _run_task(inst: Instance, opts: RunOptions) -> InstanceResult:
    """The default task: one instance in its own subprocess, inside the ray worker."""
    return run_instance(inst, opts)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0][:200] if text else type(exc).__name__
