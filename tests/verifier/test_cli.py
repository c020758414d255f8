"""The planecut command as a user runs it: a subprocess, verdict on stdout, result file."""

from __future__ import annotations

import gzip
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
MODEL = EXAMPLES / "tiny_fc.onnx"
ROBUST = EXAMPLES / "tiny_fc_robust.vnnlib"
FALSIFIABLE = EXAMPLES / "tiny_fc_falsifiable.vnnlib"


def run_cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "planecut", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout)


def test_example_robust_is_unsat(tmp_path):
    out = tmp_path / "out.txt"
    p = run_cli("verify", MODEL, ROBUST, "--timeout", "30", "--result-file", out)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "unsat"
    assert out.read_text() == "unsat\n"


def test_example_falsifiable_is_sat_with_checked_counterexample(tmp_path):
    import numpy as np
    import onnxruntime as ort

    from planecut.vnnlib.counterexample import parse_counterexample
    from planecut.vnnlib.parse import parse_spec

    out = tmp_path / "out.txt"
    p = run_cli("verify", MODEL, FALSIFIABLE, "--timeout", "30", "--result-file", out)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "sat"
    text = out.read_text()
    assert text.startswith("sat\n")
    spec = parse_spec(FALSIFIABLE)
    x, y = parse_counterexample(text, spec)
    # re-check independently of planecut: onnxruntime output at x violates the property
    sess = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    y_ort = sess.run(None, {"X": np.asarray(x, dtype=np.float32).reshape(1, -1)})[0][0]
    assert np.allclose(y_ort, y, atol=1e-6)
    assert spec.is_violated_by(x, y_ort)


# tiny_fc_falsifiable.vnnlib as a VNN-LIB 2.0 query (the model's X [1,5] -> Y [1,3])
FALSIFIABLE_V2 = (
    "(vnnlib-version <2.0>)\n"
    "(declare-network N (declare-input X float32 [1,5]) (declare-output Y float32 [1,3]))\n"
    + "".join(f"(assert (and (>= X[0,{i}] {lo}) (<= X[0,{i}] {lo + 2.0:.1f})))\n"
              for i, lo in enumerate((-0.5, -1.2, -0.7, -0.9, -1.4)))
    + "(assert (or (>= Y[0,1] Y[0,0]) (>= Y[0,2] Y[0,0])))\n")


@pytest.mark.parametrize("version", ["1.0", "2.0"])
def test_gzipped_model_and_spec_sat_confirmed_by_onnxruntime(tmp_path, version):
    """VNN-COMP 2023 ships .onnx.gz and .vnnlib.gz: read directly, and the counterexample
    check runs onnxruntime on the gzipped model (decompressed), not on its path."""
    from planecut.benchmarks.recheck import recheck_counterexample

    model = tmp_path / "tiny_fc.onnx.gz"
    model.write_bytes(gzip.compress(MODEL.read_bytes()))
    text = FALSIFIABLE.read_text() if version == "1.0" else FALSIFIABLE_V2
    spec = tmp_path / "falsifiable.vnnlib.gz"
    spec.write_bytes(gzip.compress(text.encode()))
    out = tmp_path / "out.txt"
    p = run_cli("verify", model, spec, "--timeout", "30", "--result-file", out)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip() == "sat"
    assert "confirmed with onnxruntime" in p.stderr
    # independently: the plain files' onnxruntime outputs at the reported input violate it
    plain_spec = tmp_path / "falsifiable.vnnlib"
    plain_spec.write_text(text)
    assert recheck_counterexample(MODEL, plain_spec, out.read_text()).ok


def _bad_input_case(tmp_path: Path, name: str) -> tuple[Path, Path, str]:
    """(model, spec, words expected in the one-line message) for each kind of bad input."""
    spec_ok, model_ok = ROBUST, MODEL
    if name == "missing model":
        return tmp_path / "nope.onnx", spec_ok, "nope.onnx"
    if name == "empty model":
        p = tmp_path / "empty.onnx"
        p.write_bytes(b"")
        return p, spec_ok, "empty.onnx"
    if name == "truncated model":
        p = tmp_path / "trunc.onnx"
        p.write_bytes(MODEL.read_bytes()[:300])
        return p, spec_ok, "trunc.onnx"
    if name == "text as model":
        p = tmp_path / "text.onnx"
        p.write_text("this is not a model\n")
        return p, spec_ok, "text.onnx"
    if name == "corrupt gzip model":
        p = tmp_path / "cut.onnx.gz"
        p.write_bytes(gzip.compress(MODEL.read_bytes())[:200])
        return p, spec_ok, "cut.onnx.gz: corrupt or truncated gzip file"
    if name == "corrupt gzip spec":
        p = tmp_path / "cut.vnnlib.gz"
        p.write_bytes(gzip.compress(ROBUST.read_bytes())[:100])
        return model_ok, p, "cut.vnnlib.gz: corrupt or truncated gzip file"
    if name == "missing spec":
        return model_ok, tmp_path / "nope.vnnlib", "nope.vnnlib"
    if name == "empty spec":
        p = tmp_path / "empty.vnnlib"
        p.write_text("")
        return model_ok, p, "empty.vnnlib"
    if name == "syntax error":
        p = tmp_path / "bad.vnnlib"
        p.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n(assert (<= X_0 1)\n")
        return model_ok, p, "bad.vnnlib:3"
    if name == "dimension mismatch":
        p = tmp_path / "dims.vnnlib"
        p.write_text("(declare-const X_0 Real)\n(declare-const Y_0 Real)\n"
                     "(assert (<= X_0 1))\n(assert (>= X_0 0))\n(assert (<= Y_0 0))\n")
        return model_ok, p, "input"
    raise AssertionError(name)


@pytest.mark.parametrize("case", ["missing model", "empty model", "truncated model",
                                  "text as model", "corrupt gzip model", "missing spec",
                                  "empty spec", "syntax error", "corrupt gzip spec",
                                  "dimension mismatch"])
def test_bad_input_is_error_verdict_without_traceback(tmp_path, case):
    model, spec, words = _bad_input_case(tmp_path, case)
    out = tmp_path / "result.txt"
    p = run_cli("verify", model, spec, "--timeout", "20", "--result-file", out)
    assert p.returncode == 1, (p.stdout, p.stderr)
    assert p.stdout.strip() == "error"
    assert out.read_text() == "error\n"
    assert "Traceback" not in p.stderr
    err_lines = [ln for ln in p.stderr.splitlines() if ln.startswith("planecut:")]
    assert len(err_lines) == 1 and words in err_lines[0], p.stderr


def test_usage_errors_exit_2(tmp_path):
    assert run_cli().returncode == 2
    assert run_cli("verify", MODEL).returncode == 2
    assert run_cli("verify", MODEL, ROBUST, "--timeout", "-1").returncode == 2


def test_bad_config_is_error(tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text("attack:\n  restartz: 3\n")
    p = run_cli("verify", MODEL, ROBUST, "--config", cfg)
    assert p.returncode == 1 and p.stdout.strip() == "error"
    assert "restartz" in p.stderr and "Traceback" not in p.stderr


def test_timeout_is_honoured_within_about_a_second(tmp_path):
    """A tiny timeout must still produce an answer (timeout/unknown/verdict) promptly."""
    out = tmp_path / "out.txt"
    t = time.monotonic()
    p = run_cli("verify", MODEL, ROBUST, "--timeout", "0.05", "--result-file", out)
    elapsed = time.monotonic() - t
    assert p.returncode == 0, p.stderr
    assert out.read_text().split("\n")[0] in ("timeout", "unsat")
    # process start-up (python + imports) is included; generous bound, no tight timing check
    assert elapsed < 15


def test_watchdog_answers_when_the_computation_ignores_the_deadline(tmp_path):
    """A computation stuck past the deadline: the watchdog still writes `timeout` to stdout,
    the result file and the statistics file, within about a second of the timeout."""
    import json
    import textwrap

    root = Path(__file__).resolve().parents[2]
    script = tmp_path / "stuck.py"
    script.write_text(textwrap.dedent(f"""
        import sys, time
        import planecut.verifier.api as api
        api.verify = lambda *a, **k: time.sleep(60)  # never returns in time
        from planecut.verifier.cli import main
        sys.exit(main(["verify", {str(root / "examples/tiny_fc.onnx")!r},
                       {str(root / "examples/tiny_fc_robust.vnnlib")!r}, "--timeout", "2",
                       "--result-file", {str(tmp_path / "r.txt")!r},
                       "--stats", {str(tmp_path / "s.json")!r}, "--quiet"]))
    """))
    t = time.monotonic()
    p = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       timeout=60)
    took = time.monotonic() - t
    assert p.returncode == 0 and p.stdout.strip() == "timeout", p.stderr
    assert (tmp_path / "r.txt").read_text().strip() == "timeout"
    assert json.loads((tmp_path / "s.json").read_text())["verdict"] == "timeout"
    assert took < 30, took  # not the 60 s the stuck computation wanted
