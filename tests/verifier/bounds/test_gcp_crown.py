"""GCP-CROWN: bounds with cutting planes are sound, tight against the LP with the same cuts,
and the indicator rule is right for active, inactive and unstable (split or not) neurons."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.optimize import linprog

from planecut.mip_cuts.backends.highs import solve_highs
from planecut.mip_cuts.backends.scip import solve_scip
from planecut.mip_cuts.milp import build_milp
from planecut.mip_cuts.validate import cuts_from_rows, sample_inputs, validate
from planecut.verifier.bounds import CUT_KEY, AlphaOptions, compute_bounds, cut_terms
from planecut.verifier.bounds.gcp_crown import relu_backward_gcp
from planecut.verifier.bounds.relaxations import relu_relaxation

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from testnets import encode, make_fc  # noqa: E402


@pytest.mark.parametrize("seed", range(40))
def test_indicator_rule_is_valid_over_the_neuron_relaxation(seed):
    """For one neuron, coefficient ``λ`` on ``y`` and ``c`` on ``a``: the rule's
    ``coeff·z + const`` never exceeds ``λ·y + c·a`` on the relaxed set (triangle with the
    big-M rows, a in [0, 1]), and is tight there (an LP over 3 variables)."""
    rng = np.random.default_rng(seed)
    kind = ["unstable", "active", "inactive"][seed % 3]
    if kind == "unstable":
        l, u = -rng.uniform(0.1, 2), rng.uniform(0.1, 2)
    elif kind == "active":
        l, u = rng.uniform(0, 1), rng.uniform(1, 2)
    else:
        l, u = -rng.uniform(1, 2), -rng.uniform(0, 1)
    lam, c = rng.normal(), rng.normal()
    relax = relu_relaxation(torch.tensor([[l]], dtype=torch.float64),
                            torch.tensor([[u]], dtype=torch.float64))
    alpha = torch.tensor([[[rng.uniform()]]], dtype=torch.float64)
    coeff, const = relu_backward_gcp(torch.tensor([[[lam]]], dtype=torch.float64), relax,
                                     alpha, torch.tensor([[[c]]], dtype=torch.float64))
    k, b = float(coeff.reshape(-1)[0]), float(const.reshape(-1)[0])
    # variables (z, y, a); minimise lam*y + c*a - k*z over the neuron's relaxation
    if kind == "unstable":
        A = [[1, -1, 0],      # z - y <= 0
             [-1, 1, -l],     # y - z - l a <= -l
             [0, 1, -u]]      # y - u a <= 0
        rhs = [0, -l, 0]
        bounds = [(l, u), (0, u), (0, 1)]
    elif kind == "active":
        A, rhs, bounds = [[1, -1, 0], [-1, 1, 0]], [0, 0], [(l, u), (l, u), (1, 1)]
    else:
        A, rhs, bounds = None, None, [(l, u), (0, 0), (0, 0)]
    res = linprog([-k, lam, c], A_ub=A, b_ub=rhs, bounds=bounds, method="highs")
    assert res.status == 0
    assert b <= res.fun + 1e-9
    if kind != "unstable" or lam < 0:  # the upper side is the exact dual of the relaxation
        assert b >= res.fun - 1e-9


def _setup(seed: int, tmp: Path):
    net = make_fc(tmp / f"g{seed}.onnx", [4, 12, 12, 3], seed)
    rng = np.random.default_rng(seed)
    c0 = rng.uniform(-1, 1, 4)
    xl, xu = c0 - 1, c0 + 1
    g, enc = encode(net.path, xl, xu)
    C, d = np.array([[1.0, -1.0, 0.0]]), np.zeros(1)
    m = build_milp(enc, C, d)
    raw = []
    solve_scip(m, time_limit=5, on_cuts=raw.extend)
    cs = cuts_from_rows(m.layout, [(r.cols, r.vals, r.rhs) for r in raw])
    cs, _ = validate(cs, enc, sample_inputs(enc, 2000, rng))
    given = {L.name: (torch.tensor(L.lower).reshape(1, *L.shape),
                      torch.tensor(L.upper).reshape(1, *L.shape)) for L in enc.layers}
    return net, g, enc, m, cs, given, xl, xu, C


@pytest.mark.parametrize("seed", [0, 2, 3])
def test_gcp_bound_is_sound_and_close_to_the_lp_with_cuts(tmp_path, seed):
    net, g, enc, m, cs, given, xl, xu, C = _setup(seed, tmp_path)
    assert len(cs) > 10
    lp0 = solve_highs(m, relax=True).objective
    lp1 = solve_highs(m.with_rows(cs.coeffs, np.full(len(cs), -np.inf), cs.rhs),
                      relax=True).objective
    assert lp1 > lp0 + 0.1
    tl, tu, Ct = torch.tensor(xl)[None], torch.tensor(xu)[None], torch.tensor(C)
    opts = AlphaOptions(iterations=600, lr=0.05, lr_beta=0.05, lr_decay=0.995,
                        early_stop_patience=100)
    res = compute_bounds(g, tl, tu, Ct, "alpha-crown", alpha=opts, intermediate=given,
                         cuts=cut_terms(cs, g, tl))
    gcp = float(res.lower)
    assert gcp <= lp1 + 1e-6  # never above the LP with the same cuts (weak duality)
    assert gcp >= lp0 + 0.85 * (lp1 - lp0)  # and recovers most of what the cuts add
    assert res.betas[CUT_KEY].shape == (1, 1, len(cs)) and bool((res.betas[CUT_KEY] >= 0).all())
    X = sample_inputs(enc, 20000, np.random.default_rng(99))
    assert gcp <= float((net.forward(X) @ C.T).min()) + 1e-9
    # the option that optimises the upper-side weights too stays sound
    opts.optimise_cut_relaxation = True
    res2 = compute_bounds(g, tl, tu, Ct, "alpha-crown", alpha=opts, intermediate=given,
                          cuts=cut_terms(cs, g, tl))
    assert float(res2.lower) <= lp1 + 1e-6


def test_gcp_with_splits_and_warm_start(tmp_path):
    """Cuts and split constraints together stay sound on the split subdomain; a warm start
    with fewer multipliers than cuts pads the new cuts with zeros."""
    net, g, enc, m, cs, given, xl, xu, C = _setup(1, tmp_path)
    L0 = enc.layers[0]
    j = int(np.flatnonzero(L0.unstable)[0])
    rng = np.random.default_rng(5)
    X = rng.uniform(xl, xu, size=(40000, 4))
    zs, _, out = enc.forward(X)
    tl, tu, Ct = torch.tensor(xl)[None], torch.tensor(xu)[None], torch.tensor(C)
    cut_t = cut_terms(cs, g, tl)
    for sign in (1, -1):
        splits = [torch.zeros(1, L.size, dtype=torch.int8) for L in enc.layers]
        splits[0][0, j] = sign
        inter = {k: (lo.clone(), hi.clone()) for k, (lo, hi) in given.items()}
        name = enc.layers[0].name
        lo, hi = inter[name]
        if sign > 0:
            lo.view(-1)[j] = max(0.0, float(lo.view(-1)[j]))
        else:
            hi.view(-1)[j] = min(0.0, float(hi.view(-1)[j]))
        res = compute_bounds(g, tl, tu, Ct, "alpha-crown", intermediate=inter, splits=splits,
                             cuts=cut_t, alpha=AlphaOptions(iterations=50))
        keep = zs[0][:, j] >= 0 if sign > 0 else zs[0][:, j] <= 0
        assert float(res.lower) <= float((out[keep] @ C.T).min()) + 1e-9
        warm = {CUT_KEY: res.betas[CUT_KEY][:, :, : len(cs) // 2]}
        res2 = compute_bounds(g, tl, tu, Ct, "alpha-crown", intermediate=inter, splits=splits,
                              cuts=cut_t, beta_init=warm, alpha=AlphaOptions(iterations=5))
        assert res2.betas[CUT_KEY].shape[2] == len(cs)
        assert float(res2.lower) <= float((out[keep] @ C.T).min()) + 1e-9
