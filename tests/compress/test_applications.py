import numpy as np
import pytest
import torch
from torch import nn

from mrsolve.compress import (
    CompressedLinear,
    compress_image,
    compress_model,
    dsvd,
    knn_accuracy,
    lplr,
    rank_for_budget,
)


def _image(h=48, w=40, seed=0):
    y, x = np.mgrid[0:h, 0:w] / max(h, w)
    rng = np.random.default_rng(seed)
    return np.sin(6 * x) * np.cos(4 * y) + 0.05 * rng.standard_normal((h, w))


def test_grayscale_image_matches_matrix_factorization():
    img = _image()
    out = compress_image(img, 2, method="dsvd", bits_left=4, bits_right=8)
    r = rank_for_budget(img.shape, 2, 4, 8)
    ref = dsvd(img, r, 4, 8)
    assert out.dense().shape == img.shape and isinstance(out.dense(), np.ndarray)
    np.testing.assert_allclose(out.dense(), ref.dense(), atol=1e-12)
    assert out.bits == ref.bits
    assert out.relative_error(img) == pytest.approx(ref.relative_error(img))


def test_color_image_is_compressed_per_channel():
    img = np.stack([_image(seed=c) * (c + 1) for c in range(3)], axis=-1)
    out = compress_image(torch.from_numpy(img), 2, method="dsvd")
    dense = out.dense()
    assert isinstance(dense, torch.Tensor) and dense.shape == img.shape
    r = rank_for_budget(img.shape[:2], 2, 4, 8)
    for c in range(3):
        ref = dsvd(img[..., c], r, 4, 8)
        np.testing.assert_allclose(dense[..., c].numpy(), ref.dense(), atol=1e-12)
    assert out.bits == sum(dsvd(img[..., c], r, 4, 8).bits for c in range(3))
    assert out.bits_per_entry == out.bits / img.size
    # uint8 color images are accepted and seeded runs repeat
    u8 = (img - img.min()) / np.ptp(img) * 255
    a = compress_image(u8.astype(np.uint8), 1, method="lplr", seed=3).dense()
    b = compress_image(u8.astype(np.uint8), 1, method="lplr", seed=3).dense()
    assert np.array_equal(a, b)


def test_image_bad_shape():
    with pytest.raises(ValueError, match=r"image must have shape \(H, W\) or \(H, W, C\)"):
        compress_image(np.zeros(5), 1)


def test_knn_accuracy_matches_brute_force_and_survives_compression():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    db, db_y, q, q_y = x[:600], y[:600], x[1500:1700], y[1500:1700]
    dist = ((q[:, None, :] - db[None, :, :]) ** 2).sum(-1)
    brute = float((db_y[dist.argmin(1)] == q_y).mean())
    assert knn_accuracy(db, db_y, q, q_y) == pytest.approx(brute)
    high = lplr(db, 64, 16, 16, seed=0)
    assert knn_accuracy(high, db_y, q, q_y) == pytest.approx(brute)
    low = lplr(db, 16, 4, 8, seed=0)
    assert 0.5 < knn_accuracy(low, torch.from_numpy(db_y), q, q_y) <= 1.0


def _mlp(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(20, 32), nn.ReLU(), nn.Linear(32, 16), nn.ReLU(), nn.Linear(16, 4)
    )


def test_compressed_model_outputs_are_the_factor_products():
    model = _mlp()
    x = torch.randn(25, 20)
    small, report = compress_model(
        model, 3, method="lplr", bits_left=4, bits_right=8, seed=0, inputs=x
    )
    layers = [m for m in small if isinstance(m, CompressedLinear)]
    assert len(layers) == 3 and len(report.layers) == 3
    h = x
    for orig, comp in zip([model[0], model[2], model[4]], layers, strict=True):
        c = comp.compressed
        w = c.left.dense() @ c.right.dense()
        h_next = h @ w.T + orig.bias
        assert torch.allclose(comp(h), h_next, atol=1e-5)
        h = torch.relu(h_next) if comp is not layers[-1] else h_next
    assert torch.allclose(small(x), h, atol=1e-5)
    # the report's output error is the relative error against the original model
    expected = (torch.linalg.vector_norm(model(x) - h) / torch.linalg.vector_norm(model(x))).item()
    assert report.output_error == pytest.approx(expected, rel=1e-4)
    bias_bits = sum(32 * m.bias.numel() for m in layers)
    assert report.compressed_bits == bias_bits + sum(r.bits for r in report.layers)
    assert report.original_bits == 32 * sum(p.numel() for p in model.parameters())
    assert report.ratio < 0.25
    for r, m in zip(report.layers, [model[0], model[2], model[4]], strict=True):
        assert r.rank == rank_for_budget(tuple(m.weight.shape), 3, 4, 8)
        assert 0 < r.weight_error < 1 and r.output_error is not None
    # the original model is left untouched
    assert all(isinstance(m, nn.Linear | nn.ReLU) for m in model)


def test_full_rank_high_precision_model_is_lossless_and_nq_layers_work():
    model = _mlp(1)
    x = torch.randn(8, 20)
    _, report = compress_model(model, 64, bits_left=24, bits_right=24, seed=1, inputs=x)
    assert report.output_error < 1e-5
    nq, rep = compress_model(model, 4, method="nq", layer_filter=lambda name, _: name != "4")
    assert [r.name for r in rep.layers] == ["0", "2"]
    assert isinstance(nq[4], nn.Linear) and isinstance(nq[0], CompressedLinear)
    w = nq[0].compressed.dense()
    assert len(torch.unique(w)) <= 16
    assert torch.allclose(nq[0](x), x @ w.T + model[0].bias, atol=1e-6)
    assert rep.layers[0].bits == 8 * (32 * 20 * 4 // 8) + 64


def test_compress_model_bad_input():
    with pytest.raises(TypeError, match=r"module must be a torch\.nn\.Module"):
        compress_model(np.zeros((3, 3)), 2)
    with pytest.raises(ValueError, match=r"no nn\.Linear layer"):
        compress_model(nn.ReLU(), 2)
    with pytest.raises(ValueError, match="bits_left must be between 1 and 32"):
        compress_model(_mlp(), 2, bits_left=0)
    with pytest.raises(ValueError, match="layer '4': bits_per_entry = 2 is too small"):
        compress_model(_mlp(), 2)
