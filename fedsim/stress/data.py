"""The case sets a stress test runs on: the unshifted cases and one shifted copy per (shift, level).

Sets are cached under ``<cache>/stress/<key>`` where the key hashes the *content* of the source cases, the
shift, its level and seed, so the same cases are never shifted twice and edited cases never reuse stale sets.
Each set is in the FeTS model-input layout (``<case>/<case>_brain_<mod>.nii.gz``); the labels are those of the
source (shifts never touch labels), so they are not copied.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import shutil
import tempfile
import threading
import zlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsim import __version__

UNSHIFTED = "none"
SHIFTS_REVISION = 1  # bump when a transform changes, so cached sets are rebuilt
_DONE = ".fedsim-stress.json"
_MODALITIES = ("t1", "t1ce", "t2", "flair")
_lock = threading.Lock()


@dataclass(frozen=True)
class SourceData:
    """Prepared cases (``data_dir``) and their labels (``labels_dir``)."""

    data_dir: Path
    labels_dir: Path
    cases: tuple[str, ...]
    description: str


@dataclass(frozen=True)
class CaseSet:
    """One set of cases a model is run on: the source under ``shift`` at ``level`` (``none``/0: unshifted)."""

    shift: str
    level: int
    parameter: str
    data_dir: Path
    cases: tuple[str, ...]

    @property
    def label(self) -> str:
        return UNSHIFTED if self.shift == UNSHIFTED else f"{self.shift}-{self.level}"


def modality_files(case_dir: Path) -> dict[str, Path]:
    """``{modality: file}`` of one prepared (or raw) case directory."""
    found: dict[str, Path] = {}
    for path in sorted(case_dir.iterdir()):
        for mod in _MODALITIES:
            if path.name.endswith((f"_{mod}.nii.gz", f"_{mod}.nii")) and path.is_file():
                found.setdefault(mod, path)
    return found


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def source_digest(source: SourceData) -> str:
    """Hash of the cases' modality files (names and bytes): the identity of the source data."""
    h = hashlib.sha256()
    for case in source.cases:
        for mod, path in sorted(modality_files(source.data_dir / case).items()):
            h.update(f"{case}/{mod}/{path.name}/{_file_digest(path)}\n".encode())
    return h.hexdigest()


def case_seed(seed: int, case: str) -> int:
    """The seed one case is shifted with: distinct per case, stable across runs."""
    return (int(seed) * 1_000_003 + zlib.crc32(case.encode())) & 0xFFFFFFFF


def _write_volume(path: Path, img: Any, data: Any) -> None:
    import nibabel as nib

    out: Any = nib.Nifti1Image(data, img.affine, img.header)
    raw = out.to_bytes()
    if path.name.endswith(".gz"):  # gzip with mtime 0: the same set has the same bytes on every rebuild
        buf = io.BytesIO()
        with gzip.GzipFile(filename="", mode="wb", fileobj=buf, compresslevel=4, mtime=0) as gz:
            gz.write(raw)
        raw = buf.getvalue()
    path.write_bytes(raw)


def _build_case(src: Path, dst: Path, shift: str, level: int, seed: int) -> None:
    dst.mkdir(parents=True)
    os.chmod(dst, 0o755)
    files = modality_files(src)
    if shift == UNSHIFTED or level == 0:
        for path in files.values():
            shutil.copyfile(path, dst / path.name)
            os.chmod(dst / path.name, 0o644)
        return
    import nibabel as nib
    import numpy as np

    from fedsim.synth.shifts import apply_shift

    images: dict[str, Any] = {mod: nib.load(str(path)) for mod, path in files.items()}
    case = {mod: np.asanyarray(img.dataobj) for mod, img in images.items()}
    shifted = apply_shift(case, shift, level, case_seed(seed, src.name))
    for mod, path in files.items():
        _write_volume(dst / path.name, images[mod], shifted[mod])
        os.chmod(dst / path.name, 0o644)


def _build_set(
    root: Path, source: SourceData, shift: str, level: int, seed: int, settings: dict[str, object], workers: int
) -> None:
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        data = tmp / "data"
        data.mkdir()
        with ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="stress-data") as pool:
            futures = [
                pool.submit(_build_case, source.data_dir / case, data / case, shift, level, seed)
                for case in source.cases
            ]
            for f in futures:
                f.result()
        for d in (tmp, data):
            os.chmod(d, 0o755)
        (tmp / _DONE).write_text(json.dumps(settings, sort_keys=True))
        with _lock:
            if (root / _DONE).is_file():  # another process finished first
                shutil.rmtree(tmp)
                return
            if root.exists():
                shutil.rmtree(root)
            os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def build_sets(
    source: SourceData,
    shifts: list[str],
    levels: list[int],
    seed: int = 0,
    *,
    workers: int | None = None,
    on_set: Callable[[CaseSet, bool], None] | None = None,
) -> list[CaseSet]:
    """The unshifted set, then every ``(shift, level > 0)`` set; built once, reused from the cache after."""
    from fedsim.store.cache import cache_root
    from fedsim.synth.shifts import SHIFTS

    digest = source_digest(source)
    wanted = [(UNSHIFTED, 0)] + [(s, lv) for s in shifts for lv in levels if lv > 0]
    sets: list[CaseSet] = []
    workers = workers or os.cpu_count() or 1
    for shift, level in wanted:
        settings = {
            "source": digest,
            "cases": list(source.cases),
            "shift": shift,
            "level": level,
            "seed": seed if shift != UNSHIFTED else 0,
            "revision": SHIFTS_REVISION,
            "fedsim": __version__,
        }
        key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
        root = cache_root() / "stress" / f"{shift}-{level}-{key}"
        cached = (root / _DONE).is_file()
        if not cached:
            _build_set(root, source, shift, level, seed, settings, workers)
        parameter = "identity" if shift == UNSHIFTED else SHIFTS[shift].describe(level)
        case_set = CaseSet(shift, level, parameter, root / "data", source.cases)
        if on_set is not None:
            on_set(case_set, cached)
        sets.append(case_set)
    return sets


def resolve_source(
    data: Path | None, labels: Path | None, cases: int | None, shape: tuple[int, int, int], work: Path
) -> SourceData:
    """``--data`` (prepared with labels, or raw) or the bundled synthetic toy cases; at most ``cases``."""
    from fedsim.errors import SpecError
    from fedsim.submission.toydata import toy_data, user_data

    if data is None:
        found = toy_data(cases=cases or 2, shape=shape)
    else:
        data = data.expanduser().resolve()
        if labels is None and (data.parent / "labels").is_dir() and data.is_dir():
            candidate = data.parent / "labels"  # a run's site directory: prepared/ beside labels/
            if any(p.name.endswith("_final_seg.nii.gz") for p in candidate.iterdir()):
                labels = candidate
        found = user_data(data, labels, work / "source")
    if found.labels_dir is None:
        raise SpecError(
            "the stress test needs labels: pass --labels DIR (<case>_final_seg.nii.gz) with prepared --data",
            field="--labels",
        )
    chosen = found.cases[:cases] if cases else found.cases
    if not chosen:
        raise SpecError("no cases found", file=str(found.data_dir), field="--data")
    return SourceData(found.data_dir, found.labels_dir, tuple(chosen), found.description)
