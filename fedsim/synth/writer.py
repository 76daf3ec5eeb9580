"""Write synthetic sites in the raw BraTS layout, byte-for-byte reproducibly and one whole case at a time.

Reproducible bytes let tests and caches compare data by hash; nibabel's own ``.nii.gz`` writer stamps the
gzip header with the current time, so the NIfTI bytes are gzipped here with ``mtime=0`` instead.
"""

from __future__ import annotations

import gzip
import io
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import nibabel as nib
import numpy as np

from .phantom import FULL_SHAPE, MODALITIES, synthesize_case
from .shift import SiteShift

if TYPE_CHECKING:
    from numpy.typing import NDArray

__all__ = ["case_seed", "nifti_gz_bytes", "synthesize_site", "write_case"]

_GZIP_LEVEL = 4  # mostly-zero volumes: level 4 is ~as small as 9 and several times faster
_ORIGIN = (0.0, 0.0, 0.0)  # fixed world origin of voxel (0, 0, 0)


def case_seed(site_seed: int, index: int) -> int:
    """Seed of case ``index`` of a site: stable, and unrelated between neighbouring sites and cases."""
    return int(np.random.SeedSequence([int(site_seed), int(index)]).generate_state(1, np.uint32)[0])


def _affine(spacing: Sequence[float]) -> NDArray[np.float64]:
    affine = np.diag([float(s) for s in spacing] + [1.0])
    affine[:3, 3] = _ORIGIN
    return affine


def nifti_gz_bytes(data: NDArray[np.generic], spacing: Sequence[float]) -> bytes:
    """A ``.nii.gz`` file's bytes with a zero gzip mtime and no file name, so reruns are byte-identical."""
    img = nib.Nifti1Image(data, _affine(spacing))
    img.header.set_data_dtype(data.dtype)
    img.header.set_xyzt_units("mm", "sec")
    img.set_qform(img.affine, code=1)
    img.set_sform(img.affine, code=1)
    raw = img.to_bytes()
    buf = io.BytesIO()
    with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=_GZIP_LEVEL, mtime=0) as gz:
        gz.write(raw)
    return buf.getvalue()


def write_case(
    out_dir: Path, case_id: str, volumes: Mapping[str, NDArray[np.integer[Any]]], spacing: Sequence[float]
) -> Path:
    """Write one case into a temporary sibling directory, then rename it into place.

    An interrupted run leaves at most a hidden temp directory (removed on the next run), never a case
    directory with some modalities missing.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / case_id
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{case_id}-", dir=out_dir))
    try:
        for name in (*MODALITIES, "seg"):
            (tmp / f"{case_id}_{name}.nii.gz").write_bytes(nifti_gz_bytes(volumes[name], spacing))
        os.chmod(tmp, 0o755)  # mkdtemp makes 0700: containers running as another uid must read it
        if final.exists():
            old = Path(tempfile.mkdtemp(prefix=f".old-{case_id}-", dir=out_dir))
            os.replace(final, old / case_id)
            os.replace(tmp, final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _remove_stale_temps(out_dir: Path) -> None:
    """Drop leftovers of interrupted runs (temp dirs are never valid cases)."""
    if not out_dir.is_dir():
        return
    for entry in out_dir.iterdir():
        if entry.is_dir() and entry.name.startswith((".tmp-", ".old-")):
            shutil.rmtree(entry, ignore_errors=True)


def synthesize_site(
    out_dir: Path,
    n_cases: int,
    seed: int,
    shape: tuple[int, ...] = FULL_SHAPE,  # three sides, checked by synthesize_case
    spacing: tuple[float, ...] = (1.0, 1.0, 1.0),
    shift: SiteShift = SiteShift(),  # noqa: B008  (frozen dataclass: a safe default)
    case_prefix: str = "case",
    shifts: Sequence[Mapping[str, object]] = (),
    labels: str = "fets",
    resection_cavity: float = 0.0,
) -> list[str]:
    """Write ``n_cases`` cases as ``out_dir/<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz``; return the ids.

    Case ids are ``f"{case_prefix}_{i:03d}"`` for i in 1..n. Output is deterministic in
    ``(seed, shape, spacing, shift, labels, resection_cavity)``; ``labels`` and ``resection_cavity`` as in
    :func:`~fedsim.synth.phantom.synthesize_case`.
    """
    if n_cases < 0:
        raise ValueError("n_cases must be >= 0")
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be three positive numbers, got {spacing}")
    out_dir = Path(out_dir)
    _remove_stale_temps(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    ids: list[str] = []
    for i in range(1, n_cases + 1):
        case_id = f"{case_prefix}_{i:03d}"
        volumes = synthesize_case(case_seed(seed, i), shape, shift, labels, resection_cavity)
        if shifts:  # the stress test's acquisition shifts, so a site can be described in the same terms
            from fedsim.synth.shifts import apply_shift_list

            volumes = apply_shift_list(volumes, list(shifts), case_seed=case_seed(seed, i))
        write_case(out_dir, case_id, volumes, spacing)
        ids.append(case_id)
    return ids
