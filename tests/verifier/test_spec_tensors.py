import numpy as np
import torch

from planecut.verifier.spec_tensors import SpecTensors
from planecut.vnnlib.spec import Disjunct, InputRegion, Spec


def _spec():
    # region 0: two disjuncts (y0 <= y1) or (y2 <= 0 and y0 <= 1); region 1: one empty disjunct
    d0 = Disjunct(np.array([[1.0, -1.0, 0.0]]), np.array([0.0]))
    d1 = Disjunct(np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]), np.array([0.0, 1.0]))
    empty = Disjunct(np.zeros((0, 3)), np.zeros(0))
    r0 = InputRegion(np.zeros(2), np.ones(2), (d0, d1))
    r1 = InputRegion(np.full(2, 2.0), np.full(2, 3.0), (empty,))
    return Spec(regions=(r0, r1), num_inputs=2, num_outputs=3)


def test_layout_and_margins_match_spec_semantics():
    spec = _spec()
    st = SpecTensors.from_spec(spec, dtype=torch.float64)
    assert st.C.shape == (2, 3, 3) and st.num_disjuncts == 2
    rng = np.random.default_rng(0)
    for _ in range(200):
        y = rng.normal(size=3)
        m = st.margin(torch.tensor(np.stack([y, y])))
        x0 = np.full(2, 0.5)
        assert (float(m[0]) <= 0) == spec.is_violated_by(x0, y)
        assert float(m[1]) == float("-inf")  # empty conjunction: always violated


def test_proven_disjuncts_needs_one_row_above_threshold():
    st = SpecTensors.from_spec(_spec(), regions=[0], dtype=torch.float64)
    # rows: [d0 row, d1 row a, d1 row b]; thresholds d = [0, 0, 1]
    lb = torch.tensor([[0.1, -5.0, 1.5]])
    assert st.proven_disjuncts(lb).tolist() == [[True, True]]
    lb = torch.tensor([[0.0, -5.0, 0.9]])  # 0 is not > 0: not proven
    assert st.proven_disjuncts(lb).tolist() == [[False, False]]


def test_padding_disjunct_slots_never_block_or_violate():
    spec = _spec()
    st = SpecTensors.from_spec(spec, dtype=torch.float64)
    lb = torch.full((2, 3), 10.0)
    proven = st.proven_disjuncts(lb)
    assert proven[0].all()
    assert proven[1].tolist() == [False, True]  # empty disjunct unprovable, pad slot ignored


def test_repeat_keeps_region_index():
    st = SpecTensors.from_spec(_spec()).repeat(3)
    assert st.region_index.tolist() == [0, 0, 0, 1, 1, 1]


def test_proof_margin_refuses_proofs_within_rounding():
    st = SpecTensors.from_spec(_spec(), regions=[0], dtype=torch.float64)
    lb = torch.tensor([[1e-7, -5.0, 1.0 + 1e-7]])
    assert st.proven_disjuncts(lb).tolist() == [[True, True]]
    assert st.proven_disjuncts(lb, margin=1e-5).tolist() == [[False, False]]
    lb = torch.tensor([[1e-3, -5.0, 1.01]])
    assert st.proven_disjuncts(lb, margin=1e-5).tolist() == [[True, True]]


def _three_disjunct_spec():
    # two regions, disjuncts of 1, 2 and 1 rows over 3 outputs
    d0 = Disjunct(np.array([[1.0, -1.0, 0.0]]), np.array([0.0]))
    d1 = Disjunct(np.array([[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]), np.array([0.0, 1.0]))
    d2 = Disjunct(np.array([[0.0, 1.0, -1.0]]), np.array([0.5]))
    r0 = InputRegion(np.zeros(2), np.ones(2), (d0, d1, d2))
    r1 = InputRegion(np.ones(2), np.full(2, 2.0), (d0, d1, d2))
    return Spec(regions=(r0, r1), num_inputs=2, num_outputs=3)


def test_without_proven_keeps_open_rows_and_semantics():
    """Dropping the rows of proven disjuncts: the kept rows, in order, packed first; on every
    output the margin is the old one over the open disjuncts only."""
    st = SpecTensors.from_spec(_three_disjunct_spec(), dtype=torch.float64)
    proven = torch.tensor([[True, False, True], [False, True, True]])
    new, order = st.without_proven(proven)
    assert new.C.shape == (2, 2, 3) and order.shape == (2, 2)
    assert order[0].tolist() == [1, 2]  # region 0: disjunct 1's two rows
    assert order[1, 0].item() == 0  # region 1: disjunct 0's row, then padding
    assert new.row_disjunct.tolist() == [[1, 1], [0, 3]]
    assert torch.equal(new.C[0], st.C[0, 1:3]) and torch.equal(new.C[1, 0], st.C[1, 0])
    assert (new.C[1, 1] == 0).all() and new.d[1, 1] == 0
    rng = np.random.default_rng(1)
    for _ in range(100):
        y = torch.tensor(rng.normal(size=(2, 3)) * 2)
        per_dj = st.disjunct_max(st.row_values(y)).masked_fill(proven, float("inf"))
        assert torch.allclose(new.margin(y), per_dj.min(dim=1).values)
    # the row bounds of the kept rows prove the region exactly when the open disjuncts fall
    lb = torch.tensor([[-1.0, 0.5, -1.0, 0.0], [0.2, -1.0, -1.0, 0.0]], dtype=torch.float64)
    assert new.proven_disjuncts(lb.gather(1, order)).all(dim=1).tolist() == [True, True]
    lb[1, 0] = -0.1
    assert new.proven_disjuncts(lb.gather(1, order)).all(dim=1).tolist() == [True, False]


def test_without_proven_everything_proven_is_one_padding_row():
    st = SpecTensors.from_spec(_three_disjunct_spec(), regions=[0], dtype=torch.float64)
    new, order = st.without_proven(torch.ones(1, 3, dtype=torch.bool))
    assert new.C.shape == (1, 1, 3) and new.row_disjunct.tolist() == [[3]]
    assert new.proven_disjuncts(torch.full((1, 1), -9.0, dtype=torch.float64)).all()
