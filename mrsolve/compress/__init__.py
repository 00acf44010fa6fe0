"""Low-precision low-rank compression (LPLR, arXiv:2310.11028) and its baselines.

Matrices: :func:`lplr`, :func:`lplr_svd`, :func:`dsvd`, :func:`naive_quantize`, with
:func:`rank_for_budget` for an equal bit budget; quantizers with packed codes
(:func:`quantize`). Applications: :func:`compress_image`, :func:`knn_accuracy` on compressed
embeddings, :func:`compress_model` for the ``nn.Linear`` layers of a network. Every result
exposes ``dense()``, ``bits`` (exact storage) and ``relative_error(A)``.
"""

from mrsolve.compress.base import Compressed
from mrsolve.compress.embeddings import knn_accuracy
from mrsolve.compress.factorize import (
    METHODS,
    LowRankFactorization,
    compress_matrix,
    dsvd,
    lplr,
    lplr_svd,
    naive_quantize,
    rank_for_budget,
)
from mrsolve.compress.image import CompressedImage, compress_image
from mrsolve.compress.model import CompressedLinear, CompressionReport, compress_model
from mrsolve.compress.packing import pack_codes, packed_size, unpack_codes
from mrsolve.compress.quantize import QuantizedTensor, quantize

__all__ = [
    "METHODS",
    "Compressed",
    "CompressedImage",
    "CompressedLinear",
    "CompressionReport",
    "LowRankFactorization",
    "QuantizedTensor",
    "compress_image",
    "compress_matrix",
    "compress_model",
    "dsvd",
    "knn_accuracy",
    "lplr",
    "lplr_svd",
    "naive_quantize",
    "pack_codes",
    "packed_size",
    "quantize",
    "rank_for_budget",
    "unpack_codes",
]
