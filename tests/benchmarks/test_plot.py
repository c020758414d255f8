"""Cactus plot and bar chart: PNG files, one line / one bar group per results file."""

from __future__ import annotations

from pathlib import Path

import sys

import pytest

from planecut.benchmarks.cli import main
from planecut.benchmarks.plot import plot_runs
from planecut.benchmarks.score import load_runs

HEADER = "benchmark,onnx,vnnlib,verdict,expected,seconds\n"


def _csv(path: Path, rows: list[str]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + "".join(r + "\n" for r in rows))
    return path


def test_cactus_and_bars(tmp_path):
    pytest.importorskip("matplotlib")
    a = _csv(tmp_path / "A" / "results.csv", ["s/x,1.onnx,p,unsat,unsat,1.5",
                                              "s/x,2.onnx,p,sat,sat,3", "s/y,3.onnx,p,unsat,,7"])
    b = _csv(tmp_path / "B" / "results.csv", ["s/x,1.onnx,p,timeout,unsat,60",
                                              "s/x,2.onnx,p,unsat,sat,2"])  # wrong: not solved
    c = _csv(tmp_path / "C.csv", ["s/y,3.onnx,p,unsat,,0.5"])
    out = tmp_path / "plots" / "cactus.png"
    cactus, bars = plot_runs(load_runs([a, b, c]), out)
    assert out.stat().st_size > 1000
    assert (tmp_path / "plots" / "cactus_bars.png").stat().st_size > 1000
    (ax,) = cactus.axes
    lines = ax.get_lines()
    assert len(lines) == 3
    assert [len(line.get_xdata()) for line in lines] == [3, 0, 1]  # solved per run
    (bax,) = bars.axes
    assert len(bax.containers) == 3
    assert [[p.get_height() for p in cont] for cont in bax.containers] == \
        [[2, 1], [0, 0], [0, 1]]


def test_plot_command(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    a = _csv(tmp_path / "A.csv", ["s/x,1.onnx,p,unsat,unsat,1.5"])
    assert main(["plot", str(a), "--out", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").exists() and (tmp_path / "p_bars.png").exists()
    assert "p_bars.png" in capsys.readouterr().out


def test_missing_matplotlib_is_a_clear_error(tmp_path, capsys, monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    a = _csv(tmp_path / "A.csv", ["s/x,1.onnx,p,unsat,unsat,1.5"])
    assert main(["plot", str(a), "--out", str(tmp_path / "p.png")]) == 2
    assert "needs matplotlib" in capsys.readouterr().err
    assert not (tmp_path / "p.png").exists()
