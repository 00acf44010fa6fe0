"""The figure of docs/interop.md: an exported oblique series read back by third-party readers.

Run: python benchmarks/interop_figure.py  (about 20 s; writes docs/interop_readback.png)
"""

from dataclasses import replace
from pathlib import Path
from tempfile import TemporaryDirectory

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import nibabel as nib
import numpy as np
import pydicom

from mrsolve.data.ismrmrd_io import write_exam
from mrsolve.data.results import read_result
from mrsolve.data.simulate import simulate
from mrsolve.propeller.scanner_geometry import SliceGeometry
from mrsolve.recon.commands import reconstruct_file
from mrsolve.recon.interop_commands import export_result_file

OUT = Path(__file__).resolve().parent.parent / "docs" / "interop_readback.png"


def main() -> None:
    a = np.deg2rad(20.0)
    y_dir = (0.0, np.cos(a), -np.sin(a))
    with TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        sims = [simulate(size=64, n_blades=8, n_lines=16, n_coils=4, seed=s) for s in range(3)]
        scans = [
            replace(
                sim.scan,
                geometry=SliceGeometry(
                    position_mm=tuple(
                        np.array([10.0, -20.0, 40.0]) + 6.0 * s * np.cross((1, 0, 0), y_dir)
                    ),
                    y_dir=y_dir,
                    slice_thickness_mm=5.0,
                ),
            )
            for s, sim in enumerate(sims)
        ]
        write_exam(tmp / "raw.h5", scans)
        reconstruct_file(tmp / "raw.h5", tmp / "out.h5", "gridding")
        export_result_file(tmp / "out.h5", "nifti,dicom", tmp / "export")
        series = sorted((tmp / "export" / "dicom" / "image").glob("*.dcm"))
        dicom = [pydicom.dcmread(p) for p in series]
        nii = nib.load(tmp / "export" / "nifti" / "image.nii.gz")
        volume = np.asarray(nii.dataobj)  # read before the folder goes
        rec = read_result(tmp / "out.h5")
    fig, axes = plt.subplots(2, 3, figsize=(10, 7))
    for s in range(3):
        ds = dicom[s]
        axes[0, s].imshow(ds.pixel_array * float(ds.RescaleSlope), cmap="gray")
        ipp = ", ".join(f"{float(v):.1f}" for v in ds.ImagePositionPatient)
        axes[0, s].set_title(f"pydicom: IM_{ds.InstanceNumber:04d}\nIPP ({ipp}) mm", fontsize=8)
        axes[1, s].imshow(volume[:, :, s].T, cmap="gray")
        centre = nii.affine @ [32, 32, s, 1]
        axes[1, s].set_title(
            f"nibabel: image.nii.gz k={s}\ncentre RAS ({centre[0]:.1f}, {centre[1]:.1f}, {centre[2]:.1f}) mm",
            fontsize=8,
        )
    for ax in axes.ravel():
        ax.set_axis_off()
    iop = ", ".join(f"{float(v):.3f}" for v in dicom[0].ImageOrientationPatient)
    fig.suptitle(
        f"recon export of a 20-degree oblique 3-slice {rec.method} reconstruction, read back by\n"
        f"pydicom (top, MR Image Storage, IOP {iop}) and nibabel (bottom, sform/qform code 1)",
        fontsize=10,
    )
    fig.tight_layout()
    OUT.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(OUT, dpi=110)
    print(OUT)


if __name__ == "__main__":
    main()
