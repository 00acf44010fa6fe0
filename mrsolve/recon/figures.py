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


def comparison_figure(images: dict, scores: dict[str, dict[str, float]], path: Path) -> Path:
    """Magnitude images side by side (first = truth), each titled with its NRMSE and SSIM."""
    names = list(images)
    truth = _magnitude(images[names[0]])
    fig, axes = plt.subplots(
        1, len(names), figsize=(3.2 * len(names), 3.8), squeeze=False, layout="constrained"
    )
    for ax, name in zip(axes[0], names, strict=True):
        shown = truth if name == names[0] else scale_fit(_magnitude(images[name]), truth)
        ax.imshow(shown, cmap="gray", vmin=0, vmax=float(truth.max()))
        title = name
        if name in scores:
            s = scores[name]
            title += f"\nNRMSE {s['nrmse']:.3f}  SSIM {s['ssim']:.3f}"
        ax.set_title(title, fontsize=10)
        ax.axis("off")
    with atomic_output(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return Path(path)
