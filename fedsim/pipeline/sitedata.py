"""Make sure every site's raw data exists: use its directory, or synthesise it once and cache it.

The cache key is a hash of the synthesis settings, so changing a site's shift or case count makes new data
and an unchanged site reuses what is there. Synthesis writes each case atomically (see ``fedsim.synth``).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from fedsim.spec import SiteSpec, SynthesizeSpec
from fedsim.store.cache import cache_root

DONE_MARKER = ".fedsim-synth.json"


def synth_key(site: str, spec: SynthesizeSpec) -> str:
    payload = json.dumps({"site": site, **spec.key_fields()}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


def site_data_dir(site: SiteSpec) -> Path:
    """Where this site's raw cases are (or will be once synthesised)."""
    if site.data.path is not None:
        return site.data.path
    assert site.data.synthesize is not None
    return cache_root() / "sites" / f"{site.name}-{synth_key(site.name, site.data.synthesize)}"


def needs_synthesis(site: SiteSpec) -> bool:
    if site.data.synthesize is None:
        return False
    directory = site_data_dir(site)
    marker = directory / DONE_MARKER
    if not marker.is_file():
        return True
    try:
        recorded = json.loads(marker.read_text())
    except (OSError, ValueError):
        return True
    return bool(recorded != site.data.synthesize.key_fields())


def ensure_site_data(site: SiteSpec) -> Path:
    """Return the raw data directory of ``site``, synthesising it first when needed."""
    directory = site_data_dir(site)
    spec = site.data.synthesize
    if spec is not None and needs_synthesis(site):
        from fedsim.synth import SiteShift, synthesize_site

        directory.mkdir(parents=True, exist_ok=True)
        synthesize_site(
            directory,
            n_cases=spec.cases,
            seed=spec.seed,
            shape=tuple(spec.shape),
            spacing=tuple(spec.spacing),
            shift=SiteShift(**spec.shift.model_dump()),
            case_prefix=site.name,
            shifts=[x.model_dump() for x in spec.shifts],
            labels=spec.labels,
            resection_cavity=spec.resection_cavity,
        )
        (directory / DONE_MARKER).write_text(json.dumps(spec.key_fields(), sort_keys=True))
    return directory
