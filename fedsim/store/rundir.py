"""Paths inside a run directory; computes, never creates (except via ``ensure``).

runs/<run-id>/
  config/benchmark.yaml, config/sites/<site>.yaml   the resolved specs this run used
  sites/<site>/prepared/ labels/ metadata/ params/ predictions/<model>/ results/<model>.yaml logs/<job>.log
  results/<site>.yaml      only metrics leave a site: case -> model -> flat metric keys
  summary.json             per job: status, exit code, reason, duration, peaks; every segment (run, resumes)
  run.lock                 flock held by the live fedsim of this run (fedsim.store.runlock)
  ranking/                 final_ranks_<method>.csv ...
"""

from __future__ import annotations

import secrets
import time
from dataclasses import dataclass
from pathlib import Path


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(2)


@dataclass(frozen=True)
class SiteDirectory:
    root: Path

    @property
    def prepared(self) -> Path:
        return self.root / "prepared"

    @property
    def labels(self) -> Path:
        return self.root / "labels"

    @property
    def metadata(self) -> Path:
        return self.root / "metadata"

    @property
    def params(self) -> Path:
        return self.root / "params"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def work(self) -> Path:
        return self.root / "work"

    @property
    def statistics(self) -> Path:
        return self.root / "statistics.yaml"

    @property
    def report(self) -> Path:
        """prepare's ``report_file`` (MedPerf's ``<dataset>/report.yaml``)."""
        return self.root / "report.yaml"

    def local_outputs(self, model: str) -> Path:
        """evaluate's ``local_outputs_path``: what a metrics container keeps at the site."""
        return self.root / "local_outputs" / model

    def predictions(self, model: str) -> Path:
        return self.root / "predictions" / model

    def results(self, model: str) -> Path:
        return self.root / "results" / f"{model}.yaml"

    def log(self, job_name: str) -> Path:
        return self.logs / f"{job_name}.log"


@dataclass(frozen=True)
class RunDirectory:
    root: Path

    @property
    def run_id(self) -> str:
        return self.root.name

    @property
    def config(self) -> Path:
        return self.root / "config"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def ranking(self) -> Path:
        return self.root / "ranking"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    def site(self, name: str) -> SiteDirectory:
        return SiteDirectory(self.root / "sites" / name)

    def site_results(self, name: str) -> Path:
        return self.results / f"{name}.yaml"
