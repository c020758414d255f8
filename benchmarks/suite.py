"""Finding the instances of VNN-COMP benchmark folders.

A benchmark folder holds ``instances.csv`` (``onnx,vnnlib,timeout``, no header; paths relative
to the folder, ``.gz`` files allowed) and optionally ``expected.csv`` (``onnx,vnnlib,expected,...``
with a header). A suite root may be such a folder or any folder above several. This module only
reads these files; it runs nothing, so the runner, the old ``run_suite`` script and the tests all
agree on which instances a folder holds and under which names.

VNN-COMP 2023 lists ``onnx/x.onnx`` where only ``onnx/x.onnx.gz`` is shipped: a listed path
that does not exist stands for its ``.gz`` file when that exists (:func:`resolve_listed`). Rows
of different files (instances.csv, expected.csv, results files) are matched by
:func:`file_key`, which drops a leading ``./`` and a trailing ``.gz``, so ``onnx/x.onnx`` and
``./onnx/x.onnx.gz`` name the same file.
"""

from __future__ import annotations

import csv
import fnmatch
from dataclasses import dataclass
from pathlib import Path

DEFINITE = ("sat", "unsat")


@dataclass(frozen=True)
class Instance:
    """One (model, property) pair of a benchmark, with the answer it is known to have."""

    benchmark: str  # "<suite>/<benchmark>", e.g. "vnncomp2021/test"
    folder: Path  # the benchmark folder (instances.csv lives here)
    onnx: str  # as written in instances.csv, relative to ``folder``
    vnnlib: str
    timeout: float  # seconds, from instances.csv
    expected: str = ""  # "sat" / "unsat" / "unknown" / "" (no expected.csv row)

    @property
    def key(self) -> tuple[str, str, str]:
        """Identity of the instance in results files (resume, scoring, comparisons)."""
        return result_key(self.benchmark, self.onnx, self.vnnlib)

    @property
    def onnx_path(self) -> Path:
        return resolve_listed(self.folder / self.onnx)

    @property
    def vnnlib_path(self) -> Path:
        return resolve_listed(self.folder / self.vnnlib)


def resolve_listed(path: Path) -> Path:
    """The file a path listed in instances.csv stands for: the path itself when it exists, else
    ``<path>.gz`` when that exists, else the path as listed (so errors name it)."""
    if path.exists():
        return path
    gz = path.with_name(path.name + ".gz")
    return gz if gz.exists() else path


def file_key(name: str) -> str:
    """A listed path as rows are matched by: stripped, without a leading ``./`` or a trailing
    ``.gz`` (``./onnx/x.onnx.gz`` -> ``onnx/x.onnx``)."""
    name = name.strip()
    while name.startswith("./"):
        name = name[2:]
    return name[:-3] if name.endswith(".gz") else name


def pair_key(onnx: str, vnnlib: str) -> tuple[str, str]:
    """``(onnx, vnnlib)`` as :func:`read_expected`'s rows are keyed."""
    return (file_key(onnx), file_key(vnnlib))


def result_key(benchmark: str, onnx: str, vnnlib: str) -> tuple[str, str, str]:
    """``(benchmark, onnx, vnnlib)`` as rows of results files are matched."""
    return (benchmark, *pair_key(onnx, vnnlib))


def find_benchmarks(root: Path) -> list[Path]:
    """Folders under ``root`` (or ``root`` itself) that hold an ``instances.csv``."""
    return sorted(p.parent for p in Path(root).rglob("instances.csv"))


def benchmark_name(folder: Path) -> str:
    """``suite/benchmark``: the folder and its parent, so that the same benchmark name in two
    competition years stays two benchmarks."""
    folder = Path(folder).resolve()
    return f"{folder.parent.name}/{folder.name}"


def read_instances(bench: Path) -> list[tuple[str, str, float]]:
    """The ``(onnx, vnnlib, timeout)`` rows of ``bench/instances.csv`` in file order."""
    rows = []
    with open(Path(bench) / "instances.csv", newline="") as fh:
        for row in csv.reader(fh):
            if len(row) >= 3 and row[0].strip():
                rows.append((row[0].strip(), row[1].strip(), float(row[2])))
    return rows


def read_expected(bench: Path) -> dict[tuple[str, str], str]:
    """``pair_key(onnx, vnnlib) -> expected`` from ``bench/expected.csv`` (empty when absent);
    look rows up with :func:`pair_key`, so ``x.onnx`` and ``x.onnx.gz`` find the same row."""
    path = Path(bench) / "expected.csv"
    if not path.exists():
        return {}
    with open(path, newline="") as fh:
        return {pair_key(r["onnx"], r["vnnlib"]): r["expected"].strip().lower()
                for r in csv.DictReader(fh)}


def load_benchmark(folder: Path) -> list[Instance]:
    """Every instance of one benchmark folder, with its expected answer."""
    expected = read_expected(folder)
    name = benchmark_name(folder)
    return [Instance(name, Path(folder).resolve(), onnx, vnnlib, timeout,
                     expected.get(pair_key(onnx, vnnlib), ""))
            for onnx, vnnlib, timeout in read_instances(folder)]


def load_suite(root: Path, benchmarks: list[str] | None = None) -> list[Instance]:
    """Every instance under ``root`` in a stable order (benchmark folders sorted, rows in file
    order); ``benchmarks`` keeps only folders whose name or ``suite/name`` matches one of the
    given globs."""
    out: list[Instance] = []
    for folder in find_benchmarks(root):
        if benchmarks and not any(fnmatch.fnmatch(folder.name, g)
                                  or fnmatch.fnmatch(benchmark_name(folder), g)
                                  for g in benchmarks):
            continue
        out.extend(load_benchmark(folder))
    return out


def matches(inst: Instance, globs: list[str]) -> bool:
    """True if any glob matches the onnx or vnnlib path as listed, or either base name."""
    names = (inst.onnx, inst.vnnlib, Path(inst.onnx).name, Path(inst.vnnlib).name)
    return any(fnmatch.fnmatch(n, g) for g in globs for n in names)


def parse_range(text: str) -> slice:
    """``A:B``, ``A:`` or ``:B`` (Python slice bounds, 0-based, B excluded) as a slice."""
    start, sep, stop = text.partition(":")
    if not sep:
        raise ValueError(f"range {text!r}: expected A:B, A: or :B")
    try:
        return slice(int(start) if start.strip() else None, int(stop) if stop.strip() else None)
    except ValueError:
        raise ValueError(f"range {text!r}: A and B must be integers") from None


def select_instances(instances: list[Instance], globs: list[str] | None = None,
                     index_range: slice | None = None) -> list[Instance]:
    """Filter by ``globs`` (any may match), then cut the remaining list with ``index_range``:
    the range counts positions in the whole selected list, across benchmarks, so a long run
    can be split into pieces ``0:100``, ``100:200``, ... on several machines."""
    chosen = [i for i in instances if matches(i, globs)] if globs else list(instances)
    return chosen[index_range] if index_range is not None else chosen
