"""Instance discovery, selection and the results.csv writer/reader (no subprocesses)."""

from __future__ import annotations

import dataclasses
import math

import pytest

from planecut.benchmarks.instance import InstanceResult
from planecut.benchmarks.results import (COLUMNS, ResultsWriter, check_label, done_keys,
                                         read_results)
from planecut.benchmarks.suite import (file_key, load_suite, parse_range, read_expected,
                                       select_instances)


def test_load_suite_names_paths_and_expected(tiny_suite):
    insts = load_suite(tiny_suite)
    assert [i.vnnlib for i in insts] == ["tiny_fc_robust.vnnlib", "tiny_fc_falsifiable.vnnlib"]
    assert {i.benchmark for i in insts} == {"suite/tiny"}
    assert [i.expected for i in insts] == ["unsat", "sat"]
    assert all(i.onnx_path.is_file() and i.vnnlib_path.is_file() for i in insts)
    assert load_suite(tiny_suite, ["tiny"]) == insts
    assert load_suite(tiny_suite, ["other*"]) == []


def test_listed_path_falls_back_to_gz_and_expected_rows_match_any_form(gz_suite):
    insts = load_suite(gz_suite)
    # names as instances.csv writes them; paths to the .gz files that stand for them
    assert [i.vnnlib for i in insts] == ["tiny_fc_robust.vnnlib", "tiny_fc_falsifiable.vnnlib"]
    assert [i.onnx_path.name for i in insts] == ["tiny_fc.onnx.gz"] * 2
    assert [i.vnnlib_path.name for i in insts] == ["tiny_fc_robust.vnnlib.gz",
                                                    "tiny_fc_falsifiable.vnnlib.gz"]
    assert all(i.onnx_path.is_file() and i.vnnlib_path.is_file() for i in insts)
    assert [i.expected for i in insts] == ["unsat", "sat"]  # expected.csv says ./NAME.gz
    assert read_expected(gz_suite / "tiny")[("tiny_fc.onnx", "tiny_fc_robust.vnnlib")] == "unsat"
    # a listed path that exists is used as it is; one missing in both forms stays as listed
    (gz_suite / "tiny" / "tiny_fc.onnx").write_bytes(b"")
    assert load_suite(gz_suite)[0].onnx_path.name == "tiny_fc.onnx"
    (gz_suite / "tiny" / "tiny_fc_robust.vnnlib.gz").unlink()
    assert load_suite(gz_suite)[0].vnnlib_path.name == "tiny_fc_robust.vnnlib"


def test_file_key():
    for name in ("onnx/x.onnx", "onnx/x.onnx.gz", "./onnx/x.onnx.gz", " onnx/x.onnx "):
        assert file_key(name) == "onnx/x.onnx"


def test_select_and_range(tiny_suite):
    insts = load_suite(tiny_suite)
    assert [i.vnnlib for i in select_instances(insts, ["*falsif*"])] == \
        ["tiny_fc_falsifiable.vnnlib"]
    assert len(select_instances(insts, ["tiny_fc.onnx"])) == 2  # onnx names match too
    assert select_instances(insts, None, parse_range("1:")) == insts[1:]
    assert select_instances(insts, None, parse_range(":1")) == insts[:1]
    for bad in ("3", "a:b"):
        with pytest.raises(ValueError):
            parse_range(bad)


def _result(**kw) -> InstanceResult:
    base = dict(benchmark="s/b", onnx="n.onnx", vnnlib="p.vnnlib", timeout=60.0,
                verdict="unsat", expected="unsat", seconds=1.5, startup_seconds=1.0,
                peak_memory_mb=300.0, exit_code=0)
    base.update(kw)
    return InstanceResult(**base)


def test_error_classification():
    assert check_label(_result()) == "ok"
    assert check_label(_result(expected="sat")) == "ERROR"
    assert check_label(_result(verdict="sat", expected="sat", counterexample_ok=False)) == \
        "ERROR"
    assert check_label(_result(verdict="sat", expected="", counterexample_ok=False)) == "ERROR"
    assert check_label(_result(verdict="timeout", expected="sat")) == ""
    assert not _result(expected="sat").solved and _result().solved


def test_writer_round_trip_and_resume_after_a_cut_row(tmp_path):
    path = tmp_path / "results.csv"
    rows = [_result(), _result(vnnlib="q.vnnlib", verdict="sat", expected="",
                               counterexample_ok=True, error="x\ny")]
    with ResultsWriter(path, append=False) as w:
        w.write(rows[0])
    assert path.read_text().splitlines()[0] == ",".join(COLUMNS)
    with open(path, "a") as fh:  # a run killed in the middle of writing a row
        fh.write("s/b,cut.onnx")
    with ResultsWriter(path, append=True) as w:
        w.write(rows[1])
    back = read_results(path)
    assert [r.vnnlib for r in back] == ["p.vnnlib", "q.vnnlib"]  # the cut row is dropped
    assert back[1].counterexample_ok is True and back[1].error == "x y"
    assert back[0] == dataclasses.replace(rows[0], host="")
    assert done_keys(path) == {("s/b", "n.onnx", "p.vnnlib"), ("s/b", "n.onnx", "q.vnnlib")}
    with ResultsWriter(path, append=True) as w:  # the same instance listed as .gz: one key
        w.write(_result(onnx="n.onnx.gz", vnnlib="./q.vnnlib.gz"))
    assert len(done_keys(path)) == 2


def test_reader_accepts_reference_csvs(tmp_path):
    path = tmp_path / "ref.csv"
    path.write_text("benchmark,onnx,vnnlib,result,wall_s,peak_rss_mb\n"
                    "test,a.onnx,p.vnnlib,holds,8.5,514\ntest,b.onnx,p.vnnlib,violated,2,500\n")
    a, b = read_results(path)
    assert (a.verdict, a.seconds, a.peak_memory_mb) == ("unsat", 8.5, 514.0)
    assert b.verdict == "sat" and b.counterexample_ok is None and math.isnan(b.timeout)


def test_append_refuses_a_foreign_file(tmp_path):
    path = tmp_path / "results.csv"
    path.write_text("a,b\n1,2\n")
    with pytest.raises(ValueError):
        ResultsWriter(path, append=True)
