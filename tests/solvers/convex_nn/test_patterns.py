"""Gate sampling, exact hyperplane arrangements and zonotope subsampling."""

import math

import pytest
import torch

from mrsolve.solvers.convex_nn import (
    add_bias,
    enumerate_gates,
    gate_masks,
    sample_gates,
    zonotope_gates,
)


def _data(n, d, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _patterns(X, gates):
    return {tuple(col.tolist()) for col in gate_masks(X, gates).T}


@pytest.mark.parametrize(("d", "bias"), [(1, True), (2, False), (2, True), (3, False)])
def test_enumeration_counts_every_cell(d, bias):
    n = 9
    X = _data(n, d)
    X = add_bias(X) if bias else X
    r = X.shape[1]
    # cells of a central arrangement of n generic hyperplanes in R^r (Cover 1965)
    cells = 2 * sum(math.comb(n - 1, i) for i in range(r))
    gates = enumerate_gates(X)
    pats = _patterns(X, gates)
    assert len(pats) == gates.shape[0]
    assert all(any(p) for p in pats)
    # with a bias column the all-zero cell exists and is dropped
    assert len(pats) == cells - (1 if bias else 0)
    # many random gates find nothing outside the enumeration
    assert _patterns(X, sample_gates(X, 20000, seed=3)) <= pats


def test_enumeration_of_low_rank_data_in_high_dimension():
    X = _data(10, 2) @ _data(2, 6, seed=1)  # rank 2 in R^6
    pats = _patterns(X, enumerate_gates(X))
    assert len(pats) == 2 * 10
    assert _patterns(X, sample_gates(X, 5000, seed=2)) <= pats


def test_sample_gates_dedup_seed_and_quantile_bias():
    X = add_bias(_data(30, 3))
    a, b = sample_gates(X, 50, seed=7), sample_gates(X, 50, seed=7)
    torch.testing.assert_close(a, b)
    assert len(_patterns(X, a)) == a.shape[0] <= 50
    q = sample_gates(X, 50, seed=7, bias_quantiles=True)
    frac = gate_masks(X, q).double().mean(0)
    assert bool(((frac > 0) & (frac <= 1)).all())


def test_zonotope_gates_are_distinct_patterns():
    X = _data(25, 8)
    gates = zonotope_gates(X, rank=2, n_draws=3, seed=0)
    assert len(_patterns(X, gates)) == gates.shape[0] > 25


def test_pattern_errors():
    X = _data(5, 2)
    with pytest.raises(ValueError, match="n_gates"):
        sample_gates(X, 0)
    with pytest.raises(ValueError, match="X must have shape"):
        sample_gates(X[0], 3)
    with pytest.raises(ValueError, match="finite"):
        enumerate_gates(torch.full((3, 2), float("nan")))
    with pytest.raises(ValueError, match="gates must have shape"):
        gate_masks(X, torch.ones(4, 3))
    with pytest.raises(ValueError, match="rank"):
        zonotope_gates(X, rank=5)
