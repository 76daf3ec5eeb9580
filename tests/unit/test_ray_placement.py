"""The Ray executor's placement of jobs on its sites' nodes, without a cluster: the driver's own count of what its
jobs hold decides which node a job goes to, and when none has room the job is not admitted (it waits in the
scheduler, not in Ray's queue)."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("ray")

from fedsim.executors.ray import RayExecutor
from fedsim.testing import fake_plans


def _node(node_id: str, cpus: float, gpus: float = 0, sites: tuple[str, ...] = ()) -> dict[str, Any]:
    resources = {"CPU": cpus, **({"GPU": gpus} if gpus else {}), **{f"site:{s}": 1.0 for s in sites}}
    return {"NodeID": node_id, "Alive": True, "Resources": resources}


def _executor(nodes: list[dict[str, Any]]) -> RayExecutor:
    ex = RayExecutor.__new__(RayExecutor)  # no cluster: only the bookkeeping is under test
    ex._lock = threading.Lock()
    ex._used, ex._placed, ex._warned_cpu_only = {}, {}, False
    ex._alive_nodes = lambda: nodes  # type: ignore[method-assign]
    return ex


def _jobs(tmp_path: Path, site: str, n: int, gpus: int = 0) -> list[Any]:
    models = tuple(f"m{i}" for i in range(n))
    plan = fake_plans(tmp_path, [site], models=models, gpus=gpus, model_gpus=gpus)[0]
    return [j for j in plan.jobs if j.name.startswith("infer.")]


def test_a_site_on_two_nodes_spreads_its_jobs_and_waits_when_both_are_full(tmp_path: Path) -> None:
    ex = _executor([_node("a", 2, sites=("s0",)), _node("b", 2, sites=("s0",)), _node("c", 8, sites=("s1",))])
    assert ex.slots() == 12
    jobs = _jobs(tmp_path, "s0", 5)
    assert all(ex.admit(j) for j in jobs[:4])
    assert sorted(ex._placed[j.key][0] for j in jobs[:4]) == ["a", "a", "b", "b"]  # spread, never on s1's node
    assert not ex.admit(jobs[4])  # both of s0's nodes are full: it waits in the scheduler
    node, _ = ex._placed.pop(jobs[0].key)  # what run() gives back when the job ends
    ex._used[node][0] -= 1
    assert ex.admit(jobs[4]) and ex._placed[jobs[4].key][0] == node


def test_gpu_jobs_need_a_free_gpu_on_a_node_of_their_site(tmp_path: Path) -> None:
    ex = _executor([_node("a", 4, gpus=1, sites=("s0",)), _node("b", 4, sites=("s0",))])
    first, second = _jobs(tmp_path, "s0", 2, gpus=1)
    assert first.limits.gpus == 1
    assert ex.admit(first) and ex._placed[first.key] == ("a", 1)
    assert not ex.admit(second)  # node b has CPUs but no GPU


def test_a_cluster_without_gpus_runs_gpu_jobs_on_the_cpu(tmp_path: Path) -> None:
    ex = _executor([_node("a", 2, sites=("s0",))])
    (job,) = _jobs(tmp_path, "s0", 1, gpus=1)
    assert ex._gpus_for(job) == 0 and ex._warned_cpu_only
    assert ex.admit(job) and ex._placed[job.key] == ("a", 0)
