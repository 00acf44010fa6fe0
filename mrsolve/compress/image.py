"""Image compression: a grayscale ``(H, W)`` or color ``(H, W, C)`` image, channel by channel."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from mrsolve.compress.base import Compressed
from mrsolve.compress.factorize import compress_matrix
from mrsolve.solvers.sketching import SeedLike, make_generator


@dataclass(frozen=True, eq=False)
class CompressedImage(Compressed):
    """An image stored as one compressed matrix per channel.

    Attributes:
        channels: one :class:`Compressed` ``(H, W)`` matrix per channel.
        shape: ``(H, W)`` or ``(H, W, C)``.
    """

    channels: tuple[Compressed, ...]
    shape: tuple[int, ...]
    as_numpy: bool = False

    @property
    def bits(self) -> int:
        return sum(c.bits for c in self.channels)

    def _dense(self) -> torch.Tensor:
        planes = [c._dense() for c in self.channels]
        return planes[0] if len(self.shape) == 2 else torch.stack(planes, dim=-1)


def compress_image(
    image: np.ndarray | torch.Tensor,
    bits_per_entry: float,
    *,
    method: str = "lplr",
    bits_left: int = 4,
    bits_right: int = 8,
    seed: SeedLike = None,
    **options,
) -> CompressedImage:
    """Compress an image to about ``bits_per_entry`` bits per pixel and channel.

    Args:
        image: ``(H, W)`` or ``(H, W, C)`` real array (e.g. uint8 or float in [0, 1]).
        bits_per_entry: bit budget per pixel per channel.
        method: one of ``mrsolve.compress.METHODS``.
        bits_left, bits_right: factor precisions for the low-rank methods.
        seed: int, ``torch.Generator`` or None; one stream shared by the channels.
        options: passed on to the method (``rounding``, ``block_size``, ``device``, ``sketch``).

    Returns:
        :class:`CompressedImage`; ``dense()`` is float with the image's shape.
    """
    as_numpy = isinstance(image, np.ndarray)
    if not (as_numpy or isinstance(image, torch.Tensor)):
        raise TypeError(f"image must be a numpy array or a torch tensor, got {type(image)}")
    if image.ndim not in (2, 3):
        raise ValueError(f"image must have shape (H, W) or (H, W, C), got {tuple(image.shape)}")
    g = make_generator(seed)
    planes = [image] if image.ndim == 2 else [image[..., c] for c in range(image.shape[2])]
    channels = tuple(
        compress_matrix(
            p,
            bits_per_entry,
            method=method,
            bits_left=bits_left,
            bits_right=bits_right,
            seed=g,
            **options,
        )
        for p in planes
    )
    return CompressedImage(channels, tuple(image.shape), as_numpy=as_numpy)
