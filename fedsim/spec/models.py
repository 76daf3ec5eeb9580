"""Frozen pydantic models of the two user-facing configuration files: a benchmark and a site.

Raw YAML dictionaries exist only in :mod:`fedsim.spec.loader`; everything past it receives these
validated, immutable values. Unknown keys are errors so that a typo never silently means "default".
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveFloat, PositiveInt, model_validator

RuntimeName = Literal["auto", "local", "docker", "singularity"]
RankingMethod = Literal["rankThenMean", "rankThenMedian", "aggregateThenMean", "aggregateThenMedian", "testBased"]
MetricSet = Literal["brats2021", "lesionwise", "brats2025"]


class _Frozen(BaseModel):
    # allow_inf_nan=False: every float field (nested ones and tuples included) refuses inf, -inf and nan, so
    # ``noise_std: 1e999`` (YAML reads it as text, pydantic would make it inf) is a one-line error at load time
    # instead of a traceback in synthesis or a limit that never fires.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


# Processes and threads one submission may have at once (docker's pids_limit, the sandbox's RLIMIT_NPROC,
# singularity's --pids-limit). A PyTorch inference with 8 data-loader workers, each running a BLAS/OpenMP pool of
# one thread per core plus a few CUDA and I/O threads, needs (1 + 8) x (cores + ~10) tasks: ~670 on a 64-core
# node. 1024 leaves that headroom, a fork bomb fills it in well under a second, and 4,096 held processes (the
# former limit) cost the host far more kernel memory and scheduler time while the deadline runs out.
DEFAULT_MAX_PIDS = 1024
# A wall-clock limit beyond ~116 days is no limit; a bounded one also never overflows a timer (time_t).
MAX_TIMEOUT_S = 10_000_000.0


class ResourceLimits(_Frozen):
    """The federation's per-job limits (FeTS 2022: 180 s per case, one 11 GB GPU, 40 GB RAM)."""

    timeout_per_case_s: float = Field(180.0, gt=0.0, le=MAX_TIMEOUT_S)
    gpu_memory_gb: PositiveFloat = 11.0
    ram_gb: PositiveFloat = 40.0
    output_mb_per_case: PositiveFloat = Field(
        200.0, description="what a model may write into output_path, per case (a FeTS prediction is ~1 MB)"
    )
    task_timeout_s: float = Field(
        3600.0, gt=0.0, le=MAX_TIMEOUT_S, description="wall-clock limit of the data-prep and metrics tasks"
    )
    max_pids: int = Field(
        DEFAULT_MAX_PIDS,
        ge=16,
        le=4 * 1024**2,  # the kernel's pid_max ceiling: RLIMIT_NPROC and pids_limit refuse more
        description="processes and threads a submission may have at once (PyTorch data loaders × BLAS threads)",
    )


class DataExpectations(_Frozen):
    """What prepared cases must look like; handed to the data-prep cube's sanity check."""

    expected_shape: tuple[PositiveInt, PositiveInt, PositiveInt] = (240, 240, 155)
    expected_spacing: tuple[PositiveFloat, PositiveFloat, PositiveFloat] = (1.0, 1.0, 1.0)
    labels: tuple[int, ...] = (0, 1, 2, 4)
    max_val_size: PositiveInt | None = None
    seed: int = 0


class LesionwiseParams(_Frozen):
    dilation_iterations: int = Field(3, ge=0)
    min_lesion_size: int = Field(50, ge=0)
    labels: dict[str, tuple[int, ...]] | None = None


# brats-evaluation 0.0.10's bundled configurations (fedsim.metrics.brats2025.BRATS2025_CONFIGS has their regions).
Brats2025Config = Literal["gli", "mets", "ped", "MenRT", "MenPre", "GoAT"]


class Brats2025Params(_Frozen):
    config: Brats2025Config = "gli"


GENERATED = "generated"
ParametersFile = Literal["generated"] | Path | None
_PARAMS_HELP = (
    "what the cube gets as parameters_file: null (its own default from its workspace, as MLCube and MedPerf "
    "pass it), 'generated' (a file fedsim writes from this benchmark), or a path to the organiser's file"
)


class MetricsSpec(_Frozen):
    cube: Path
    metric_set: MetricSet = "brats2021"
    lesionwise: LesionwiseParams = LesionwiseParams()
    brats2025: Brats2025Params = Brats2025Params()
    parameters_file: ParametersFile = Field(None, description=_PARAMS_HELP)

    @model_validator(mode="after")
    def _settings_reach_the_cube(self) -> MetricsSpec:
        chosen = {"metric_set", "lesionwise", "brats2025"} & self.model_fields_set
        if chosen and self.parameters_file != GENERATED:
            raise ValueError(
                f"{' and '.join(sorted(chosen))} reach the metrics cube only through fedsim's generated parameters "
                "file: add 'parameters_file: generated' (or drop them and let the cube read its own)"
            )
        return self


class DataPrepSpec(_Frozen):
    cube: Path
    parameters_file: ParametersFile = Field(None, description=_PARAMS_HELP)


ImageContract = Literal["fets2022", "medperf"]


class ModelRef(_Frozen):
    """A submission: a cube (an MLCube or a MedPerf container config), or a bare docker image called by the
    benchmark's ``image_contract``."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    cube: Path | None = None
    image: str | None = None
    decryption_key: Path | None = Field(
        None, description="the passphrase file of an encrypted container config image (gpg), relative to here"
    )
    image_digest: str | None = Field(
        None,
        pattern=r"^sha256:[0-9a-f]{64}$",
        description="the expected sha256: of the image (a registry image's id or repo digest; a file's content)",
    )

    @model_validator(mode="after")
    def _one_source(self) -> ModelRef:
        if (self.cube is None) == (self.image is None):
            raise ValueError(
                "give exactly one of 'cube' (an MLCube or container config directory) or 'image' (a docker image)"
            )
        return self


class RankingSpec(_Frozen):
    method: RankingMethod = "rankThenMean"


class BenchmarkSpec(_Frozen):
    """A whole evaluation: the three kinds of cube, the limits and the ranking method."""

    name: str
    description: str = ""
    data_prep: DataPrepSpec
    metrics: MetricsSpec
    models: list[ModelRef] = Field(min_length=1)
    limits: ResourceLimits = ResourceLimits()
    data: DataExpectations = DataExpectations()
    ranking: RankingSpec = RankingSpec()
    sites: list[Path] = Field(default_factory=list, description="site files or directories, relative to here")
    base_image: str | None = None
    image_contract: ImageContract = Field(
        "fets2022",
        description="how a model given as a bare 'image' is called: fets2022 (the FeTS MLCube arguments: "
        "infer --data_path=... --output_path=...) or medperf (MedPerf's model template: /mlcommons/volumes/data "
        "and /mlcommons/volumes/predictions mounted, the image's own command)",
    )
    sandbox_trusted_cubes: bool = Field(
        False,
        description="run the data-prep and metrics cubes in the local runtime's bubblewrap sandbox too "
        "(submissions always are)",
    )
    source: Path | None = Field(None, exclude=True, description="the file this was loaded from")

    @model_validator(mode="after")
    def _unique_models(self) -> BenchmarkSpec:
        names = [m.name for m in self.models]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"model names must be unique; repeated: {', '.join(dupes)}")
        return self


class ShiftSpec(_Frozen):
    """A site's acquisition shift; mirrors :class:`fedsim.synth.SiteShift`.

    The upper bounds are far beyond any scanner (100× the brain's mean intensity) and keep the float32
    arithmetic of synthesis finite, so no value here can end in overflowed, meaningless voxels.
    """

    intensity_scale: float = Field(1.0, gt=0.0, le=100.0)
    intensity_offset: float = Field(0.0, ge=-100.0, le=100.0)
    noise_std: float = Field(0.0, ge=0.0, le=100.0)
    bias_field: float = Field(0.0, ge=0.0, lt=1.0)
    contrast_gamma: float = Field(1.0, gt=0.0, le=10.0)


class ShiftRefSpec(_Frozen):
    """One of the stress test's acquisition shifts (``fedsim.synth.shifts``) at a severity level."""

    name: Literal["intensity", "bias", "noise", "thick_slices", "gamma", "missing", "swap", "misregistration"]
    level: int = Field(ge=0)
    seed: int = 0

    @model_validator(mode="after")
    def _known_level(self) -> ShiftRefSpec:
        from fedsim.synth.shifts import parse_shift_list

        parse_shift_list([self.model_dump()])  # ValueError: "shift 'missing' has levels 0..3, got 4"
        return self


# A synthetic volume's side (the phantom needs 8 voxels) and spacing in mm (NIfTI cannot store an affine of
# 1e-300 mm voxels); at most 64 Mi voxels a case (7.5× BraTS's 240×240×155), so synthesis fits in memory.
SynthSide = Annotated[int, Field(ge=8, le=1024)]
SynthSpacing = Annotated[float, Field(ge=0.01, le=100.0)]
MAX_SYNTH_VOXELS = 64 * 1024**2


SynthLabels = Literal["fets", "brats2025"]
# Fields added to SynthesizeSpec after its cache key was first derived: left out of the key (and the done
# marker) while they hold their default, so existing sites keep their cached data.
SYNTH_KEY_OPTIONAL = ("labels", "resection_cavity")


class SynthesizeSpec(_Frozen):
    cases: PositiveInt = 3
    seed: int = Field(0, ge=0)
    shape: tuple[SynthSide, SynthSide, SynthSide] = (240, 240, 155)
    spacing: tuple[SynthSpacing, SynthSpacing, SynthSpacing] = (1.0, 1.0, 1.0)
    shift: ShiftSpec = ShiftSpec()
    shifts: tuple[ShiftRefSpec, ...] = ()
    labels: SynthLabels = Field(
        "fets",
        description="label convention of the written segmentations: fets = 1 necrosis, 2 oedema, 4 enhancing; "
        "brats2025 = 1 NETC, 2 SNFH, 3 ET, 4 RC (resection cavity)",
    )
    resection_cavity: float = Field(
        0.0, ge=0.0, le=1.0, description="share of cases (post-operative) with a resection cavity; brats2025 only"
    )

    @model_validator(mode="after")
    def _cavity_needs_a_label(self) -> SynthesizeSpec:
        if self.resection_cavity > 0 and self.labels != "brats2025":
            raise ValueError("resection_cavity needs 'labels: brats2025' (label 4 is enhancing tumour in fets)")
        return self

    def key_fields(self) -> dict[str, object]:
        """The settings that decide the data (the cache key's and the done marker's content)."""
        out = self.model_dump(mode="json")
        for name in SYNTH_KEY_OPTIONAL:
            if out[name] == type(self).model_fields[name].default:
                del out[name]
        return out

    @model_validator(mode="after")
    def _fits_in_memory(self) -> SynthesizeSpec:
        voxels = self.shape[0] * self.shape[1] * self.shape[2]
        if voxels > MAX_SYNTH_VOXELS:
            raise ValueError(
                f"shape {list(self.shape)} has {voxels:,} voxels a case; synthesis allows at most "
                f"{MAX_SYNTH_VOXELS:,} (e.g. 240×240×155 has 8,928,000)"
            )
        return self


class SiteDataSpec(_Frozen):
    """Where a site's raw cases live, or how to synthesise them when they do not exist yet."""

    path: Path | None = None
    synthesize: SynthesizeSpec | None = None

    @model_validator(mode="after")
    def _some_source(self) -> SiteDataSpec:
        if self.path is None and self.synthesize is None:
            raise ValueError("give 'path' (a directory of raw cases), 'synthesize', or both")
        return self


class HardwareProfile(_Frozen):
    gpus: int = Field(0, ge=0)
    gpu_memory_gb: PositiveFloat = 11.0
    ram_gb: PositiveFloat = 40.0
    cpus: PositiveInt = 4
    slots: PositiveInt = Field(
        1, description="jobs the site runs at once (a real site runs one at a time); a GPU job also takes a GPU"
    )


class SiteSpec(_Frozen):
    """A simulated institution: its data, the runtime it uses and its hardware."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    description: str = ""
    data: SiteDataSpec
    runtime: RuntimeName = "auto"
    hardware: HardwareProfile = HardwareProfile()
    base_image: str | None = None
    source: Path | None = Field(None, exclude=True)
