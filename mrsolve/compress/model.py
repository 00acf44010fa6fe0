"""Compress the ``torch.nn.Linear`` layers of a network into low-rank, low-precision layers."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from mrsolve.compress.base import Compressed
from mrsolve.compress.factorize import LowRankFactorization, compress_matrix
from mrsolve.compress.quantize import QuantizedTensor
from mrsolve.solvers.sketching import SeedLike, make_generator

_TENSORS = ("codes", "offset", "step")


class CompressedLinear(nn.Module):
    """``y = x W^T + b`` with ``W`` stored compressed (packed codes as buffers).

    A low-rank ``W = L R`` is applied as ``(x R^T) L^T``, so the dense weight is never formed.
    The factors are dequantized at each call; ``.to(device)`` moves the packed codes.
    """

    def __init__(self, weight: Compressed, bias: torch.Tensor | None) -> None:
        super().__init__()
        if isinstance(weight, LowRankFactorization):
            factors = {"left": weight.left, "right": weight.right}
            self.method = weight.method
        elif isinstance(weight, QuantizedTensor):
            factors = {"weight": weight}
            self.method = "nq"
        else:
            raise TypeError(f"weight must be a compressed matrix, got {type(weight).__name__}")
        self._meta = {name: (q.shape, q.code_bits, q.block_size) for name, q in factors.items()}
        for name, q in factors.items():
            for part in _TENSORS:
                self.register_buffer(f"{name}_{part}", getattr(q, part))
        self.bias = None if bias is None else nn.Parameter(bias.detach().clone())
        self.out_features, self.in_features = weight.shape

    def factor(self, name: str) -> QuantizedTensor:
        """The quantized factor ``name`` ("left", "right" or "weight") as stored now."""
        shape, code_bits, block_size = self._meta[name]
        parts = {part: getattr(self, f"{name}_{part}") for part in _TENSORS}
        return QuantizedTensor(shape=shape, code_bits=code_bits, block_size=block_size, **parts)

    @property
    def compressed(self) -> Compressed:
        """The stored weight as a :class:`Compressed` (``dense()`` is ``W``)."""
        if "weight" in self._meta:
            return self.factor("weight")
        return LowRankFactorization(self.factor("left"), self.factor("right"), self.method)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if "weight" in self._meta:
            y = x @ self.factor("weight")._dense().T
        else:
            y = (x @ self.factor("right")._dense().T) @ self.factor("left")._dense().T
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, {self.method}"


@dataclass
class LayerReport:
    """One replaced layer: its shape, rank (None for NQ), storage and errors."""

    name: str
    shape: tuple[int, int]
    rank: int | None
    bits: int
    original_bits: int
    weight_error: float
    output_error: float | None = None


@dataclass
class CompressionReport:
    """Sizes before/after (bits, all parameters) and the relative output error of the model."""

    layers: list[LayerReport] = field(default_factory=list)
    original_bits: int = 0
    compressed_bits: int = 0
    output_error: float | None = None

    @property
    def ratio(self) -> float:
        """Compressed size / original size."""
        return self.compressed_bits / self.original_bits


def _param_bits(module: nn.Module) -> int:
    return sum(p.numel() * p.element_size() * 8 for p in module.parameters())


def _relative(ref: torch.Tensor, approx: torch.Tensor) -> float:
    ref, approx = ref.double(), approx.double()
    return float(torch.linalg.vector_norm(ref - approx) / torch.linalg.vector_norm(ref))


def compress_model(
    module: nn.Module,
    bits_per_weight: float,
    *,
    method: str = "lplr",
    bits_left: int = 4,
    bits_right: int = 8,
    layer_filter: Callable[[str, nn.Linear], bool] | None = None,
    inputs: torch.Tensor | None = None,
    seed: SeedLike = None,
    **options,
) -> tuple[nn.Module, CompressionReport]:
    """Copy ``module`` with its ``nn.Linear`` layers replaced by :class:`CompressedLinear`.

    Args:
        module: the network (left unchanged).
        bits_per_weight: bit budget per weight entry (rank from ``rank_for_budget``; for
            ``method="nq"`` the integer bits per weight).
        method: one of ``mrsolve.compress.METHODS``.
        bits_left, bits_right: factor precisions of the low-rank methods.
        layer_filter: ``(name, layer) -> bool`` choosing the layers to replace (default all).
        inputs: optional batch; when given, the report holds the relative output error of
            every replaced layer (on the activations it sees) and of the whole model.
        seed: int, ``torch.Generator`` or None; one stream for all layers.
        options: passed to the method (``rounding``, ``block_size``, ``sketch``).

    Returns:
        ``(compressed_module, report)``. Biases stay in full precision.
    """
    if not isinstance(module, nn.Module):
        raise TypeError(f"module must be a torch.nn.Module, got {type(module).__name__}")
    g = make_generator(seed)
    compressed = copy.deepcopy(module)
    report = CompressionReport(original_bits=_param_bits(module))
    originals = dict(module.named_modules())
    targets = [
        (name, layer)
        for name, layer in compressed.named_modules()
        if isinstance(layer, nn.Linear) and (layer_filter is None or layer_filter(name, layer))
    ]
    if not targets:
        raise ValueError("module has no nn.Linear layer to compress (after layer_filter)")
    for name, layer in targets:
        weight = layer.weight.detach()
        try:
            c = compress_matrix(
                weight,
                bits_per_weight,
                method=method,
                bits_left=bits_left,
                bits_right=bits_right,
                seed=g,
                **options,
            )
        except ValueError as err:
            raise ValueError(f"layer {name!r}: {err} (leave it out with layer_filter)") from err
        new = CompressedLinear(c, layer.bias)
        parent_name, _, child = name.rpartition(".")
        setattr(compressed.get_submodule(parent_name), child, new)
        report.layers.append(
            LayerReport(
                name=name,
                shape=tuple(weight.shape),
                rank=c.rank if isinstance(c, LowRankFactorization) else None,
                bits=c.bits,
                original_bits=weight.numel() * weight.element_size() * 8,
                weight_error=c.relative_error(weight),
            )
        )
    report.compressed_bits = _param_bits(compressed) + sum(
        m.compressed.bits for m in compressed.modules() if isinstance(m, CompressedLinear)
    )
    if inputs is not None:
        _measure_outputs(module, compressed, inputs, report, originals)
    return compressed, report


@torch.no_grad()
def _measure_outputs(module, compressed, inputs, report, originals) -> None:
    """Fill the layer and model output errors from one forward pass of ``inputs``."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        originals[r.name].register_forward_hook(
            lambda _m, args, _out, name=r.name: seen.__setitem__(name, args[0])
        )
        for r in report.layers
    ]
    try:
        reference = module(inputs)
    finally:
        for h in hooks:
            h.remove()
    report.output_error = _relative(reference, compressed(inputs))
    for r in report.layers:
        x = seen[r.name]
        r.output_error = _relative(originals[r.name](x), compressed.get_submodule(r.name)(x))
