"""Benchmark suites at scale (installed as ``planecut.benchmarks``).

``planecut bench run`` runs VNN-COMP benchmark folders, one ``planecut verify`` process per
instance, locally or on ray; ``bench score`` and ``bench plot`` read the results files.
``run_suite`` is the older one-shot report script. Modules: ``suite`` (finding instances),
``process`` (one child under a deadline), ``instance`` (one instance run), ``recheck``
(counterexample re-check), ``results`` (results.csv), ``local_executor`` / ``ray_executor``,
``progress``, ``report``, ``runner``, ``score``, ``plot``, ``cli``.
"""
