"""The in-memory PROPELLER scan: k-space, trajectory, timing, coils and header facts.

Plain dataclasses of tensors, no file handling (``mrsolve.data`` converts files to
and from this model).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch

from mrsolve.propeller.scanner_geometry import SliceGeometry
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
        extra: free-form metadata (file facts, e.g. ``slice`` = the file's slice index).
        echo: (B,) int64 echo (contrast) index of each blade; all zero for one echo.
            Each echo's TE is already in ``times`` (gradient echo); the per-echo TEs
            are ``echo_te_s``.
        echo_te_s: TE of each echo in seconds; () -> (te_s,).
        geometry: where the slice sits in the scanner (LPS), or None when the raw file
            does not say (exports then assume an axial slice at the isocentre).
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
    echo: torch.Tensor | None = None
    echo_te_s: tuple[float, ...] = ()
    geometry: SliceGeometry | None = None

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
            self.frame = torch.zeros(b, dtype=torch.int64, device=self.kspace.device)
        if self.timestamps_s is None:
            self.timestamps_s = torch.zeros(b, dtype=torch.float32, device=self.kspace.device)
        if tuple(self.frame.shape) != (b,):
            raise ValueError(f"frame must have shape ({b},), got {tuple(self.frame.shape)}")
        if self.echo is None:
            self.echo = torch.zeros(b, dtype=torch.int64, device=self.frame.device)
        if tuple(self.echo.shape) != (b,):
            raise ValueError(f"echo must have shape ({b},), got {tuple(self.echo.shape)}")
        self.echo_te_s = tuple(float(t) for t in self.echo_te_s) or (float(self.te_s),)
        n_echoes = int(self.echo.max()) + 1 if b else 1
        if len(self.echo_te_s) < n_echoes:
            raise ValueError(
                f"echo_te_s must give a TE for each of the {n_echoes} echoes, got {self.echo_te_s}"
            )
        if self.geometry is not None and not isinstance(self.geometry, SliceGeometry):
            raise TypeError(
                f"geometry must be a SliceGeometry or None, got {type(self.geometry).__name__}"
            )

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
    def n_echoes(self) -> int:
        return len(self.echo_te_s)

    @property
    def sampled_echoes(self) -> list[int]:
        """The echo indices the blades hold, ascending (``n_echoes`` counts the header's
        TEs, which a blade selection keeps)."""
        return self.echo.unique().tolist()

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
            echo=self.echo[index],
            timestamps_s=self.timestamps_s[index],
        )

    def to(self, device: torch.device | str) -> Scan:
        """The same scan with its tensors on ``device``."""
        move = {
            k: getattr(self, k).to(device)
            for k in ("kspace", "traj", "times", "frame", "echo", "timestamps_s")
        }
        if self.noise is not None:
            move["noise"] = self.noise.to(device)
        return replace(self, **move)
