"""VNN-COMP scoring and run comparison on hand-written results files."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pytest

from planecut.benchmarks.score import compare, format_report, load_runs, score_runs

HEADER = "benchmark,onnx,vnnlib,verdict,expected,seconds,counterexample_ok\n"


def write(path: Path, rows: list[str], header: str = HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(header + "".join(r + "\n" for r in rows))
    return path


def test_single_run_correct_incorrect_and_no_bonus(tmp_path):
    p = write(tmp_path / "a" / "results.csv", [
        "s/b,n1.onnx,p.vnnlib,unsat,unsat,3.0,",        # correct
        "s/b,n2.onnx,p.vnnlib,sat,sat,2.0,true",        # correct
        "s/b,n3.onnx,p.vnnlib,unsat,sat,1.0,",          # contradicts expected
        "s/b,n4.onnx,p.vnnlib,sat,,1.0,false",          # bad counterexample
        "s/b,n5.onnx,p.vnnlib,timeout,unsat,60,",       # no answer
        "s/c,n6.onnx,p.vnnlib,unsat,unknown,5.0,",      # no known answer: counts correct
    ])
    (run,) = load_runs([p])
    assert run.label == "a"
    (s,) = score_runs([run])
    assert (s.total.correct, s.total.incorrect, s.total.bonus) == (3, 2, 0)
    assert s.total.score == 3 * 10 - 2 * 100
    assert s.by_benchmark["b"].score == 20 - 200 and s.by_benchmark["c"].score == 10


def test_time_bonus_with_floor_at_one_second_and_ties(tmp_path):
    a = write(tmp_path / "A.csv", [
        "b,fast.onnx,p.vnnlib,unsat,unsat,0.2,",
        "b,slow.onnx,p.vnnlib,unsat,unsat,2.0,",
        "b,onlya.onnx,p.vnnlib,sat,sat,30,true",
        "b,wrong.onnx,p.vnnlib,sat,unsat,0.5,true",
    ])
    b = write(tmp_path / "B.csv", [
        "b,fast.onnx,p.vnnlib,unsat,,0.9,",     # both under 1 s: equal, both fastest
        "b,slow.onnx,p.vnnlib,unsat,,5.0,",     # second fastest
        "b,onlya.onnx,p.vnnlib,timeout,,60,",
        "b,wrong.onnx,p.vnnlib,unsat,,9.0,",    # A is wrong, so B alone is fastest
    ])
    c = write(tmp_path / "C.csv", ["b,slow.onnx,p.vnnlib,unsat,,7.0,"])  # third: no bonus
    sa, sb, sc = score_runs(load_runs([a, b, c]))
    # A: fast +10+2, slow +10+2, onlya +10+2, wrong -100
    assert (sa.total.correct, sa.total.incorrect, sa.total.bonus) == (3, 1, 6)
    assert sa.total.score == 30 + 6 - 100
    # B: fast +10+2, slow +10+1, wrong.onnx +10+2 (the truth comes from A's expected column)
    assert (sb.total.correct, sb.total.bonus, sb.total.score) == (3, 5, 35)
    assert (sc.total.correct, sc.total.bonus, sc.total.score) == (1, 0, 10)


def test_disputed_and_counterexample_resolution(tmp_path):
    a = write(tmp_path / "A.csv", ["b,x.onnx,p.vnnlib,sat,,1,",
                                   "b,y.onnx,p.vnnlib,sat,,1,true"])
    b = write(tmp_path / "B.csv", ["b,x.onnx,p.vnnlib,unsat,,1,",
                                   "b,y.onnx,p.vnnlib,unsat,,1,"])
    sa, sb = score_runs(load_runs([a, b]))
    # x: no expected, no checked counterexample: disputed, 0 each; y: the valid sat wins
    assert (sa.total.score, sb.total.score) == (12, -100)


def test_comparison_only_a_only_b_and_speed_ratio(tmp_path):
    a = write(tmp_path / "A.csv", ["b,1.onnx,p.vnnlib,unsat,,1,", "b,2.onnx,p.vnnlib,unsat,,4,",
                                   "b,3.onnx,p.vnnlib,unsat,,1,", "b,4.onnx,p.vnnlib,timeout,,9,"])
    b = write(tmp_path / "B.csv", ["b,1.onnx,p.vnnlib,unsat,,4,", "b,2.onnx,p.vnnlib,unsat,,4,",
                                   "b,3.onnx,p.vnnlib,unknown,,9,", "b,4.onnx,p.vnnlib,unsat,,2,",
                                   "b,5.onnx,p.vnnlib,unsat,,2,"])
    ra, rb = load_runs([a, b])
    c = compare(ra, rb)
    assert (c.common, c.both, c.only_a, c.only_b) == (4, 2, 1, 1)
    assert math.isclose(c.time_ratio_b_over_a, 2.0)  # sqrt(4/1 * 4/4)
    report = format_report([ra, rb])
    assert "only A 1, only B 1" in report and "2.00x" in report


@pytest.mark.parametrize("ref_names", ["t.onnx,p.vnnlib", "t.onnx.gz,./p.vnnlib.gz"])
def test_reference_format_lines_up_with_planecut_names(tmp_path, ref_names):
    ours = write(tmp_path / "run" / "results.csv",
                 ["vnncomp2021/test,t.onnx,p.vnnlib,unsat,unsat,2,"])
    ref = write(tmp_path / "ref.csv", [f"test,{ref_names},holds,8"],
                header="benchmark,onnx,vnnlib,result,wall_s\n")
    ra, rb = load_runs([ours, ref])
    assert set(ra.rows) == set(rb.rows) == {("test", "t.onnx", "p.vnnlib")}
    sa, sb = score_runs([ra, rb])
    assert (sa.total.score, sb.total.score) == (12, 11)


def test_score_command_through_planecut(tmp_path):
    a = write(tmp_path / "A.csv", ["b,1.onnx,p.vnnlib,unsat,unsat,1,"])
    p = subprocess.run([sys.executable, "-m", "planecut", "bench", "score", str(a)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, p.stderr
    assert "TOTAL" in p.stdout and "10 (1/0)" in p.stdout
    p = subprocess.run([sys.executable, "-m", "planecut", "bench", "score",
                        str(tmp_path / "missing.csv")], capture_output=True, text=True,
                       timeout=60)
    assert p.returncode == 2 and "no such file" in p.stderr
    p = subprocess.run([sys.executable, "-m", "planecut.benchmarks", "score", str(a)],
                       capture_output=True, text=True, timeout=60)
    assert p.returncode == 0 and "TOTAL" in p.stdout, p.stderr
