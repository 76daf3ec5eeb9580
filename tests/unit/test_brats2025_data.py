"""BraTS 2025 label convention end to end on small volumes: synthesis (1 NETC, 2 SNFH, 3 ET, 4 RC), the
unchanged FeTS default (bytes and cache key), the data-prep sanity check and the prediction validator
following the benchmark's labels, the reference models' 2025 mode, and the report's choice of columns."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from pydantic import ValidationError

from fedsim.bundled import BENCHMARKS, SITES
from fedsim.dataprep import DataPrepParams, sanity_check
from fedsim.dataprep.prepare import prepare
from fedsim.metrics.brats2025 import BRATS2025_CONFIGS
from fedsim.metrics.predictions import case_problems, label_problem
from fedsim.pipeline.sitedata import DONE_MARKER, needs_synthesis, site_data_dir, synth_key
from fedsim.report.metricview import BRATS2021_VIEW, view_for_keys
from fedsim.spec import SynthesizeSpec, load_benchmark, load_site
from fedsim.spec.models import Brats2025Config
from fedsim.submission.outputs import check_volumes
from fedsim.synth import synthesize_case, synthesize_site

SHAPE = (48, 48, 32)
FETS_2025 = (0, 1, 2, 3, 4)


def test_2025_labels_are_the_fets_tumour_relabelled() -> None:
    fets = synthesize_case(7, SHAPE)
    new = synthesize_case(7, SHAPE, labels="brats2025")
    for mod in ("t1", "t1ce", "t2", "flair"):  # no cavity: the same images
        assert np.array_equal(fets[mod], new[mod])
    expected = fets["seg"].copy()
    expected[expected == 4] = 3
    assert np.array_equal(new["seg"], expected)
    assert set(np.unique(new["seg"])) <= {0, 1, 2, 3}


def test_resection_cavity_is_label_4_and_looks_like_fluid() -> None:
    case = synthesize_case(1, (96, 96, 64), labels="brats2025", resection_cavity=1.0)
    seg = case["seg"]
    cavity = seg == 4
    assert cavity.sum() > 20 and set(np.unique(seg)) <= set(FETS_2025)
    brain = case["t1"] > 0
    # fluid: bright on T2, dark on FLAIR and T1ce, compared with the rest of the brain
    assert case["t2"][cavity].mean() > 1.5 * case["t2"][brain & ~cavity].mean()
    assert case["flair"][cavity].mean() < case["flair"][brain & (seg == 0)].mean()
    assert case["t1ce"][cavity].mean() < case["t1ce"][seg == 3].mean()
    with pytest.raises(ValueError, match="brats2025"):
        synthesize_case(7, SHAPE, resection_cavity=0.5)


def test_default_synthesis_settings_keep_their_cache_key(tmp_path: Path) -> None:
    site = load_site(SITES / "site_a_university.yaml")
    assert site.data.synthesize is not None
    # the key the bundled site had before the label options existed: its cached data stays valid
    assert synth_key(site.name, site.data.synthesize) == "10a34a2c88a0"
    explicit = site.data.synthesize.model_copy(update={"labels": "fets", "resection_cavity": 0.0})
    assert synth_key(site.name, explicit) == "10a34a2c88a0"
    new = SynthesizeSpec(labels="brats2025")
    assert synth_key("s", new) != synth_key("s", SynthesizeSpec())
    assert synth_key("s", new) != synth_key("s", SynthesizeSpec(labels="brats2025", resection_cavity=0.5))
    with pytest.raises(ValidationError, match="resection_cavity needs"):
        SynthesizeSpec(resection_cavity=0.5)


def test_a_marker_written_before_the_label_options_still_counts_as_done(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FEDSIM_CACHE_DIR", str(tmp_path))
    site = load_site(SITES / "site_a_university.yaml")
    assert site.data.synthesize is not None
    directory = site_data_dir(site)
    directory.mkdir(parents=True)
    old = site.data.synthesize.model_dump(mode="json")
    del old["labels"], old["resection_cavity"]
    (directory / DONE_MARKER).write_text(json.dumps(old, sort_keys=True))
    assert not needs_synthesis(site)


def test_sanity_check_and_validator_follow_the_benchmarks_labels(tmp_path: Path) -> None:
    synthesize_site(tmp_path / "raw", 2, seed=3, shape=SHAPE, labels="brats2025", resection_cavity=1.0)
    params = DataPrepParams(expected_shape=SHAPE, labels=FETS_2025)
    prepare(tmp_path / "raw", tmp_path / "prep", tmp_path / "labels", tmp_path / "meta", params)
    assert sanity_check(tmp_path / "prep", tmp_path / "labels", params) == []
    fets = sanity_check(tmp_path / "prep", tmp_path / "labels", DataPrepParams(expected_shape=SHAPE))
    assert fets and all("outside [0, 1, 2, 4]" in p for p in fets)

    labels = np.array([[[0, 1], [2, 3]], [[4, 0], [0, 0]]], dtype=np.uint8)
    assert label_problem(labels, FETS_2025) is None
    assert label_problem(labels) == "labels [3] outside {0, 1, 2, 4}"
    assert label_problem(labels + 2, FETS_2025) == "labels [5, 6] outside {0, 1, 2, 3, 4}"

    out = tmp_path / "pred"
    out.mkdir()
    cases = sorted(p.name for p in (tmp_path / "prep").iterdir())
    for case in cases:
        truth = nib.load(str(tmp_path / "labels" / f"{case}_final_seg.nii.gz"))
        nib.save(nib.Nifti1Image(np.asarray(truth.dataobj), truth.affine), str(out / f"{case}.nii.gz"))
    assert case_problems(out, tmp_path / "prep", cases, FETS_2025) == {}
    assert all("outside {0, 1, 2, 4}" in p[0] for p in case_problems(out, tmp_path / "prep", cases).values())
    _, label_check = check_volumes(out, tmp_path / "prep", cases, FETS_2025)
    assert label_check.status.value == "passed" and "{0, 1, 2, 3, 4}" in label_check.cause
    _, fets_check = check_volumes(out, tmp_path / "prep", cases)
    assert fets_check.status.value == "failed"


@pytest.mark.parametrize("cube", ["baseline", "region_grow"])
def test_reference_models_write_2025_labels_when_their_parameters_say_so(tmp_path: Path, cube: str) -> None:
    project = BENCHMARKS / "fets2022-task2" / "cubes" / cube / "project"
    names = ("segment", "mlcube")  # the cube's own modules shadow MLCube's package of the same name: put it back
    saved = {name: sys.modules.pop(name) for name in names if name in sys.modules}
    old_path = list(sys.path)  # the cube's mlcube.py puts its own directory on sys.path too
    sys.path.insert(0, str(project))
    try:
        import mlcube  # type: ignore[import-not-found]

        synthesize_site(tmp_path / "data", 1, seed=5, shape=(96, 96, 64))
        case = next(p for p in (tmp_path / "data").iterdir() if p.is_dir())
        for f in case.iterdir():  # inputs as prepared: no label file beside them
            if f.name.endswith("_seg.nii.gz"):
                f.unlink()
        wanted = BENCHMARKS / "brats2025" / "cubes" / cube / "workspace" / "parameters.yaml"
        assert mlcube.read_labels(str(wanted)) == "brats2025"
        assert mlcube.read_labels(None) == "fets" and mlcube.read_labels(str(tmp_path / "null")) == "fets"
        written = {}
        for labels in ("fets", "brats2025"):
            out = tmp_path / labels
            assert mlcube.infer(tmp_path / "data", out, labels) == 0
            written[labels] = np.asarray(nib.load(str(out / f"{case.name}.nii.gz")).dataobj)
        fets, new = written["fets"], written["brats2025"]
        assert 4 in np.unique(fets) and 3 not in np.unique(fets)
        assert np.array_equal(new, np.where(fets == 4, 3, fets))
    finally:
        sys.path[:] = old_path
        for name in names:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


def test_bundled_brats2025_benchmark_loads() -> None:
    bench = load_benchmark(BENCHMARKS / "brats2025")
    assert bench.metrics.metric_set == "brats2025" and bench.metrics.brats2025.config == "gli"
    assert bench.data.labels == FETS_2025
    assert set(Brats2025Config.__args__) == set(BRATS2025_CONFIGS)  # type: ignore[attr-defined]


def test_report_view_follows_the_metric_keys() -> None:
    assert view_for_keys(["Dice_ET", "Hausdorff95_WT"]) is BRATS2021_VIEW
    view = view_for_keys([f"lesionwise_dsc_mean_{r}" for r in BRATS2025_CONFIGS["gli"]])
    assert view.regions == ("et", "tc", "wt", "netc", "snfh", "rc")
    assert [h for h, _, _ in view.columns] == ["LW Dice ET", "LW Dice TC", "LW Dice WT", "LW NSD WT"]
    men = view_for_keys(["lesionwise_dsc_mean_gtv"])
    assert men.regions == ("gtv",) and men.columns[-1][1] == "lesionwise_nsd_mean_gtv"
