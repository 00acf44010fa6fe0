"""The in-memory PROPELLER scan: k-space, trajectory, timing, coils and header facts.

Plain dataclasses of tensors, no file handling (``mrsolve.data`` converts files to
and from this model).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from mrsolve.propeller.timing import SEQUENCES
from mrsolve.solvers.validation import check_choice, check_finite


@dataclass
class Scan:
    """One PROPELLER acquisition (static, or dynamic when ``frame`` has several values).

    Attributes:
        kspace: (C, B, L, M) complex64 samples for C coils, B blades, L lines, M readout.
        traj: (B, L, M, 2) float32 k-space positions in cycles/FOV, last axis (kx, ky).
        times: (B, L, M) float32 sample times in seconds relative to the phase
            reference (includes TE for gradient echo; see ``propeller.timing``).
        image_shape: (ny, nx) of the reconstructed image.
        dwell_s: readout dwell time dt in seconds.
        center_sample: echo-centre readout index c.
        te_s: echo time in seconds.
        sequence: "spin_echo" or "gradient_echo".
        field_strength_t: B0 in tesla.
        fov_mm: (fov_y, fov_x) in millimetres.
        frame: (B,) int64 frame (repetition) index of each blade; all zero when static.
        timestamps_s: (B,) float32 acquisition time of each blade in seconds.
        noise: (C, S) complex64 noise-only samples for prewhitening, or None.
    """

    kspace: torch.Tensor
    traj: torch.Tensor
    times: torch.Tensor
    image_shape: tuple[int, int]
    dwell_s: float
    center_sample: int
    te_s: float = 0.0
    sequence: str = "spin_echo"
    field_strength_t: float = 3.0
    fov_mm: tuple[float, float] = (256.0, 256.0)
    frame: torch.Tensor | None = None
    timestamps_s: torch.Tensor | None = None
    noise: torch.Tensor | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.kspace.ndim != 4:
            raise ValueError(
                f"kspace must have shape (coils, blades, lines, readout), got {tuple(self.kspace.shape)}"
            )
        _, b, l, m = self.kspace.shape
        if tuple(self.traj.shape) != (b, l, m, 2):
            raise ValueError(f"traj must have shape {(b, l, m, 2)}, got {tuple(self.traj.shape)}")
        if tuple(self.times.shape) != (b, l, m):
            raise ValueError(f"times must have shape {(b, l, m)}, got {tuple(self.times.shape)}")
        check_finite("kspace", self.kspace)
        check_finite("traj", self.traj)
        check_choice("sequence", self.sequence, SEQUENCES)
        self.image_shape = (int(self.image_shape[0]), int(self.image_shape[1]))
        if self.frame is None:
            self.frame = torch.zeros(b, dtype=torch.int64)
        if self.timestamps_s is None:
            self.timestamps_s = torch.zeros(b, dtype=torch.float32)
        if tuple(self.frame.shape) != (b,):
            raise ValueError(f"frame must have shape ({b},), got {tuple(self.frame.shape)}")

    @property
    def n_coils(self) -> int:
        return self.kspace.shape[0]

    @property
    def n_blades(self) -> int:
        return self.kspace.shape[1]

    @property
    def n_lines(self) -> int:
        return self.kspace.shape[2]

    @property
    def n_readout(self) -> int:
        return self.kspace.shape[3]

    @property
    def n_frames(self) -> int:
        return int(self.frame.max()) + 1 if self.frame.numel() else 0

    @property
    def angles(self) -> torch.Tensor:
        """Readout angle of each blade (B,) in radians, from the trajectory."""
        d = self.traj[:, self.n_lines // 2, -1] - self.traj[:, self.n_lines // 2, 0]
        return torch.atan2(d[:, 1], d[:, 0])

    def select_blades(self, index: torch.Tensor) -> Scan:
        """A scan holding only the blades in ``index`` (e.g. one frame)."""
        return replace(
            self,
            kspace=self.kspace[:, index],
            traj=self.traj[index],
            times=self.times[index],
            frame=self.frame[index],
            timestamps_s=self.timestamps_s[index],
        )

    def to(self, device: torch.device | str) -> Scan:
        """The same scan with its tensors on ``device``."""
        move = {
            k: getattr(self, k).to(device)
            for k in ("kspace", "traj", "times", "frame", "timestamps_s")
        }
        if self.noise is not None:
            move["noise"] = self.noise.to(device)
        return replace(self, **move)
