"""A minimal FeTS 2022 task 2 model in MedPerf's container format: intensity thresholds, uint8 labels.

MedPerf mounts the cases at the paths container_config.yaml declares and passes no arguments. It reads
/mlcommons/volumes/data/<case>/<case>_brain_{t1,t1ce,t2,flair}.nii.gz and writes exactly one file per case,
/mlcommons/volumes/predictions/<case>.nii.gz, and nothing anywhere else.
"""

from pathlib import Path

import nibabel as nib
import numpy as np

DATA = Path("/mlcommons/volumes/data")
PREDICTIONS = Path("/mlcommons/volumes/predictions")


def normalised(case: Path, modality: str) -> tuple[np.ndarray, nib.Nifti1Image]:
    """One modality divided by the median of its brain voxels (scanner scale cancels out)."""
    img = nib.load(str(case / f"{case.name}_brain_{modality}.nii.gz"))
    data = np.asarray(img.dataobj, dtype=np.float32)
    brain = data[data > 0]
    return data / (float(np.median(brain)) if brain.size else 1.0), img


def segment(case: Path) -> tuple[np.ndarray, nib.Nifti1Image]:
    flair, img = normalised(case, "flair")
    t1ce, _ = normalised(case, "t1ce")
    t2, _ = normalised(case, "t2")
    seg = np.zeros(flair.shape, dtype=np.uint8)  # 0 background
    seg[flair > 1.6] = 2  # oedema: bright on FLAIR
    seg[(t2 > 2.5) & (t1ce < 0.6) & (flair > 1.1)] = 1  # necrosis: bright T2, dark T1ce; CSF is dark on FLAIR
    seg[t1ce > 1.5] = 4  # enhancing tumour: bright on T1ce
    return seg, img


def main() -> None:
    for case in sorted(p for p in DATA.iterdir() if p.is_dir()):
        seg, img = segment(case)
        nib.save(nib.Nifti1Image(seg, img.affine), str(PREDICTIONS / f"{case.name}.nii.gz"))
        print(f"{case.name}: {np.count_nonzero(seg)} tumour voxels", flush=True)


if __name__ == "__main__":
    main()
