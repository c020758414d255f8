"""``preset: auto``: features of the model and the spec, and the preset they lead to."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import numpy as np
import pytest

from planecut.verifier.config import (LARGE_NEURONS, VerifierConfig, apply_preset,
                                      auto_preset)
from planecut.verifier.features import ModelFeatures, model_features
from planecut.verifier.graph import load_onnx
from planecut.vnnlib.spec import Disjunct, InputRegion, Spec

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from testnets import make_conv_residual, make_fc  # noqa: E402


def box_spec(lower, upper, num_outputs: int, rows: int = 1, regions: int = 1) -> Spec:
    """``regions`` copies of the box, each with one disjunct of ``rows`` rows."""
    lo, hi = np.asarray(lower, dtype=np.float64), np.asarray(upper, dtype=np.float64)
    dj = Disjunct(np.ones((rows, num_outputs)), np.zeros(rows))
    return Spec(tuple(InputRegion(lo, hi, (dj,)) for _ in range(regions)), lo.size, num_outputs)


def features_of(path, lower, upper, **kw) -> ModelFeatures:
    g = load_onnx(path)
    return model_features(g, box_spec(lower, upper, g.num_outputs, **kw))


def test_fc_relu_features_and_choice(tmp_path):
    f = features_of(make_fc(tmp_path / "fc.onnx", [30, 8, 6, 3], seed=0).path,
                    np.zeros(30), np.ones(30), rows=2, regions=3)
    assert (f.num_inputs, f.num_outputs, f.free_inputs) == (30, 3, 30)
    assert (f.num_regions, f.num_disjuncts, f.max_rows) == (3, 3, 2)
    assert f.nonlinear_kinds == {"relu"} and f.relu_neurons == f.nonlinear_neurons == 14
    assert (f.depth, f.max_width) == (2, 8)
    assert f.piecewise_linear and not f.piecewise_constant
    assert not f.has_conv and not f.has_residual
    choice = auto_preset(f)
    assert choice.name == "fully_connected" and choice.adjust == {}
    assert "fully connected" in str(choice)


def test_few_inputs_split_the_input_whatever_the_activation(tmp_path):
    for act in ("Relu", "Sigmoid"):
        f = features_of(make_fc(tmp_path / f"{act}.onnx", [4, 6, 2], seed=1, act=act).path,
                        -np.ones(4), np.ones(4))
        choice = auto_preset(f)
        assert choice.name == "input_split" and choice.adjust == {}, act


def test_sigmoid_net_gets_the_general_nonlinear_preset(tmp_path):
    f = features_of(make_fc(tmp_path / "s.onnx", [100, 8, 8, 3], seed=2, act="Sigmoid").path,
                    np.zeros(100), np.ones(100))
    assert f.nonlinear_kinds == {"sigmoid"} and not f.piecewise_linear
    assert f.relu_neurons == 0 and f.nonlinear_neurons == 16
    choice = auto_preset(f)
    assert choice.name == "general_nonlinear" and "sigmoid" in str(choice)
    cfg = apply_preset(VerifierConfig(), choice.name, choice.adjust)
    assert cfg.cuts.mode == "off" and cfg.bab.mode == "activation"
    assert cfg.bounds.methods == ("crown", "alpha-crown")


def test_input_split_goes_further_for_nets_without_activation_split(tmp_path):
    """30 free inputs: a ReLU net has activation split, a sigmoid net only input split."""
    for act, preset in (("Relu", "fully_connected"), ("Sigmoid", "input_split")):
        net = make_fc(tmp_path / f"{act}.onnx", [30, 8, 3], seed=6, act=act)
        f = features_of(net.path, np.zeros(30), np.ones(30))
        assert auto_preset(f).name == preset, act
    f = dataclasses.replace(f, num_inputs=200, free_inputs=4 * 20 + 1)
    assert auto_preset(f).name == "general_nonlinear"


def test_conv_residual_net_is_convolutional(tmp_path):
    f = features_of(make_conv_residual(tmp_path / "c.onnx"), np.zeros(50), np.ones(50))
    assert f.has_conv and f.has_residual and f.piecewise_linear
    assert f.num_inputs == 50 and f.depth == 2 and f.relu_neurons == 2 * 27
    assert auto_preset(f).name == "convolutional"


def test_spec_that_fixes_most_coordinates_is_low_dimensional(tmp_path):
    """40 inputs, 37 of them fixed (lower == upper) in every region: 3 free dimensions."""
    net = make_fc(tmp_path / "fc.onnx", [40, 8, 3], seed=3)
    lower = np.full(40, 0.5)
    upper = lower.copy()
    upper[[3, 17, 31]] += 0.1
    f = features_of(net.path, lower, upper)
    assert f.num_inputs == 40 and f.free_inputs == 3
    choice = auto_preset(f)
    assert choice.name == "input_split"
    # lookahead would bound two children along each of the 37 fixed coordinates too
    assert choice.adjust == {"bab": {"input_branching": "sb"}}
    cfg = apply_preset(VerifierConfig(), choice.name, choice.adjust)
    assert cfg.bab.mode == "input" and cfg.bab.input_branching == "sb"
    # a threshold below the free count goes by the layers again
    assert auto_preset(f, input_split_max_dim=2).name == "fully_connected"


def test_empty_counterexample_region_has_no_free_inputs(tmp_path):
    g = load_onnx(make_fc(tmp_path / "fc.onnx", [30, 4, 2], seed=4).path)
    f = model_features(g, Spec((), 30, 2))
    assert (f.free_inputs, f.num_regions, f.max_rows) == (0, 0, 0)
    assert auto_preset(f).name == "input_split"


BASE = ModelFeatures(num_inputs=3072, num_outputs=10, free_inputs=3072, num_regions=1,
                     num_disjuncts=9, max_rows=9, nonlinear_kinds=frozenset({"relu"}),
                     relu_neurons=6000, nonlinear_neurons=6000, depth=4, max_width=2048,
                     has_conv=True, has_residual=False)


@pytest.mark.parametrize("kinds, preset", [
    ({"relu"}, "convolutional"), ({"relu", "maxpool"}, "convolutional"),
    ({"relu", "product"}, "general_nonlinear"), ({"exp", "reciprocal", "product"},
                                                  "general_nonlinear"),
    ({"sign", "maxpool"}, "general_nonlinear"), ({"tanh"}, "general_nonlinear"),
    ({"sin", "cos", "pow", "relu"}, "general_nonlinear")])
def test_nonlinear_kinds_decide_between_relu_and_general_presets(kinds, preset):
    f = dataclasses.replace(BASE, nonlinear_kinds=frozenset(kinds))
    assert auto_preset(f).name == preset
    assert f.piecewise_constant == ("sign" in kinds)
    assert f.piecewise_linear == (preset == "convolutional")


def test_large_networks_get_cheaper_settings():
    assert auto_preset(BASE).adjust == {}  # measured sizes keep the preset as it is
    big = dataclasses.replace(BASE, relu_neurons=LARGE_NEURONS, nonlinear_neurons=LARGE_NEURONS)
    choice = auto_preset(big)
    assert choice.name == "convolutional" and "large" in str(choice)
    cfg = apply_preset(VerifierConfig(), choice.name, choice.adjust)
    assert cfg.bab.batch_size == apply_preset(VerifierConfig(), "convolutional").bab.batch_size // 4
    assert cfg.bounds.alpha_iterations == 20
    # many spec rows make a mid-sized net expensive too (one backward row per spec row)
    rows = dataclasses.replace(BASE, num_disjuncts=600, max_rows=600)
    assert auto_preset(rows).adjust["bounds"] == {"alpha_iterations": 20}
    # and the user's own settings still win over the adjustment
    user = dataclasses.replace(VerifierConfig(), bab=dataclasses.replace(
        VerifierConfig().bab, batch_size=7))
    assert apply_preset(user, choice.name, choice.adjust).bab.batch_size == 7


def test_large_input_split_keeps_its_branching_and_quarters_its_batch():
    f = dataclasses.replace(BASE, num_inputs=5, free_inputs=4, nonlinear_neurons=100_000,
                            relu_neurons=100_000)
    choice = auto_preset(f)
    cfg = apply_preset(VerifierConfig(), choice.name, choice.adjust)
    ref = apply_preset(VerifierConfig(), "input_split")
    assert choice.name == "input_split" and cfg.bab.input_branching == ref.bab.input_branching
    assert cfg.bab.batch_size == ref.bab.batch_size // 4


def test_verify_logs_the_features_and_the_choice(tmp_path):
    """The API picks the preset from the spec: 3 free coordinates of 40 -> input split."""
    from planecut.verifier.api import verify

    net = make_fc(tmp_path / "fc.onnx", [40, 8, 3], seed=5)
    spec = tmp_path / "p.vnnlib"
    lines = [f"(declare-const X_{i} Real)" for i in range(40)]
    lines += [f"(declare-const Y_{i} Real)" for i in range(3)]
    for i in range(40):
        hi = 0.6 if i in (3, 17, 31) else 0.5
        lines += [f"(assert (>= X_{i} 0.5))", f"(assert (<= X_{i} {hi}))"]
    lines.append("(assert (>= Y_0 1000000.0))")
    spec.write_text("\n".join(lines) + "\n")
    log: list[str] = []
    cfg = dataclasses.replace(VerifierConfig(), device="cpu")
    result = verify(net.path, spec, timeout=30, config=cfg, log=log.append)
    assert result.verdict == "unsat", result.message
    assert any(line.startswith("features: 40 inputs (3 free)") for line in log), log
    assert any(line.startswith("preset: input_split (3 free input(s) of 40") for line in log)
