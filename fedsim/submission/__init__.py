"""Submission checks: ``fedsim check-submission`` for participants and ``fedsim dry-run`` for organisers.

One module per job: :mod:`.locate` (which file declares the cube), :mod:`.static` (mlcube.yaml or MedPerf's
container_config.yaml, Dockerfile, image), :mod:`.toydata` (the cases a check runs on), :mod:`.dynamic`
(``infer`` under the federation's limits), :mod:`.outputs` (what it wrote), :mod:`.attempts` (refused writes
and network access in the log), :mod:`.forecast` (each site's time and memory headroom), :mod:`.report`
(checks, verdict, JSON), :mod:`.check` (one submission end to end), :mod:`.dryrun` (many, concurrently) and
:mod:`.cli` (the two commands). Import-light: the heavy modules load on use.
"""

from __future__ import annotations

from fedsim.submission.report import Check, CheckStatus, SubmissionReport

__all__ = ["Check", "CheckStatus", "SubmissionReport"]
