"""Every VNN-LIB file of ../shared/benchmarks parses, fast, into a sane Spec (skipped without it).

Two independent checks of meaning: input boxes against a naive regex reading of the files'
top-level bounds, and 1.0 files against their mechanical 2.0 translation (official package).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from planecut.files import gunzip_if_compressed
from planecut.vnnlib.parse import parse_spec, parse_spec_text

pytestmark = pytest.mark.benchmarks

_DECL_X = re.compile(r"\(declare-const X_(\d+) Real\)")
_DECL_Y = re.compile(r"\(declare-const Y_(\d+) Real\)")
_TOP_BOUND = re.compile(r"^\(assert \((<=|>=) X_(\d+) ([^\s()]+)\)\)", re.MULTILINE)
_NUMBER = re.compile(r"(?<![\w.\[])[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?(?![\w.\]])")


def _files(root: Path) -> list[Path]:
    files = sorted(root.rglob("*.vnnlib")) + sorted(root.rglob("*.vnnlib.gz"))
    if not files:
        pytest.skip("no .vnnlib files under the benchmarks folder")
    return files


def _text(f: Path) -> str:
    """The file's text, gunzipped for ``.vnnlib.gz`` (VNN-COMP 2023)."""
    return gunzip_if_compressed(f.read_bytes(), ValueError).decode()


def _naive_box(text: str, n: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The box from top-level ``(assert (<=|>= X_i v))`` lines, or None if incomplete."""
    lo, hi = np.full(n, -np.inf), np.full(n, np.inf)
    for op, i, v in _TOP_BOUND.findall(text):
        if op == "<=":
            hi[int(i)] = min(hi[int(i)], float(v))
        else:
            lo[int(i)] = max(lo[int(i)], float(v))
    if np.isfinite(lo).all() and np.isfinite(hi).all():
        return lo, hi
    return None  # bounds inside or/and: covered by the semantic tests


# VNN-COMP 2023 nn4sys: 120,000 cases (over the old limit of 100,000); 38 MB, 2.5 million atoms
_KNOWN_COUNTS = {"lindex_60000.vnnlib.gz": (60_000, 120_000),
                 "cardinality_1_4150_128_dual.vnnlib.gz": (4_149, 4_150)}


def _time_limit(n_chars: int) -> float:
    """Seconds a file may take to parse: 1 s, or 0.3 s per MB of text for big files. The
    VNN-COMP 2023 nn4sys ones (up to 38 MB) take 0.02 to 0.07 s per MB on a 2-core machine,
    gunzip included: room for a noisy CI machine; the token-by-token parser took 0.25 to
    1.4 s per MB there (15 to 50 s for the 38 MB file)."""
    return max(1.0, 0.3 * n_chars / 1e6)


def test_every_benchmark_spec_parses(bench_root):
    timings = []
    naive_checked = 0
    for f in _files(bench_root):
        t0 = time.perf_counter()
        s = parse_spec(f)
        dt = time.perf_counter() - t0
        timings.append((dt, f))
        text = _text(f)
        assert s.version == "1.0", f
        assert s.num_inputs == len(_DECL_X.findall(text)), f
        assert s.num_outputs == len(_DECL_Y.findall(text)), f
        assert s.regions, f
        for r in s.regions:
            assert r.lower.shape == r.upper.shape == (s.num_inputs,)
            assert np.all(r.lower <= r.upper) and np.all(np.isfinite(r.lower)), f
            assert np.all(np.isfinite(r.upper)), f
            assert r.disjuncts, f
            for d in r.disjuncts:
                assert d.C.shape == (d.num_rows, s.num_outputs) and d.d.shape == (d.num_rows,)
        naive = _naive_box(text, s.num_inputs)
        if naive is not None:
            (r,) = s.regions
            np.testing.assert_array_equal(r.lower, naive[0], err_msg=str(f))
            np.testing.assert_array_equal(r.upper, naive[1], err_msg=str(f))
            naive_checked += 1
        if f.name in _KNOWN_COUNTS:  # regions and cases, as the competition's files have them
            assert (len(s.regions), s.num_disjuncts) == _KNOWN_COUNTS[f.name], f
        limit = _time_limit(len(text))
        assert dt < limit, f"{f} ({len(text) / 1e6:.1f} MB) took {dt:.3f} s (limit {limit:.1f} s)"
    assert naive_checked > 0
    timings.sort()
    slow, path = timings[-1]
    total = sum(t for t, _ in timings)
    print(f"\n{len(timings)} specs, total {total:.2f} s, slowest {slow * 1e3:.1f} ms: "
          f"{path.relative_to(bench_root)} ({naive_checked} boxes checked against a naive reading)")


def to_v2(text: str, in_shape: tuple[int, ...], out_shape: tuple[int, ...]) -> str:
    """Mechanical 1.0 -> 2.0 translation (the 2.0 grammar wants plain decimals)."""
    body = re.sub(r";[^\n]*", "", text)
    body = re.sub(r"\(declare-const [XY]_\d+ Real\)", "", body)
    body = _NUMBER.sub(lambda m: np.format_float_positional(float(m.group()), unique=True,
                                                            trim="0"), body)

    def var(m: re.Match) -> str:
        shape = in_shape if m.group(1) == "X" else out_shape
        return f"{m.group(1)}[{','.join(map(str, np.unravel_index(int(m.group(2)), shape)))}]"

    body = re.sub(r"\b([XY])_(\d+)\b", var, body)
    dims = [",".join(map(str, s)) for s in (in_shape, out_shape)]
    return (f"(vnnlib-version <2.0>)\n(declare-network N (declare-input X float32 [{dims[0]}]) "
            f"(declare-output Y float32 [{dims[1]}]))\n{body}")


def test_v2_translation_gives_the_same_spec(bench_root):
    by_dir: dict[Path, Path] = {}
    for f in _files(bench_root):
        if f.suffix == ".vnnlib":
            by_dir.setdefault(f.parent, f)
    sample = sorted(set(by_dir.values()) | set((bench_root / "vnncomp2021" / "acasxu").glob(
        "*.vnnlib")))
    for f in sample:
        a = parse_spec(f)
        shape_in = (1, a.num_inputs) if a.num_inputs != 3072 else (1, 3, 32, 32)
        b = parse_spec_text(to_v2(_text(f), shape_in, (1, a.num_outputs)), f"{f} (2.0)")
        assert b.version == "2.0" and len(a.regions) == len(b.regions), f
        for ra, rb in zip(a.regions, b.regions):
            np.testing.assert_array_equal(ra.lower, rb.lower, err_msg=str(f))
            np.testing.assert_array_equal(ra.upper, rb.upper, err_msg=str(f))
            for da, db in zip(ra.disjuncts, rb.disjuncts, strict=True):
                np.testing.assert_array_equal(da.C, db.C, err_msg=str(f))
                np.testing.assert_array_equal(da.d, db.d, err_msg=str(f))
