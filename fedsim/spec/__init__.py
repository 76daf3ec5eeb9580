"""Benchmark and site specifications: validated once at load time, immutable afterwards."""

from fedsim.spec.loader import load_benchmark, load_site, load_sites, read_yaml_mapping, site_files
from fedsim.spec.models import (
    BenchmarkSpec,
    DataExpectations,
    HardwareProfile,
    MetricsSpec,
    ModelRef,
    ResourceLimits,
    ShiftSpec,
    SiteSpec,
    SynthesizeSpec,
)

__all__ = [
    "BenchmarkSpec",
    "DataExpectations",
    "HardwareProfile",
    "MetricsSpec",
    "ModelRef",
    "ResourceLimits",
    "ShiftSpec",
    "SiteSpec",
    "SynthesizeSpec",
    "load_benchmark",
    "load_site",
    "load_sites",
    "read_yaml_mapping",
    "site_files",
]
