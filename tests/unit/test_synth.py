"""Synthetic data: the contract other layers (data prep, metrics, e2e tests) rely on."""

from __future__ import annotations

import hashlib
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
from scipy import ndimage

from fedsim.synth import SiteShift, synthesize_case, synthesize_site

SHAPE = (64, 64, 40)
MODS = ("t1", "t1ce", "t2", "flair")
SHIFTED = SiteShift(intensity_scale=0.7, noise_std=0.06, bias_field=0.25, contrast_gamma=0.85)


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_public_api_does_not_drift() -> None:
    import fedsim.synth as synth

    assert sorted(synth.__all__) == ["SiteShift", "synthesize_case", "synthesize_site"]


def test_case_shapes_dtypes_and_labels() -> None:
    case = synthesize_case(1, SHAPE)
    assert set(case) == {*MODS, "seg"}
    for mod in MODS:
        assert case[mod].shape == SHAPE
        assert case[mod].dtype == np.int16
        assert case[mod].min() >= 0
    seg = case["seg"]
    assert seg.dtype == np.uint8 and seg.shape == SHAPE
    assert set(np.unique(seg).tolist()) == {0, 1, 2, 4}


@pytest.mark.parametrize("shift", [SiteShift(), SHIFTED])
def test_background_is_exactly_zero_outside_the_brain(shift: SiteShift) -> None:
    case = synthesize_case(2, SHAPE, shift)
    brain = case["t1"] > 0
    assert 0.1 < brain.mean() < 0.6  # an ellipsoid-ish brain, not the whole box
    for mod in MODS:
        assert np.array_equal(case[mod] > 0, brain), mod  # same skull-stripped mask in every modality
    assert not case["seg"][~brain].any()
    # Corners of the volume are background; the brain is one filled blob.
    assert brain[0, 0, 0] == 0 and brain[-1, -1, -1] == 0
    assert ndimage.label(brain)[1] == 1


def test_tumour_regions_are_nested() -> None:
    for seed in range(5):
        seg = synthesize_case(seed, SHAPE)["seg"]
        wt = seg > 0
        tc = np.isin(seg, (1, 4))
        assert tc.sum() < wt.sum()
        # The core sits inside the whole tumour: dilating the WT by one voxel covers all of the TC.
        assert np.all(ndimage.binary_dilation(wt)[tc])
        # Oedema (2) surrounds the core: most of the core's border touches label 2 or more core.
        border = ndimage.binary_dilation(tc) & ~tc
        assert (seg[border] == 2).mean() > 0.8
        # Necrosis is enclosed by the enhancing rim rather than by oedema.
        nec = seg == 1
        if nec.any():
            ring = ndimage.binary_dilation(nec) & ~nec
            assert (seg[ring] == 4).mean() > 0.5


def test_modalities_show_the_tumour_like_brats() -> None:
    case = synthesize_case(3, SHAPE)
    seg = case["seg"]
    normal = (case["t1"] > 0) & (seg == 0)

    def ratio(mod: str, label: int) -> float:
        return float(case[mod][seg == label].mean() / case[mod][normal].mean())

    assert ratio("flair", 2) > 1.5 and ratio("t2", 2) > 1.2  # bright oedema
    assert ratio("t1ce", 4) > 1.5  # enhancing rim
    assert ratio("t1ce", 1) < 0.7  # dark necrosis
    assert ratio("t1", 2) < 1.0  # tumour slightly dark on T1
    # Modalities differ in their tissue contrast, not just in scale.
    corr = np.corrcoef(case["t1"][normal].astype(float), case["t2"][normal].astype(float))[0, 1]
    assert corr < 0


def test_same_seed_same_case_different_seed_different_case() -> None:
    a, b, c = synthesize_case(5, SHAPE), synthesize_case(5, SHAPE), synthesize_case(6, SHAPE)
    for key in a:
        assert np.array_equal(a[key], b[key])
    assert not np.array_equal(a["seg"], c["seg"])
    assert not np.array_equal(a["flair"], c["flair"])


def test_site_shift_changes_intensities_but_not_anatomy() -> None:
    plain = synthesize_case(7, SHAPE)
    bright = synthesize_case(7, SHAPE, SiteShift(intensity_scale=1.4, intensity_offset=0.05))
    noisy = synthesize_case(7, SHAPE, SHIFTED)
    assert np.array_equal(plain["seg"], noisy["seg"])
    brain = plain["t1"] > 0
    for mod in MODS:
        m0 = plain[mod][brain].mean()
        assert bright[mod][brain].mean() > 1.3 * m0
        assert noisy[mod][brain].mean() < 0.85 * m0
    # Noise and a bias field widen the spread of normal tissue relative to its mean; gamma < 1 narrows it.
    rough = synthesize_case(7, SHAPE, SiteShift(noise_std=0.06, bias_field=0.25))
    flat = synthesize_case(7, SHAPE, SiteShift(contrast_gamma=0.7))
    normal = brain & (plain["seg"] == 0)

    def cv(case: dict[str, np.ndarray], mod: str) -> float:
        values = case[mod][normal].astype(float)
        return float(values.std() / values.mean())

    for mod in MODS:
        assert cv(rough, mod) > cv(plain, mod) > cv(flat, mod)


@pytest.mark.parametrize(
    "bad",
    [{"intensity_scale": 0.0}, {"noise_std": -0.1}, {"bias_field": 1.5}, {"contrast_gamma": float("nan")}],
)
def test_site_shift_rejects_nonsense(bad: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        SiteShift(**bad)


def test_synthesize_site_layout_affine_and_byte_determinism(tmp_path: Path) -> None:
    spacing = (1.0, 1.0, 1.5)
    ids = synthesize_site(tmp_path / "a", 2, seed=11, shape=SHAPE, spacing=spacing, case_prefix="site1")
    assert ids == ["site1_001", "site1_002"]
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ids  # no temp leftovers
    for case in ids:
        names = sorted(p.name for p in (tmp_path / "a" / case).iterdir())
        assert names == sorted(f"{case}_{m}.nii.gz" for m in (*MODS, "seg"))
        img = nib.load(tmp_path / "a" / case / f"{case}_flair.nii.gz")
        assert img.shape == SHAPE
        assert np.allclose(img.affine, np.diag([*spacing, 1.0]))
        assert np.allclose(img.header.get_zooms(), spacing)
        assert img.get_data_dtype() == np.int16
        seg = nib.load(tmp_path / "a" / case / f"{case}_seg.nii.gz")
        assert seg.get_data_dtype() == np.uint8
        assert set(np.unique(np.asarray(seg.dataobj)).tolist()) <= {0, 1, 2, 4}
    # The written arrays are the in-memory case.
    from fedsim.synth.writer import case_seed

    expected = synthesize_case(case_seed(11, 1), SHAPE)
    got = np.asarray(nib.load(tmp_path / "a" / "site1_001" / "site1_001_t1ce.nii.gz").dataobj)
    assert np.array_equal(got, expected["t1ce"])

    synthesize_site(tmp_path / "b", 2, seed=11, shape=SHAPE, spacing=spacing, case_prefix="site1")
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b")
    # Rerunning into the same directory replaces the cases with identical bytes.
    before = _digest(tmp_path / "a")
    synthesize_site(tmp_path / "a", 2, seed=11, shape=SHAPE, spacing=spacing, case_prefix="site1")
    assert _digest(tmp_path / "a") == before

    synthesize_site(tmp_path / "c", 2, seed=12, shape=SHAPE, spacing=spacing, case_prefix="site1")
    da, dc = _digest(tmp_path / "a"), _digest(tmp_path / "c")
    assert da.keys() == dc.keys()
    assert all(da[k] != dc[k] for k in da)


def test_sites_with_different_shifts_differ(tmp_path: Path) -> None:
    synthesize_site(tmp_path / "a", 1, seed=3, shape=SHAPE)
    synthesize_site(tmp_path / "b", 1, seed=3, shape=SHAPE, shift=SHIFTED)
    a = np.asarray(nib.load(tmp_path / "a" / "case_001" / "case_001_t2.nii.gz").dataobj)
    b = np.asarray(nib.load(tmp_path / "b" / "case_001" / "case_001_t2.nii.gz").dataobj)
    assert abs(float(a[a > 0].mean()) - float(b[b > 0].mean())) > 0.1 * float(a[a > 0].mean())


def test_interrupted_run_leaves_no_half_case(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import fedsim.synth.writer as writer

    calls = {"n": 0}
    real = writer.nifti_gz_bytes

    def flaky(data: np.ndarray, spacing: tuple[float, float, float]) -> bytes:
        calls["n"] += 1
        if calls["n"] == 8:  # in the middle of the second case
            raise KeyboardInterrupt
        return real(data, spacing)

    monkeypatch.setattr(writer, "nifti_gz_bytes", flaky)
    with pytest.raises(KeyboardInterrupt):
        synthesize_site(tmp_path, 3, seed=1, shape=SHAPE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case_001"]
    monkeypatch.setattr(writer, "nifti_gz_bytes", real)
    assert synthesize_site(tmp_path, 3, seed=1, shape=SHAPE) == ["case_001", "case_002", "case_003"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["case_001", "case_002", "case_003"]


def test_small_and_odd_shapes_work() -> None:
    case = synthesize_case(0, (33, 47, 21))
    assert case["seg"].shape == (33, 47, 21)
    assert (case["seg"] > 0).any()
    with pytest.raises(ValueError):
        synthesize_case(0, (4, 64, 64))
