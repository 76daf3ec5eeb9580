"""The cases a check runs on: small synthetic BraTS-like cases (cached), or the caller's own data.

Whatever the source, the model sees the FeTS layout that ``prepare`` writes
(``<case>/<case>_brain_{t1,t1ce,t2,flair}.nii.gz``), and the labels stay outside the container.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from fedsim import __version__
from fedsim.errors import SpecError

TOY_SHAPE = (96, 96, 64)  # any size works: outputs are checked against the input's own shape and affine
TOY_CASES = 2
TOY_SEED = 2022
_DONE = ".fedsim-toy.json"
_lock = threading.Lock()


@dataclass(frozen=True)
class CheckData:
    """Prepared cases (``data_dir``) and, when known, their labels (``labels_dir``)."""

    data_dir: Path
    labels_dir: Path | None
    cases: tuple[str, ...]
    description: str


def _cases(data_dir: Path) -> tuple[str, ...]:
    return tuple(sorted(p.name for p in data_dir.iterdir() if p.is_dir() and not p.name.startswith(".")))


def toy_data(cases: int = TOY_CASES, shape: tuple[int, int, int] = TOY_SHAPE, seed: int = TOY_SEED) -> CheckData:
    """Synthesise and prepare ``cases`` toy cases once; later calls (and processes) reuse the cache."""
    from fedsim.store.cache import cache_root

    settings = {"cases": cases, "shape": list(shape), "seed": seed, "fedsim": __version__}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    root = cache_root() / "submission-toy" / key
    with _lock:
        if not (root / _DONE).is_file():
            _build_toy(root, settings, cases, shape, seed)
    data = root / "data"
    return CheckData(data, root / "labels", _cases(data), f"{cases} synthetic cases {'x'.join(map(str, shape))}")


def _build_toy(root: Path, settings: dict[str, object], cases: int, shape: tuple[int, int, int], seed: int) -> None:
    from fedsim.dataprep import DataPrepParams, prepare
    from fedsim.synth import synthesize_site

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        synthesize_site(tmp / "raw", n_cases=cases, seed=seed, shape=shape, case_prefix="toy")
        for d in ("data", "labels", "metadata"):
            (tmp / d).mkdir()
        prepare(tmp / "raw", tmp / "data", tmp / "labels", tmp / "metadata", DataPrepParams(expected_shape=shape))
        shutil.rmtree(tmp / "raw")
        (tmp / _DONE).write_text(json.dumps(settings, sort_keys=True))
        if root.exists():  # another process finished first
            shutil.rmtree(tmp)
            return
        os.replace(tmp, root)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _is_prepared(data: Path) -> bool:
    """True for the FeTS model-input layout (``<case>/<case>_brain_t1.nii.gz``, no labels beside them)."""
    for case in (p for p in data.iterdir() if p.is_dir()):
        if any(case.glob(f"{case.name}_brain_*.nii*")) and not any(case.glob(f"{case.name}_*seg*.nii*")):
            return True
    return False


def user_data(data: Path, labels: Path | None, work: Path) -> CheckData:
    """``--data DIR``: prepared FeTS data (labels from ``--labels``, optional) or raw cases (prepared here)."""
    data = data.expanduser().resolve()
    if not data.is_dir():
        raise SpecError("not a directory", file=str(data), field="--data")
    if _is_prepared(data):
        if labels is not None and not labels.is_dir():
            raise SpecError("not a directory", file=str(labels), field="--labels")
        cases = _cases(data)
        return CheckData(data, labels.resolve() if labels else None, cases, f"{len(cases)} prepared cases in {data}")
    if labels is not None:
        raise SpecError(
            "--labels is only for prepared data; raw cases carry their own <case>_seg.nii.gz", field="--labels"
        )
    from fedsim.dataprep import DataPrepParams, find_raw_cases, prepare

    raw = find_raw_cases(data)
    first = next((rc for rc in raw.values() if rc.valid), None)
    if first is None:
        raise SpecError(
            "no usable case: expected prepared cases (<case>/<case>_brain_t1.nii.gz ...) or raw ones "
            "(<case>/<case>_{t1,t1ce,t2,flair,seg}.nii.gz)",
            file=str(data),
            field="--data",
        )
    import nibabel as nib

    img: Any = nib.load(str(first.modalities["t1"]))
    header = img.header
    dims = header.get_data_shape()
    shape = (int(dims[0]), int(dims[1]), int(dims[2]))
    out = work / "prepared"
    for d in ("data", "labels", "metadata"):
        (out / d).mkdir(parents=True, exist_ok=True)
    prepare(data, out / "data", out / "labels", out / "metadata", DataPrepParams(expected_shape=shape))
    cases = _cases(out / "data")
    return CheckData(out / "data", out / "labels", cases, f"{len(cases)} cases prepared from {data}")
