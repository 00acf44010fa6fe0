import itertools

import numpy as np
import pytest
import torch

from mrsolve.distributed.codes import MDSCode, ReplicationCode, UncodedCode


def _blocks(k, seed=0):
    return torch.randn(k, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("kind", ["gaussian", "vandermonde"])
def test_mds_any_k_of_n_decode(kind):
    code = MDSCode(6, 3, kind=kind, seed=1)
    u = _blocks(3)
    y = code.encode(u)
    ref = np.einsum("kn,kab->nab", code.generator.numpy(), u.numpy())
    np.testing.assert_allclose(y.numpy(), ref, atol=1e-12)
    for subset in itertools.combinations(range(6), 3):
        known = np.zeros(6, bool)
        known[list(subset)] = True
        out, rec = code.decode(y, known)
        assert rec.all() and code.decodable(known)
        assert (out - u).norm() / u.norm() < 1e-8
    known = np.array([True, True, False, False, False, False])
    out, rec = code.decode(y, known)
    assert not rec.any() and not code.decodable(known)


def test_vandermonde_is_worse_conditioned_than_gaussian():
    known = np.ones(24, bool)
    known[:8] = False
    v = MDSCode(24, 16, kind="vandermonde").condition(known)
    g = MDSCode(24, 16, kind="gaussian", seed=0).condition(known)
    assert v > 100 * g


def test_replication_and_uncoded():
    u = _blocks(4)
    rep = ReplicationCode(8, 4)
    y = rep.encode(u)
    assert torch.equal(y[5], u[1])
    known = np.array([1, 0, 0, 1, 0, 1, 0, 0], bool)  # blocks 0, 3, 1 answered
    out, rec = rep.decode(y, known)
    assert list(rec) == [True, True, False, True]
    assert torch.equal(out[rec], u[torch.from_numpy(rec)])
    unc = UncodedCode(4)
    out, rec = unc.decode(unc.encode(u), np.array([1, 1, 0, 1], bool))
    assert list(rec) == [True, True, False, True] and (out[2] == 0).all()


def test_code_argument_errors():
    with pytest.raises(ValueError, match="k must divide"):
        ReplicationCode(8, 3)
    with pytest.raises(ValueError, match="kind"):
        MDSCode(4, 2, kind="reed-solomon")
    with pytest.raises(ValueError, match="u must have 2 blocks"):
        MDSCode(4, 2).encode(torch.zeros(3, 1))
