"""Shift transforms: identity at level 0, measured effect grows with severity, labels never change."""

from __future__ import annotations

import itertools
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

import fedsim.synth.shifts as shifts_mod
from fedsim.synth import synthesize_case
from fedsim.synth.shifts import (
    MODALITIES,
    SHIFTS,
    ShiftRef,
    apply_shift,
    apply_shift_list,
    parse_shift_list,
    shift_table,
)

SHAPE = (48, 48, 32)


@pytest.fixture(scope="module")
def case() -> dict[str, np.ndarray]:
    return synthesize_case(7, SHAPE)


def _flat_case(value: float = 1000.0, shape: tuple[int, int, int] = (40, 40, 40)) -> dict[str, np.ndarray]:
    """A cube of constant 'brain' (border of background), int16, plus a label map."""
    img = np.zeros(shape, np.int16)
    img[4:-4, 4:-4, 4:-4] = int(value)
    seg = np.zeros(shape, np.uint8)
    seg[15:25, 15:25, 15:25] = 2
    return {**{m: img.copy() for m in MODALITIES}, "seg": seg}


ALL = [(name, level) for name, s in SHIFTS.items() for level in range(1, s.max_level + 1)]


def test_level_zero_is_the_identity(case: dict[str, np.ndarray]) -> None:
    for name in SHIFTS:
        out = apply_shift(case, name, 0, seed=3)
        assert out.keys() == case.keys()
        for key in case:
            assert out[key] is case[key]


@pytest.mark.parametrize(("name", "level"), ALL)
def test_labels_shape_dtype_and_determinism(case: dict[str, np.ndarray], name: str, level: int) -> None:
    before = {k: v.copy() for k, v in case.items()}
    out = apply_shift(case, name, level, seed=11)
    assert out["seg"] is case["seg"]  # labels are passed through untouched
    for k in case:
        assert np.array_equal(case[k], before[k]), "the input must not be modified"
    for m in MODALITIES:
        assert out[m].shape == case[m].shape and out[m].dtype == case[m].dtype
    again = apply_shift(case, name, level, seed=11)
    for m in MODALITIES:
        assert np.array_equal(out[m], again[m])
    assert any(not np.array_equal(out[m], case[m]) for m in MODALITIES), "a level > 0 must change something"


@pytest.mark.parametrize("name", ["intensity", "bias", "noise", "thick_slices", "gamma", "misregistration"])
def test_seed_changes_the_realisation(case: dict[str, np.ndarray], name: str) -> None:
    a = apply_shift(case, name, 2, seed=1)
    others = [apply_shift(case, name, 2, seed=s) for s in (2, 3, 4)]  # thick slices: 1 of 3 grid phases
    assert any(not np.array_equal(a[m], b[m]) for b in others for m in MODALITIES)


@pytest.mark.parametrize(("name", "level"), [p for p in ALL if p[0] in ("intensity", "bias", "noise", "gamma")])
def test_intensity_shifts_keep_the_skull_stripped_mask(case: dict[str, np.ndarray], name: str, level: int) -> None:
    out = apply_shift(case, name, level, seed=5)
    for m in MODALITIES:
        assert np.array_equal(out[m] != 0, case[m] != 0), m


def _mean_abs_change(case: dict[str, np.ndarray], name: str, level: int) -> float:
    out = apply_shift(case, name, level, seed=4)
    return float(np.mean([np.abs(out[m].astype(float) - case[m]).mean() for m in MODALITIES]))


@pytest.mark.parametrize("name", list(SHIFTS))
def test_severity_is_monotone(case: dict[str, np.ndarray], name: str) -> None:
    changes = [_mean_abs_change(case, name, lv) for lv in range(SHIFTS[name].max_level + 1)]
    assert changes[0] == 0
    if name == "swap":  # level 2 adds a second swap; level 3 exchanges families (all four change)
        assert changes[1] < changes[2] and changes[1] < changes[3]
        return
    assert all(a < b for a, b in itertools.pairwise(changes)), changes


def test_noise_sigma_is_measured_as_documented() -> None:
    flat = _flat_case(1000.0)
    inside = flat["t1"] > 0
    measured = []
    for level in range(SHIFTS["noise"].max_level + 1):
        out = apply_shift(flat, "noise", level, seed=2)
        values = out["t1"][inside].astype(float)
        measured.append(values.std() / 1000.0)
        # Rician at this SNR: the mean is lifted by ~σ²/2 of the signal, std ≈ σ.
        sigma = SHIFTS["noise"].values[level]
        assert values.std() / 1000.0 == pytest.approx(sigma, rel=0.08, abs=0.001)
        assert (out["t1"][~inside] == 0).all()  # noise only inside the skull-stripped brain
    assert measured == sorted(measured)


def test_noise_is_rician_at_low_snr() -> None:
    flat = _flat_case(40.0)  # σ = 20 % of 40 = 8 → SNR 5: the magnitude's mean exceeds the signal
    out = apply_shift(flat, "noise", 4, seed=0)
    values = out["t1"][flat["t1"] > 0].astype(float)
    expected = math.sqrt(40.0**2 + 8.0**2)  # E|s + n| ≈ sqrt(s² + σ²·...) to first order: above s
    assert 40.0 < values.mean() < expected + 1.0


def test_bias_field_range_is_the_documented_amplitude(case: dict[str, np.ndarray]) -> None:
    brain = case["t1"] > 0
    for level in range(1, SHIFTS["bias"].max_level + 1):
        amp = SHIFTS["bias"].values[level]
        out = apply_shift(case, "bias", level, seed=9)
        ratios = [out[m][brain].astype(float) / case[m][brain] for m in MODALITIES]
        for r in ratios:
            assert r.min() == pytest.approx(1 - amp, abs=0.02)
            assert r.max() == pytest.approx(1 + amp, abs=0.02)
        # one field for all sequences (the same coil): ratios agree between modalities up to rounding
        assert np.abs(ratios[0] - ratios[1]).max() < 0.02
        # smooth: the field varies slowly (a low-frequency field, no voxel-scale texture)
        field = np.ones(case["t1"].shape)
        field[brain] = ratios[3]
        both = brain[1:] & brain[:-1]
        assert np.abs(np.diff(field, axis=0))[both].mean() < 0.15 * amp


def test_intensity_scale_and_offset_per_modality() -> None:
    flat = _flat_case(1000.0)
    inside = flat["t1"] > 0
    for level in range(1, SHIFTS["intensity"].max_level + 1):
        a = SHIFTS["intensity"].values[level]
        b = {1: 0.05, 2: 0.10, 3: 0.20, 4: 0.30}[level]
        out = apply_shift(flat, "intensity", level, seed=6)
        for m in MODALITIES:
            v = float(out[m][inside].mean()) / 1000.0
            # v = e^(±a) ± b: one of the four sign combinations, to rounding
            candidates = [math.exp(s * a) + t * b for s in (-1, 1) for t in (-1, 1)]
            assert min(abs(v - c) for c in candidates) < 2e-3, (m, v, candidates)
            assert out[m][inside].std() < 1.0  # a global change: the flat brain stays flat


def test_gamma_changes_contrast_around_the_brain_mean() -> None:
    img = np.zeros((20, 20, 20), np.float32)
    img[2:-2, 2:-2, 2:-2] = np.linspace(500, 1500, 16)[None, None, :]  # a ramp of intensities
    flat = {m: img.copy() for m in MODALITIES}
    brain = img > 0
    mean = float(img[brain].mean())
    spreads = []
    for level in range(SHIFTS["gamma"].max_level + 1):
        out = apply_shift(flat, "gamma", level, seed=1)
        g = math.exp(SHIFTS["gamma"].values[level])
        x = img[brain] / mean
        got = out["t1"][brain] / mean
        assert np.allclose(got, x**g, rtol=1e-4) or np.allclose(got, x ** (1 / g), rtol=1e-4)
        spreads.append(abs(math.log(float(got.max() / got.min())) - math.log(3.0)))
    assert spreads == sorted(spreads)  # contrast departs further from the original with severity


def test_thick_slices_have_the_documented_thickness() -> None:
    # Slice profile: a constant volume with one bright slice (a delta along z). A thick slice spreads it over
    # its slab and the upsampling over neighbouring slabs; the equivalent width (area / peak) of the response
    # is the thickness t (up to 4/3 t when the slab centre falls between two voxels).
    img = np.full((12, 12, 64), 500.0, np.float32)
    img[:, :, 31] = 1500.0
    flat = {m: img.copy() for m in MODALITIES}
    widths = []
    for level in range(SHIFTS["thick_slices"].max_level + 1):
        t = SHIFTS["thick_slices"].values[level]
        out = apply_shift(flat, "thick_slices", level, seed=3)["flair"].astype(np.float64)
        profile = out[6, 6, :] - 500.0
        width = profile.sum() / profile.max()
        assert profile.sum() == pytest.approx(1000.0, rel=0.01)  # the signal is redistributed, not lost
        assert t - 0.01 <= width <= 1.34 * t + 0.01, (t, width)
        widths.append(width)
    assert widths == sorted(widths)
    # in-plane blur grows with the level
    rng = np.random.default_rng(0)
    noisy = {m: rng.uniform(100, 1000, (16, 16, 40)).astype(np.float32) for m in MODALITIES}
    roughness = [
        float(np.abs(np.diff(apply_shift(noisy, "thick_slices", lv, seed=3)["t1"], axis=0)).mean())
        for lv in range(SHIFTS["thick_slices"].max_level + 1)
    ]
    assert roughness == sorted(roughness, reverse=True)


def test_missing_zeroes_nested_modalities(case: dict[str, np.ndarray]) -> None:
    zeroed_before: set[str] = set()
    for level in range(1, SHIFTS["missing"].max_level + 1):
        out = apply_shift(case, "missing", level, seed=8)
        zeroed = {m for m in MODALITIES if not out[m].any()}
        assert len(zeroed) == level and zeroed_before <= zeroed
        for m in set(MODALITIES) - zeroed:
            assert np.array_equal(out[m], case[m])
        zeroed_before = zeroed


def test_swap_exchanges_series(case: dict[str, np.ndarray]) -> None:
    one = apply_shift(case, "swap", 1)
    assert np.array_equal(one["t1"], case["t1ce"]) and np.array_equal(one["t1ce"], case["t1"])
    assert np.array_equal(one["t2"], case["t2"]) and np.array_equal(one["flair"], case["flair"])
    two = apply_shift(case, "swap", 2)
    assert np.array_equal(two["t2"], case["flair"]) and np.array_equal(two["flair"], case["t2"])
    three = apply_shift(case, "swap", 3)
    assert np.array_equal(three["t1"], case["t2"]) and np.array_equal(three["t1ce"], case["flair"])


def test_misregistration_moves_one_modality_by_the_documented_amount(case: dict[str, np.ndarray]) -> None:
    for level in range(1, SHIFTS["misregistration"].max_level + 1):
        out = apply_shift(case, "misregistration", level, seed=4)
        moved = [m for m in MODALITIES if not np.array_equal(out[m], case[m])]
        assert len(moved) == 1 and moved[0] != "t1ce"  # T1ce is the registration reference
        m = moved[0]
        before = np.array(ndimage.center_of_mass(case[m] > 0))
        after = np.array(ndimage.center_of_mass(out[m] > 0))
        # rotation about the brain's centre keeps it; the translation is the level in mm (1 mm voxels)
        assert np.linalg.norm(after - before) == pytest.approx(SHIFTS["misregistration"].values[level], abs=0.35)
        assert abs(int((out[m] > 0).sum()) - int((case[m] > 0).sum())) < 0.05 * int((case[m] > 0).sum())


def test_a_full_size_case_is_fast() -> None:
    import time

    big = synthesize_case(1)  # 240×240×155
    for name in SHIFTS:
        t = time.perf_counter()
        apply_shift(big, name, SHIFTS[name].max_level, seed=1)
        assert time.perf_counter() - t < 15, name  # a few seconds on a slow CI core


def test_invalid_references_are_refused(case: dict[str, np.ndarray]) -> None:
    with pytest.raises(ValueError, match="unknown shift"):
        apply_shift(case, "blur", 1)
    with pytest.raises(ValueError, match=r"levels 0\.\.3"):
        apply_shift(case, "missing", 4)
    with pytest.raises(ValueError, match="lacks modalities"):
        apply_shift({"t1": case["t1"]}, "noise", 1)
    with pytest.raises(ValueError, match=r"shifts\[0\]"):
        parse_shift_list([{"name": "noise"}])
    with pytest.raises(ValueError, match=r"shifts\[1\]"):
        parse_shift_list([{"name": "noise", "level": 1}, {"name": "noise", "level": 9}])


def test_shift_list_for_sites(case: dict[str, np.ndarray]) -> None:
    spec = [{"name": "bias", "level": 2, "seed": 1}, {"name": "noise", "level": 1, "seed": 1}]
    refs = parse_shift_list(spec)
    assert refs == (ShiftRef("bias", 2, 1), ShiftRef("noise", 1, 1))
    a = apply_shift_list(case, spec, case_seed=100)
    assert a["seg"] is case["seg"]
    assert all(np.array_equal(a[m], apply_shift_list(case, refs, case_seed=100)[m]) for m in MODALITIES)
    b = apply_shift_list(case, spec, case_seed=101)  # another case of the site: another realisation
    assert any(not np.array_equal(a[m], b[m]) for m in MODALITIES)
    assert apply_shift_list(case, [])["t1"] is case["t1"]


def test_docstring_table_matches_the_code() -> None:
    doc = shifts_mod.__doc__ or ""
    for name, _meaning, labels in shift_table():
        row = next((ln for ln in doc.splitlines() if ln.startswith(name + " ")), None)
        assert row is not None, name
        for label in labels[1:]:
            assert label in row, (name, label)


def test_a_site_can_describe_its_shift_with_the_stress_transforms(tmp_path: Path) -> None:
    """sites/*.yaml `data.synthesize.shifts` uses the same transforms (and validation) as `fedsim stress`."""
    import nibabel as nib
    import yaml

    from fedsim.errors import SpecError
    from fedsim.pipeline.sitedata import ensure_site_data
    from fedsim.spec import load_site

    site = tmp_path / "s.yaml"
    base = {"name": "thick", "data": {"path": "raw", "synthesize": {"cases": 1, "shape": [48, 48, 32]}}}
    site.write_text(yaml.safe_dump(base))
    plain = ensure_site_data(load_site(site))
    base["name"] = "thick2"
    base["data"]["path"] = "raw2"
    base["data"]["synthesize"]["shifts"] = [{"name": "thick_slices", "level": 3, "seed": 1}]
    site.write_text(yaml.safe_dump(base))
    shifted = ensure_site_data(load_site(site))
    a = nib.load(next(plain.glob("*/*_flair.nii.gz"))).get_fdata()
    b = nib.load(next(shifted.glob("*/*_flair.nii.gz"))).get_fdata()
    assert a.shape == b.shape and not np.array_equal(a, b)
    la = nib.load(next(plain.glob("*/*_seg.nii.gz"))).get_fdata()
    lb = nib.load(next(shifted.glob("*/*_seg.nii.gz"))).get_fdata()
    assert np.array_equal(la, lb)  # labels untouched
    base["data"]["synthesize"]["shifts"] = [{"name": "missing", "level": 9}]
    site.write_text(yaml.safe_dump(base))
    with pytest.raises(SpecError, match=r"data\.synthesize\.shifts\[0\]"):
        load_site(site)
