"""The Ray executor: every job is a Ray task, pinned to its site's node, that runs ``execute_job`` itself.

This is the only module that imports ``ray``. The pipeline sees the :class:`Executor` seam and nothing else.

- **Lifecycle inside the task.** The remote task calls :func:`fedsim.pipeline.execute.execute_job` — launch,
  guards, kill, cleanup all happen on the node, exactly as under the local executor. ``ray.cancel`` is never
  used to stop a job: on the driver's ``stop_event`` the executor raises a flag on a small actor
  (:class:`_StopBoard`); a thread inside the task polls it and sets the task's own ``stop_event``, so
  ``execute_job``'s interrupt path terminates the process tree or container and cleans up.
- **Site affinity.** A node declares the sites it hosts when it joins:
  ``ray start --address=HEAD --resources='{"site:s0": 1}'``. Each job asks for ``site:<name>: 0.001``, so any
  number of a site's jobs fit on its node, and never on another one. :meth:`RayExecutor.check_sites` refuses,
  before anything runs, a site no node declares (or whose nodes lack the GPUs its profile asks for).
- **GPUs.** A GPU job asks Ray for ``num_gpus=job.limits.gpus`` and runs on the ids Ray assigns
  (``ray.get_gpu_ids()``, mapped to NVML UUIDs on the node when NVML answers). Each worker process keeps one
  GPU sampler, so the GPU-memory guard works as it does locally.
- **Files.** Shared mode (the only mode implemented): the run directory, the site data and the cubes are at the
  same path on every node (one machine, or a shared filesystem mounted at the same path). Nothing is copied:
  the task writes its outputs and streams its log straight into the driver's run directory. See the README
  ("Ray executor") for the node-local mode that is not implemented yet and what it needs.
- **Environment.** Tasks run in the node's worker processes: their environment (``DOCKER_HOST``,
  ``FEDSIM_HOST_ROOT``, ``PATH``) is the one ``ray start`` had on that node, and ``fedsim`` must be installed in
  the node's Python (the local runtime runs cubes with that Python).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import uuid
from pathlib import Path
from typing import Any

import ray

from fedsim.errors import RuntimeUnavailable, SpecError
from fedsim.executors.base import Executor
from fedsim.pipeline.job import Job, JobResult, JobStatus
from fedsim.spec import SiteSpec

log = logging.getLogger("fedsim.executors.ray")

SITE_RESOURCE = "site:{}"
SITE_SHARE = 0.001  # a site's jobs take a sliver of its resource: affinity, not a concurrency limit
STOP_POLL_S = 0.2


def site_resource(site: str) -> str:
    return SITE_RESOURCE.format(site)


@ray.remote(num_cpus=0)
class _StopBoard:
    """Which running jobs the driver asked to stop (the tasks poll it; nothing is cancelled by Ray)."""

    def __init__(self) -> None:
        self._stopped: set[str] = set()

    def stop(self, token: str) -> None:
        self._stopped.add(token)

    def forget(self, token: str) -> None:
        self._stopped.discard(token)

    def is_stopped(self, token: str) -> bool:
        return token in self._stopped


# --- what runs on the node -------------------------------------------------------------------------------

_node_state: dict[str, Any] = {}
_node_lock = threading.Lock()


def _node_runtimes() -> Any:
    """One RuntimePool per worker process: runtimes cache clients and built images across the tasks."""
    from fedsim.runtimes.select import RuntimePool

    with _node_lock:
        if "runtimes" not in _node_state:
            _node_state["runtimes"] = RuntimePool()
        return _node_state["runtimes"]


def _node_gpus() -> tuple[Any, Any]:
    """(NVML backend, GPU sampler) of this worker, created on the first GPU job; (None, None) without NVML."""
    from fedsim.guard.gpu import GpuSampler
    from fedsim.guard.nvml import default_backend

    with _node_lock:
        if "nvml" not in _node_state:
            backend = default_backend()
            _node_state["nvml"] = backend
            _node_state["sampler"] = GpuSampler(backend) if backend is not None else None
        return _node_state["nvml"], _node_state["sampler"]


def gpu_ids_from_ray(ray_ids: list[Any], devices: list[Any]) -> tuple[str, ...]:
    """Ray's GPU ids (indices in the node's CUDA_VISIBLE_DEVICES, or UUIDs) → NVML UUIDs where known."""
    by_index = {str(d.index): d.uuid for d in devices}
    return tuple(by_index.get(str(i), str(i)) for i in ray_ids)


def _watch_stop(board: Any, token: str, stop: threading.Event, done: threading.Event) -> None:
    while not done.wait(STOP_POLL_S):
        try:
            if ray.get(board.is_stopped.remote(token)):
                stop.set()
                return
        except Exception:  # the driver (and its board) is gone: stop the job rather than orphan it
            stop.set()
            return


def _run_on_node(job: Job, board: Any, token: str) -> JobResult:
    from fedsim.pipeline.execute import execute_job

    sampler = None
    if job.limits.gpus:
        nvml, sampler = _node_gpus()
        job = dataclasses.replace(job, gpu_ids=gpu_ids_from_ray(ray.get_gpu_ids(), nvml.devices() if nvml else []))
    stop, done = threading.Event(), threading.Event()
    watcher = threading.Thread(target=_watch_stop, args=(board, token, stop, done), daemon=True)
    watcher.start()
    try:
        result = execute_job(job, _node_runtimes(), stop, sampler)
    finally:
        done.set()
    result.node = ray.get_runtime_context().get_node_id()
    return result


_remote_job = ray.remote(max_retries=0)(_run_on_node)


# --- the driver side --------------------------------------------------------------------------------------


class RayExecutor(Executor):
    """Run jobs on a Ray cluster. ``address``: ``auto``, ``HOST:PORT`` of a head node, or ``local`` (a private
    single-node Ray started for this run; every site must then be declared through ``site_resources``).

    ``shared_dir``: a directory every node sees at the same path; the run directory must lie under it. When
    omitted, the run directory is assumed shared when every node runs on the driver's host.
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = "auto",
        *,
        shared_dir: Path | None = None,
        site_resources: dict[str, float] | None = None,
        num_cpus: int | None = None,
    ) -> None:
        self.address = address
        self.shared_dir = Path(shared_dir).resolve() if shared_dir is not None else None
        self._owns_ray = False
        try:
            if not ray.is_initialized():
                if address in (None, "local"):
                    ray.init(
                        num_cpus=num_cpus,
                        resources=dict(site_resources or {}),
                        include_dashboard=False,
                        logging_level=logging.WARNING,
                        log_to_driver=False,
                    )
                else:
                    ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
                self._owns_ray = True
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise RuntimeUnavailable(f"cannot connect to the Ray cluster at {address!r}: {exc}") from exc
        self._board = _StopBoard.remote()  # type: ignore[attr-defined]
        self._closed = False

    # -- Executor seam -------------------------------------------------------------------------------------

    def check_sites(self, sites: list[SiteSpec]) -> None:
        try:
            self._check_sites(sites)
        except SpecError:
            self.close()  # refused before anything ran: nobody will enter or close this executor
            raise

    def _check_sites(self, sites: list[SiteSpec]) -> None:
        nodes = [n for n in ray.nodes() if n.get("Alive")]
        if self.shared_dir is None:
            here = ray.util.get_node_ip_address()
            remote = sorted({n["NodeManagerAddress"] for n in nodes} - {here})
            if remote:
                raise SpecError(
                    f"Ray nodes on other hosts ({', '.join(remote)}) need a shared run directory: "
                    "put --runs-dir on a filesystem every node mounts at the same path and pass --ray-shared-dir",
                    field="--ray-shared-dir",
                )
        for s in sites:
            res = site_resource(s.name)
            hosts = [n for n in nodes if n.get("Resources", {}).get(res, 0) > 0]
            if not hosts:
                raise SpecError(
                    f"site {s.name!r}: no node of the Ray cluster declares the resource {res!r}; start one with "
                    f"ray start --address=<head> --resources='{{\"{res}\": 1}}'",
                    file=str(s.source or "") or None,
                    field="name",
                )
            gpus = s.hardware.gpus
            if gpus and not any(n["Resources"].get("GPU", 0) >= gpus for n in hosts):
                raise SpecError(
                    f"site {s.name!r} asks for {gpus} GPUs but no node declaring {res!r} has that many",
                    file=str(s.source or "") or None,
                    field="hardware.gpus",
                )

    def run(self, job: Job, stop_event: threading.Event | None = None) -> JobResult:
        if self.shared_dir is not None and not job.log_path.resolve().is_relative_to(self.shared_dir):
            return JobResult(
                job.site, job.name, job.kind.value, job.model, JobStatus.FAILED,
                reason=f"the run directory is not under the shared directory {self.shared_dir}",
            )  # fmt: skip
        token = f"{job.key}#{uuid.uuid4().hex[:8]}"
        options: dict[str, Any] = {"resources": {site_resource(job.site): SITE_SHARE}, "num_cpus": 1}
        if job.limits.gpus:
            options["num_gpus"] = job.limits.gpus
        ref = _remote_job.options(**options).remote(job, self._board, token)
        stop_sent = False
        try:
            while True:
                ready, _ = ray.wait([ref], timeout=STOP_POLL_S)
                if ready:
                    break
                if stop_event is not None and stop_event.is_set() and not stop_sent:
                    self._board.stop.remote(token)
                    stop_sent = True
            return ray.get(ref)  # type: ignore[no-any-return]
        except ray.exceptions.RayError as exc:  # the task died (node lost, worker killed): a record, not a raise
            return JobResult(
                job.site, job.name, job.kind.value, job.model, JobStatus.FAILED,
                reason=f"ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                log=str(job.log_path),
            )  # fmt: skip
        finally:
            if stop_sent:
                self._board.forget.remote(token)

    def lanes(self, requested: int) -> int:
        return max(1, requested)  # Ray queues what does not fit; every site gets its own lane

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            ray.kill(self._board)
        except Exception as exc:  # the cluster may already be gone
            log.debug("could not kill the stop board: %s", exc)
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False


__all__ = ["RayExecutor", "gpu_ids_from_ray", "site_resource"]
