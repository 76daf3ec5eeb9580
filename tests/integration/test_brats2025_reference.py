"""fedsim's BraTS 2025 set against the real ``brats-evaluation`` 0.0.10 / ``panoptica`` 2.1.7 (test extras).

The reference runs in-process exactly as ``brats-evaluate --config <c>`` and ``brats-parse-metrics seg`` do
(``evaluate_single_exam`` per case with the bundled config, the summary JSON, ``parse_seg_results`` to CSV),
and every column of every case must agree to 1e-6 (NaN with NaN, inf with inf). fedsim's side goes through
``evaluate_dir``, the function the metrics cube calls, on the same NIfTI files.
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import warnings
from importlib.resources import files
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from brats_evaluation.evaluation import evaluate_single_exam
from brats_evaluation.metrics_parser import parse_seg_results
from panoptica import Panoptica_Evaluator

from fedsim.metrics import brats2025_columns, evaluate_dir

SHAPE = (48, 48, 32)
SPACINGS = ((1.0, 1.0, 1.0), (0.9, 1.0, 2.0))


def reference(pred_dir: Path, ref_dir: Path, config: str = "gli") -> dict[str, dict[str, Any]]:
    """``{reference file name: parsed row}`` as the two CLIs produce it (missing predictions included)."""
    cfg = str(files("brats_evaluation").joinpath("configs", f"config_{config}.yaml"))
    summary: dict[str, list[Any]] = {"metrics": [], "missings": []}
    with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("ignore")  # the package warns about overlapping groups and its 0.5 tolerance
        evaluator = Panoptica_Evaluator.load_from_config(cfg)
        for ref in sorted(p.name for p in ref_dir.iterdir()):
            pred = pred_dir / ref
            if not pred.exists():
                summary["missings"].append(ref)
                continue
            summary["metrics"].append(evaluate_single_exam(str(pred), str(ref_dir / ref), ref, evaluator))
        (ref_dir.parent / "summary.json").write_text(json.dumps(summary))
        parse_seg_results(str(ref_dir.parent / "summary.json"), str(ref_dir.parent / "parsed.csv"))
    df = pd.read_csv(ref_dir.parent / "parsed.csv")
    df = df[~df.subject_id.isin(["mean", "std", "median"])]
    return {r["subject_id"]: {k: v for k, v in r.items() if k != "subject_id"} for r in df.to_dict("records")}


def _ball(center: np.ndarray, radii: np.ndarray) -> np.ndarray:
    g = np.indices(SHAPE, dtype=np.float64)
    return sum(((g[i] - center[i]) / radii[i]) ** 2 for i in range(3)) <= 1.0


def _tumour(vol: np.ndarray, center: np.ndarray, radius: float, rc: bool = False) -> None:
    """SNFH (2) around an ET (3) shell around a NETC (1) core; RC (4) alone when ``rc``."""
    r = np.array([radius, radius * 0.9, radius * 0.7])
    if rc:
        vol[_ball(center, r)] = 4
        return
    vol[_ball(center, r)] = 2
    vol[_ball(center, r * 0.6)] = 3
    vol[_ball(center, r * 0.3)] = 1


def make_case(k: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray | None]:
    """(truth, prediction) of one of several kinds of case; prediction None = missing file."""
    kind = k % 10
    t = np.zeros(SHAPE, np.uint8)
    p = np.zeros(SHAPE, np.uint8)
    lesions = []
    for _ in range(int(rng.integers(1, 4))):
        c = np.array([rng.uniform(10, 38), rng.uniform(10, 38), rng.uniform(8, 24)])
        lesions.append((c, float(rng.uniform(3, 7)), bool(rng.random() < 0.2)))
    if kind == 1:  # two touching lesions: one component in the truth, two in the prediction
        c = lesions[0][0]
        lesions.append((c + np.array([9.0, 0.0, 0.0]), lesions[0][1], False))
    for c, rad, rc in lesions:
        _tumour(t, c, rad, rc)
    for i, (c, rad, rc) in enumerate(lesions):
        if kind == 3 and i == 0:
            continue  # a missed lesion
        shift = rng.integers(-2, 3, 3)
        scale = float(rng.uniform(0.7, 1.3))
        if kind == 1:
            _tumour(p, c + shift, rad * scale * 0.8, rc)
        else:
            _tumour(p, c + shift, rad * scale, rc)
    if kind == 2:  # a lesion split in two in the prediction
        cx = int(lesions[0][0][0])
        p[cx - 1 : cx + 1] = 0
    if kind in (4, 5):  # spurious small components
        for _ in range(int(rng.integers(1, 5))):
            x, y, z = rng.integers(2, 44), rng.integers(2, 44), rng.integers(2, 28)
            p[x : x + int(rng.integers(1, 3)), y : y + 2, z : z + 1] = rng.integers(1, 5)
    if kind == 6:
        p[:] = 0  # empty prediction
    if kind == 7:
        t[:] = 0  # empty reference
    if kind == 8:  # labels swapped: a wrong class with the right shape, plus a lesion at the volume edge
        p = np.where(p == 3, 1, np.where(p == 1, 3, p)).astype(np.uint8)
        t[0:3, 0:4, 0:3] = 2
        p[0:2, 0:4, 0:3] = 2
    if kind == 9 and k >= 30:
        return t, None  # missing prediction
    return t, p


@pytest.fixture(scope="module")
def cases(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path, list[str]]:
    root = tmp_path_factory.mktemp("brats2025")
    ref_dir, pred_dir, labels_dir = root / "ref", root / "pred", root / "labels"
    for d in (ref_dir, pred_dir, labels_dir):
        d.mkdir()
    rng = np.random.default_rng(2025)
    names = []
    for k in range(40):
        truth, pred = make_case(k, rng)
        spacing = SPACINGS[(k // 10) % 2]
        affine = np.diag([*spacing, 1.0])
        case = f"BraTS-GLI-{k:05d}-000"
        names.append(case)
        nib.save(nib.Nifti1Image(truth, affine), ref_dir / f"{case}.nii.gz")
        nib.save(nib.Nifti1Image(truth, affine), labels_dir / f"{case}_final_seg.nii.gz")
        if pred is not None:
            nib.save(nib.Nifti1Image(pred, affine), pred_dir / f"{case}.nii.gz")
    return ref_dir, pred_dir, labels_dir, names


def _same(expected: Any, got: Any) -> bool:
    e, g = float(expected), float(got)
    if math.isnan(e) or math.isnan(g):
        return math.isnan(e) and math.isnan(g)
    if math.isinf(e) or math.isinf(g):
        return e == g
    return abs(e - g) <= 1e-6


def test_every_column_equals_brats_evaluation(cases: tuple[Path, Path, Path, list[str]]) -> None:
    ref_dir, pred_dir, labels_dir, names = cases
    expected = reference(pred_dir, ref_dir)
    got = evaluate_dir(pred_dir, labels_dir, "brats2025")
    assert sorted(got) == names and len(expected) == len(names) >= 30
    columns = brats2025_columns()
    kinds = {"nan": 0, "inf": 0, "missing": 0, "matched": 0}
    mismatches = []
    for case in names:
        row_ref, row = expected[f"{case}.nii.gz"], got[case]
        assert sorted(row_ref) == sorted(columns)
        assert set(row) == {*columns, "missing_pred"}
        for col in columns:
            if not _same(row_ref[col], row[col]):
                mismatches.append(f"{case} {col}: reference {row_ref[col]!r}, fedsim {row[col]!r}")
            kinds["nan"] += math.isnan(float(row[col]))
            kinds["inf"] += math.isinf(float(row[col]))
        kinds["missing"] += bool(row["missing_pred"])
        kinds["matched"] += int(row["all_instance_tp_wt"] > 0)
    assert not mismatches, "\n".join(mismatches[:40])
    # the generated cases reach every edge the package handles specially
    assert kinds["missing"] >= 1 and kinds["nan"] > 0 and kinds["inf"] > 0 and kinds["matched"] >= 20, kinds
    fps = sum(got[c]["all_instance_fp_wt"] for c in names)
    fns = sum(got[c]["all_instance_fn_wt"] for c in names)
    assert fps > 0 and fns > 0
