"""``planecut bench run``: results.csv, resume, expected answers, selection."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from planecut.benchmarks.cli import main
from planecut.benchmarks.results import COLUMNS, read_results


def read_rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_vnncomp2021_test_subset_then_resume(bench_root, tmp_path, capsys):
    suite = bench_root / "vnncomp2021" / "test"
    out = tmp_path / "out"
    # positions 3 and 4: test_sat (sat) and test_unsat (unsat), two at a time
    rc = main(["run", str(suite), "--out", str(out), "--range", "3:5", "--jobs", "2",
               "--timeout", "60", "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 0, captured
    rows = read_rows(out / "results.csv")
    assert list(rows[0]) == COLUMNS
    by_onnx = {r["onnx"]: r for r in rows}
    assert set(by_onnx) == {"test_sat.onnx", "test_unsat.onnx"}
    assert by_onnx["test_sat.onnx"]["verdict"] == "sat"
    assert by_onnx["test_sat.onnx"]["counterexample_ok"] == "true"
    assert by_onnx["test_unsat.onnx"]["verdict"] == "unsat"
    for r in rows:
        assert r["benchmark"] == "vnncomp2021/test"
        assert r["check"] == "ok" and r["expected"] == r["verdict"]
        assert 0 < float(r["startup_seconds"]) <= float(r["seconds"])
        assert float(r["peak_memory_mb"]) > 50  # python + torch
    # progress lines and the summary table
    assert "[2/2]" in captured.err and "2 solved" in captured.err
    assert "vnncomp2021/test" in captured.out and "ERROR:" not in captured.out

    # resume: nothing left to run in this range, rows untouched
    before = (out / "results.csv").read_text()
    rc = main(["run", str(suite), "--out", str(out), "--range", "3:5", "--resume"])
    captured = capsys.readouterr()
    assert rc == 0
    assert "2 already in" in captured.err and "0 to run" in captured.err
    assert (out / "results.csv").read_text() == before
    assert "vnncomp2021/test" in captured.out  # summary of the earlier rows

    # an existing results.csv is never overwritten by accident
    assert main(["run", str(suite), "--out", str(out), "--range", "3:5"]) == 2
    assert "--resume" in capsys.readouterr().err


@pytest.mark.benchmarks
def test_vnncomp2023_gzipped_sat_instance(bench_root):
    """A real VNN-COMP 2023 instance: only .gz files on disk, instances.csv and expected.csv
    name the plain files; the sat answer's counterexample re-checks on the gzipped model."""
    from planecut.benchmarks.instance import RunOptions, run_instance
    from planecut.benchmarks.suite import load_benchmark

    bench = bench_root / "vnncomp2023" / "dist_shift"
    if not (bench / "instances.csv").is_file():
        pytest.skip(f"{bench} not present")
    inst = next(i for i in load_benchmark(bench) if i.expected == "sat")
    assert not inst.onnx.endswith(".gz") and inst.onnx_path.name.endswith(".onnx.gz")
    assert inst.vnnlib_path.name.endswith(".vnnlib.gz") and inst.vnnlib_path.is_file()
    r = run_instance(inst, RunOptions(timeout=60, device="cpu"))
    assert r.verdict == "sat", r.error
    assert r.counterexample_ok is True and not r.is_error


def test_contradiction_with_expected_is_an_error_row(suite_factory, tmp_path, capsys):
    # robust (truly unsat) is listed as sat: planecut's unsat must show as ERROR, exit 1
    suite = suite_factory(tmp_path / "suite", {"tiny_fc_robust.vnnlib": "sat",
                                               "tiny_fc_falsifiable.vnnlib": "sat"})
    out = tmp_path / "out"
    rc = main(["run", str(suite), "--out", str(out), "--jobs", "2", "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 1, captured
    rows = {r["vnnlib"]: r for r in read_rows(out / "results.csv")}
    robust, falsifiable = rows["tiny_fc_robust.vnnlib"], rows["tiny_fc_falsifiable.vnnlib"]
    assert robust["verdict"] == "unsat" and robust["check"] == "ERROR"
    assert falsifiable["verdict"] == "sat" and falsifiable["check"] == "ok"
    assert falsifiable["counterexample_ok"] == "true"
    assert "ERROR: suite/tiny tiny_fc.onnx tiny_fc_robust.vnnlib: unsat, expected sat" \
        in captured.out
    assert "<-- ERROR" in captured.err


def test_gzipped_suite_runs_from_the_listed_names_then_resumes(gz_suite, tmp_path, capsys):
    """instances.csv names tiny_fc.onnx where only tiny_fc.onnx.gz exists (VNN-COMP 2023):
    planecut verifies the .gz files, re-checks the counterexample on the gzipped model and
    matches expected.csv rows written as ./NAME.gz."""
    out = tmp_path / "out"
    rc = main(["run", str(gz_suite), "--out", str(out), "--jobs", "2", "--device", "cpu"])
    captured = capsys.readouterr()
    assert rc == 0, captured
    rows = {r["vnnlib"]: r for r in read_rows(out / "results.csv")}
    assert set(rows) == {"tiny_fc_robust.vnnlib", "tiny_fc_falsifiable.vnnlib"}
    robust, falsifiable = rows["tiny_fc_robust.vnnlib"], rows["tiny_fc_falsifiable.vnnlib"]
    assert robust["onnx"] == "tiny_fc.onnx" and robust["verdict"] == "unsat"
    assert falsifiable["verdict"] == "sat" and falsifiable["counterexample_ok"] == "true"
    assert all(r["check"] == "ok" and r["error"] == "" for r in rows.values())
    rc = main(["run", str(gz_suite), "--out", str(out), "--resume"])
    assert rc == 0 and "0 to run" in capsys.readouterr().err


def test_select_glob_and_timeout_override(tiny_suite, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["run", str(tiny_suite), "--out", str(out), "--select", "*robust*",
               "--timeout", "20", "--timeout-scale", "0.5"])
    assert rc == 0, capsys.readouterr()
    (row,) = read_results(out / "results.csv")
    assert row.vnnlib == "tiny_fc_robust.vnnlib" and row.verdict == "unsat"
    assert row.timeout == 10.0


def test_usage_errors(tiny_suite, tmp_path, capsys):
    out = str(tmp_path / "out")
    assert main(["run", str(tmp_path / "empty"), "--out", out]) == 2
    assert main(["run", str(tiny_suite), "--out", out, "--range", "x"]) == 2
    assert main(["run", str(tiny_suite), "--out", out, "--resume", "--force"]) == 2
    assert main(["run", str(tiny_suite), "--out", out, "--address", "a:1"]) == 2
    assert not (tmp_path / "out" / "results.csv").exists()
    capsys.readouterr()


def test_run_suite_script_keeps_its_options(tiny_suite, tmp_path, capsys):
    from planecut.benchmarks import run_suite

    out = tmp_path / "rs.csv"
    rc = run_suite.main([str(tiny_suite), "--timeout", "30", "--limit", "1", "--benchmarks",
                         "tiny", "--csv", str(out), "--device", "cpu"])
    assert rc == 0, capsys.readouterr()
    (row,) = read_rows(out)
    assert (row["benchmark"], row["verdict"]) == ("suite/tiny", "unsat")
    assert "suite/tiny" in capsys.readouterr().out
