"""Synthetic BraTS-like multi-site data with per-site domain shift.

Imports only numpy, scipy, nibabel and the stdlib: the reference cubes use it inside minimal Debian
images (old pydantic, no typer), and tests need realistic data without any download.
"""

from __future__ import annotations

from .phantom import synthesize_case
from .shift import SiteShift
from .writer import synthesize_site

__all__ = ["SiteShift", "synthesize_case", "synthesize_site"]
