"""Figures a person would rather look at than read."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

from mrsolve.data.files import atomic_output
from mrsolve.recon.metrics import scale_fit


def _magnitude(image) -> np.ndarray:
    array = image.detach().cpu().numpy() if hasattr(image, "detach") else np.asarray(image)
    return np.abs(array if array.ndim == 2 else array[0])


def _array(x) -> np.ndarray:
    return x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)


def comparison_figure(
    images: dict,
    scores: dict[str, dict[str, float]],
    path: Path,
    maps: dict[str, tuple] | None = None,
) -> Path:
    """Magnitude images side by side (first = truth), titled with NRMSE and SSIM.

    ``maps`` adds a second row of (truth, estimate) pairs, e.g. {"fat fraction":
    (ff_true, ff_est), "field map (Hz)": (psi_true, psi_est)}: fat fractions on [0, 1],
    field maps on a diverging scale symmetric about 0 Hz.
    """
    names = list(images)
    truth = _magnitude(images[names[0]])
    cols = max(len(names), 2 * len(maps or {}))
    rows = 2 if maps else 1
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.2 * cols, 3.8 * rows), squeeze=False, layout="constrained"
    )
    for ax in axes.ravel():
        ax.axis("off")
    for ax, name in zip(axes[0], names, strict=False):
        shown = truth if name == names[0] else scale_fit(_magnitude(images[name]), truth)
        ax.imshow(shown, cmap="gray", vmin=0, vmax=float(truth.max()))
        title = name
        if name in scores:
            s = scores[name]
            title += f"\nNRMSE {s['nrmse']:.3f}  SSIM {s['ssim']:.3f}"
        ax.set_title(title, fontsize=10)
    pairs = [
        p
        for k, (t, e) in (maps or {}).items()
        for p in ((f"{k}: truth", t, k), (f"{k}: estimate", e, k))
    ]
    for ax, (title, value, kind) in zip(axes[-1], pairs, strict=False):
        array = _array(value)
        array = array if array.ndim == 2 else array[0]
        if "fat fraction" in kind:
            im = ax.imshow(array, cmap="magma", vmin=0, vmax=1)
        else:
            limit = float(np.abs(_array(maps[kind][0])).max()) or 1.0
            im = ax.imshow(array, cmap="coolwarm", vmin=-limit, vmax=limit)
        ax.set_title(title, fontsize=10)
        fig.colorbar(im, ax=ax, shrink=0.8)
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
