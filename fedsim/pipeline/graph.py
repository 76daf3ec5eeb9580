"""The job graph of a run, pure: which job waits for which, what a failure skips, and who goes first.

Per site: prepare → sanity_check → statistics → for each model: infer → evaluate.

- A **requirement** must succeed: every data-prep step requires the previous one, and every infer and evaluate
  requires the last data-prep step. When one fails, exactly its dependants are skipped, with the reason
  ``"<first failed step> failed at this site"``.
- An **after** edge only waits: a model's evaluate runs as soon as its infer has finished, whatever its outcome.
  After a failed infer the evaluate still runs, on an emptied predictions directory (the penalty rows).
- **Capacity**: a site runs at most ``hardware.slots`` jobs at once, and its GPU jobs share its
  ``hardware.gpus``; the executor's own capacity is the scheduler's business (:mod:`fedsim.pipeline.scheduler`).
- **Priority** among ready jobs: the longest expected path from the job to the end of its site first (its own
  duration plus that of its longest chain of dependants: longest-first with the critical path in view), ties
  in plan order so that runs are deterministic. Durations come from earlier runs' ledgers where known, else
  the same job at another site, else the known jobs of its kind (a new model), else a static guess by kind.

:class:`GraphRun` is the state of one execution; it never runs anything and takes no locks (one thread
drives it).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from fedsim.jobs.job import Job, JobKind, JobResult, JobStatus
from fedsim.pipeline.plan import SitePlan

DATA_PREP = frozenset({JobKind.PREPARE, JobKind.SANITY_CHECK, JobKind.STATISTICS})

# Expected seconds of a job no earlier run has timed: only their order matters (models are the long part).
DEFAULT_SECONDS: dict[JobKind, float] = {
    JobKind.PREPARE: 60.0,
    JobKind.SANITY_CHECK: 10.0,
    JobKind.STATISTICS: 10.0,
    JobKind.INFER: 300.0,
    JobKind.EVALUATE: 30.0,
}


@dataclass(frozen=True)
class Node:
    job: Job
    index: int  # position in the plan over all sites: the tie-break
    requires: tuple[str, ...] = ()  # keys that must succeed, else this job is skipped
    after: tuple[str, ...] = ()  # keys that must have finished, whatever their outcome

    @property
    def key(self) -> str:
        return self.job.key

    @property
    def deps(self) -> tuple[str, ...]:
        return self.requires + self.after


@dataclass(frozen=True)
class SiteCapacity:
    slots: int = 1
    gpus: int = 0


class JobGraph:
    """Every job of a run with its edges, in plan order (which is also a topological order)."""

    def __init__(self, nodes: Iterable[Node], sites: Mapping[str, SiteCapacity]) -> None:
        self.nodes: dict[str, Node] = {n.key: n for n in nodes}
        self.sites = dict(sites)
        dependants: dict[str, list[str]] = {k: [] for k in self.nodes}
        for n in self.nodes.values():
            for d in n.deps:
                if d not in self.nodes or self.nodes[d].index >= n.index:
                    raise ValueError(f"{n.key}: dependency {d!r} is not an earlier job of the plan")
                dependants[d].append(n.key)
        self.dependants = {k: tuple(v) for k, v in dependants.items()}

    @classmethod
    def from_plans(cls, plans: Iterable[SitePlan]) -> JobGraph:
        nodes: list[Node] = []
        sites: dict[str, SiteCapacity] = {}
        for p in plans:
            hw = p.site.hardware
            sites[p.site.name] = SiteCapacity(slots=hw.slots, gpus=hw.gpus)
            last_prep: str | None = None
            infers: dict[str | None, str] = {}
            for job in p.jobs:
                requires = (last_prep,) if last_prep else ()
                after: tuple[str, ...] = ()
                if job.kind is JobKind.EVALUATE and job.model in infers:
                    after = (infers[job.model],)
                nodes.append(Node(job, len(nodes), requires, after))
                if job.kind in DATA_PREP:
                    last_prep = job.key
                elif job.kind is JobKind.INFER:
                    infers[job.model] = job.key
        return cls(nodes, sites)

    def expected_seconds(self, durations: Mapping[str, float]) -> dict[str, float]:
        """Each job's expected duration: its own from ``durations`` (job key → seconds), else the mean of the
        same job name at other sites, else the mean of the known jobs of its kind (a new model), else
        :data:`DEFAULT_SECONDS` of its kind."""
        by_name: dict[str, list[float]] = {}
        for key, secs in durations.items():
            by_name.setdefault(key.partition("/")[2], []).append(secs)
        by_kind: dict[JobKind, list[float]] = {}
        for key, n in self.nodes.items():
            if key in durations:
                by_kind.setdefault(n.job.kind, []).append(durations[key])
            elif n.job.name in by_name:
                by_kind.setdefault(n.job.kind, []).extend(by_name[n.job.name])

        def mean(values: list[float]) -> float:
            return sum(values) / len(values)

        out: dict[str, float] = {}
        for key, n in self.nodes.items():
            if key in durations:
                out[key] = durations[key]
            elif n.job.name in by_name:
                out[key] = mean(by_name[n.job.name])
            elif n.job.kind in by_kind:
                out[key] = mean(by_kind[n.job.kind])
            else:
                out[key] = DEFAULT_SECONDS.get(n.job.kind, 1.0)
        return out

    def priorities(self, durations: Mapping[str, float] | None = None) -> dict[str, float]:
        """The longest expected path from each job to the end (its own duration included)."""
        secs = self.expected_seconds(durations or {})
        level: dict[str, float] = {}
        for key in reversed(self.nodes):
            level[key] = secs[key] + max((level[d] for d in self.dependants[key]), default=0.0)
        return level

    def critical_path(self, durations: Mapping[str, float]) -> float:
        """The longest chain of dependent jobs, with the given durations (0 for a job without one)."""
        level: dict[str, float] = {}
        for key in reversed(self.nodes):
            level[key] = durations.get(key, 0.0) + max((level[d] for d in self.dependants[key]), default=0.0)
        return max(level.values(), default=0.0)


def skipped(job: Job, reason: str, status: JobStatus = JobStatus.SKIPPED) -> JobResult:
    return JobResult(job.site, job.name, job.kind.value, job.model, status, reason=reason)


class GraphRun:
    """Where one execution of a graph stands: results so far, what runs, what may start next."""

    def __init__(
        self,
        graph: JobGraph,
        done: Mapping[str, JobResult] | None = None,
        durations: Mapping[str, float] | None = None,
    ) -> None:
        self.graph = graph
        self.results: dict[str, JobResult] = {k: r for k, r in (done or {}).items() if k in graph.nodes}
        self.running: set[str] = set()
        self._site_jobs: Counter[str] = Counter()
        self._site_gpus: Counter[str] = Counter()
        prio = graph.priorities(durations)
        self._order = sorted(graph.nodes, key=lambda k: (-prio[k], graph.nodes[k].index))

    # -- queries -----------------------------------------------------------------------------------------

    def _waiting(self) -> list[Node]:
        return [self.graph.nodes[k] for k in self._order if k not in self.results and k not in self.running]

    def _ok(self, key: str) -> bool:
        return key in self.results and self.results[key].status.finished_ok

    def ready(self) -> list[Node]:
        """Jobs whose dependencies are all settled (requirements succeeded), highest priority first."""
        return [
            n
            for n in self._waiting()
            if all(self._ok(d) for d in n.requires) and all(d in self.results for d in n.after)
        ]

    def doomed(self) -> list[tuple[Node, str]]:
        """Waiting jobs a failed requirement skips, each with its reason, in plan order."""
        out = []
        for n in sorted(self._waiting(), key=lambda n: n.index):
            failed = [d for d in n.requires if d in self.results and not self.results[d].status.finished_ok]
            if failed:
                out.append((n, f"{self._root_failure(failed[0])} failed at this site"))
        return out

    def _root_failure(self, key: str) -> str:
        """The name of the job whose failure ``key``'s outcome goes back to (itself unless it was skipped)."""
        res = self.results[key]
        if res.status is JobStatus.SKIPPED:
            for d in self.graph.nodes[key].requires:
                if d in self.results and not self.results[d].status.finished_ok:
                    return self._root_failure(d)
        return self.graph.nodes[key].job.name

    def site_fits(self, node: Node) -> bool:
        """Whether the job's site has a free slot (and, for a GPU job, enough free GPUs of its own)."""
        cap = self.graph.sites.get(node.job.site, SiteCapacity())
        site = node.job.site
        if self._site_jobs[site] >= cap.slots:
            return False
        return self._site_gpus[site] + self._site_gpus_of(node) <= cap.gpus

    def _site_gpus_of(self, node: Node) -> int:
        cap = self.graph.sites.get(node.job.site, SiteCapacity())
        return min(node.job.limits.gpus, cap.gpus)

    def penalised(self, node: Node) -> bool:
        """An evaluate after a failed infer: the model's output is void, every case gets the penalty row."""
        return node.job.kind is JobKind.EVALUATE and any(not self._ok(d) for d in node.after)

    @property
    def settled(self) -> bool:
        return len(self.results) == len(self.graph.nodes)

    # -- transitions -------------------------------------------------------------------------------------

    def start(self, node: Node) -> None:
        self.running.add(node.key)
        self._site_jobs[node.job.site] += 1
        self._site_gpus[node.job.site] += self._site_gpus_of(node)

    def finish(self, key: str, result: JobResult) -> None:
        if key in self.running:
            node = self.graph.nodes[key]
            self.running.discard(key)
            self._site_jobs[node.job.site] -= 1
            self._site_gpus[node.job.site] -= self._site_gpus_of(node)
        self.results[key] = result

    def interrupt_waiting(self) -> list[Node]:
        """Mark every job that has not started as interrupted; returns them."""
        waiting = sorted(self._waiting(), key=lambda n: n.index)
        for n in waiting:
            self.results[n.key] = skipped(n.job, "run interrupted before this job started", JobStatus.INTERRUPTED)
        return waiting

    def by_site(self) -> dict[str, list[JobResult]]:
        """Results per site, in plan order (jobs without a result are left out)."""
        out: dict[str, list[JobResult]] = {s: [] for s in self.graph.sites}
        for key, n in self.graph.nodes.items():
            if key in self.results:
                out.setdefault(n.job.site, []).append(self.results[key])
        return out
