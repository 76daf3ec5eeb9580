"""The Ray executor: every job is a Ray task, pinned to its site's node, that runs ``execute_job`` itself.

This is the only module that imports ``ray``. The pipeline sees the :class:`Executor` seam and nothing else.

- **Lifecycle inside the task.** The remote task calls :func:`fedsim.jobs.execute.execute_job` — launch,
  guards, kill, cleanup all happen on the node, exactly as under the local executor. ``ray.cancel`` is never
  used to stop a job: on the driver's ``stop_event`` the executor raises a flag on a small actor
  (:class:`_StopBoard`); a thread inside the task polls it and sets the task's own ``stop_event``, so
  ``execute_job``'s interrupt path terminates the process tree or container and cleans up.
- **Site affinity.** A node declares the sites it hosts when it joins:
  ``ray start --address=HEAD --resources='{"site:s0": 1}'``. Each job asks for ``site:<name>: 0.001``, so any
  number of a site's jobs fit on its nodes, and never on another one. :meth:`RayExecutor.check_sites` refuses,
  before anything runs, a site no node declares (or whose nodes lack the GPUs its profile asks for).
- **Capacity.** The executor runs as many jobs at once as the site-hosting nodes have CPUs (each job takes one
  CPU); a site's own limit (``hardware.slots``) is the scheduler's. :meth:`RayExecutor.admit` places each job
  on one of its site's nodes that has a CPU (and the GPUs) free in the driver's count of its own jobs, the
  emptiest first, so a site declared on several nodes spreads its jobs over them; a job with no free place
  waits in the scheduler, never in Ray's queue, so it holds back no other job that would fit.
- **GPUs.** A GPU job asks Ray for ``num_gpus=job.limits.gpus`` and runs on the ids Ray assigns
  (``ray.get_gpu_ids()``, mapped to NVML UUIDs on the node when NVML answers). Each worker process keeps one
  GPU sampler, so the GPU-memory guard works as it does locally. On a cluster without any GPU, GPU jobs run on
  the CPU with one warning, as under the local executor.
- **Files.** Shared mode (the only mode implemented): the run directory, the site data and the cubes are at the
  same path on every node (one machine, or a shared filesystem mounted at the same path). Nothing is copied:
  the task writes its outputs and streams its log straight into the driver's run directory. See the README
  ("Ray executor") for the node-local mode that is not implemented yet and what it needs.
- **Authentication.** Before joining a cluster the driver asks it whether it wants Ray's token (Ray >= 2.52) and
  takes its mode: token mode with the token Ray finds (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token),
  or none. A missing or rejected token is one line naming the fix (:func:`match_cluster_auth`).
- **Environment.** Tasks run in the node's worker processes: their environment (``DOCKER_HOST``,
  ``FEDSIM_HOST_ROOT``, ``PATH``) is the one ``ray start`` had on that node, and ``fedsim`` must be installed in
  the node's Python (the local runtime runs cubes with that Python).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import re
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray
from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

from fedsim.errors import RuntimeUnavailable, SpecError
from fedsim.executors.base import Executor
from fedsim.jobs.job import Job, JobResult, JobStatus
from fedsim.spec import SiteSpec

log = logging.getLogger("fedsim.executors.ray")

SITE_RESOURCE = "site:{}"
SITE_SHARE = 0.001  # a site's jobs take a sliver of its resource: affinity, not a concurrency limit
STOP_POLL_S = 0.2
NODES_TTL_S = 2.0  # how long the driver trusts its view of the cluster's nodes (nodes join and die)


def site_resource(site: str) -> str:
    return SITE_RESOURCE.format(site)


# --- token authentication (Ray >= 2.52) -----------------------------------------------------------------
#
# Ray reads RAY_AUTH_MODE (disabled|token) once into its config; in token mode it sends the token it finds in
# RAY_AUTH_TOKEN, the file RAY_AUTH_TOKEN_PATH names, or ~/.ray/auth_token. ``ray start --head`` turns token
# mode on by itself when a token exists, but a driver given an explicit address only sends the token under
# RAY_AUTH_MODE=token: without it ``ray.init`` retries ~20 s and fails ("Authentication token is missing");
# with it against a cluster whose authentication is off, the driver's actors die before they run. So the
# driver asks the cluster first and takes the cluster's mode.

AUTH_MODE_ENV = "RAY_AUTH_MODE"
AUTH_PROBE_TIMEOUT_MS = 3000
_HOST_PORT = re.compile(r"[A-Za-z0-9_.\-\[\]:]+:\d+")
# what Ray's C++ client logs for a rejected or unanswered probe: the probe's outcome says it in one line
_PROBE_NOISE = ("InvalidAuthToken", "Authentication token is missing", "Failed to connect to", "Failed to get cluster")
_TOKEN_FIX = (
    "use the head node's token (`ray get-auth-token` on the head prints it) in ~/.ray/auth_token on this machine, "
    "or point RAY_AUTH_TOKEN_PATH at a file holding it, or set RAY_AUTH_TOKEN"
)


@contextlib.contextmanager
def _stderr_without(noise: tuple[str, ...]) -> Iterator[None]:
    """Ray's C++ client logs a rejected probe straight to file descriptor 2: keep what it writes minus ``noise``."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    with tempfile.TemporaryFile() as buf:
        os.dup2(buf.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            buf.seek(0)
            lines = buf.read().decode(errors="replace").splitlines(keepends=True)
            kept = [ln for ln in lines if not any(n in ln for n in noise)]
            if kept:
                sys.stderr.write("".join(kept))
                sys.stderr.flush()


def _set_auth_mode(mode: str) -> None:
    from ray._raylet import Config  # type: ignore[attr-defined]  # _raylet.pyi lists a part of the compiled module only

    os.environ[AUTH_MODE_ENV] = mode
    Config.initialize("")  # re-read RAY_AUTH_MODE, as Ray does when it turns token mode on itself


def _cluster_accepts(address: str) -> bool:
    """Does the cluster's GCS answer this process (in its current auth mode)? False: it rejected the token."""
    from ray._raylet import InnerGcsClient  # type: ignore[attr-defined]  # _raylet.pyi lists a part of the compiled module only
    from ray.exceptions import AuthenticationError

    with _stderr_without(_PROBE_NOISE):
        try:
            InnerGcsClient.standalone(address, None, AUTH_PROBE_TIMEOUT_MS)
        except AuthenticationError:
            return False
    return True


def _token_source() -> str:
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    if os.environ.get("RAY_AUTH_TOKEN_PATH"):
        return f"RAY_AUTH_TOKEN_PATH={os.environ['RAY_AUTH_TOKEN_PATH']}"
    return "~/.ray/auth_token"


def match_cluster_auth(address: str) -> None:
    """Put this driver in the authentication mode of the cluster at ``address`` (HOST:PORT) before ``ray.init``.

    An unauthenticated request the cluster accepts means its authentication is off; one it rejects means it
    wants a token, which Ray then takes from where it looks for one. A missing or rejected token is a
    :class:`RuntimeUnavailable` naming the fix, and so is a cluster that does not answer (``ray.init`` would
    retry for minutes).
    """
    try:
        # a Ray without these names has no token authentication; _raylet.pyi lists a part of the module only
        from ray._raylet import (  # type: ignore[attr-defined]  # noqa: F401
            AuthenticationTokenLoader,
            Config,
            InnerGcsClient,
        )
        from ray.exceptions import AuthenticationError, RpcError
    except ImportError:  # a Ray without token authentication
        return
    saved = os.environ.get(AUTH_MODE_ENV)
    try:
        _set_auth_mode("disabled")
        if _cluster_accepts(address):
            return  # authentication is off on this cluster: sending a token would break the driver's actors
        loader = AuthenticationTokenLoader.instance()
        loader.reset_cache()
        try:
            has_token = loader.has_token(ignore_auth_mode=True)
        except AuthenticationError as exc:  # RAY_AUTH_TOKEN_PATH names a missing or empty file
            raise RuntimeUnavailable(
                f"the Ray cluster at {address} uses token authentication and {str(exc).split('. ')[0]}; {_TOKEN_FIX}"
            ) from None
        if not has_token:
            raise RuntimeUnavailable(
                f"the Ray cluster at {address} uses token authentication and this machine has no token: {_TOKEN_FIX}"
            )
        _set_auth_mode("token")
        if not _cluster_accepts(address):
            raise RuntimeUnavailable(
                f"the Ray cluster at {address} rejected this machine's authentication token (from {_token_source()}): "
                f"{_TOKEN_FIX}"
            )
    except RpcError as exc:
        _restore_auth_mode(saved)
        raise RuntimeUnavailable(
            f"no Ray cluster answers at {address} ({str(exc).splitlines()[0]}); start one there with "
            "ray start --head, or pass its HOST:PORT to --ray-address"
        ) from None
    except RuntimeUnavailable:
        _restore_auth_mode(saved)
        raise
    except Exception as exc:  # another Ray's private API: let ray.init find out for itself
        _restore_auth_mode(saved)
        log.debug("could not probe the Ray cluster's authentication mode: %r", exc)


def _restore_auth_mode(saved: str | None) -> None:
    try:
        if saved is None:
            os.environ.pop(AUTH_MODE_ENV, None)
            from ray._raylet import Config  # type: ignore[attr-defined]  # _raylet.pyi lists a part of the compiled module only

            Config.initialize("")
        else:
            _set_auth_mode(saved)
    except Exception as exc:
        log.debug("could not restore RAY_AUTH_MODE: %r", exc)


def _connect_error(address: str | None, exc: BaseException) -> str:
    """One line for a failed ``ray.init``: the token fix when the cluster refused the token, else Ray's first line."""
    chain: list[BaseException] = []
    e: BaseException | None = exc
    while e is not None and len(chain) < 10:
        chain.append(e)
        e = e.__cause__ or e.__context__
    if any(type(x).__name__ == "AuthenticationError" or "InvalidAuthToken" in str(x) for x in chain):
        return f"the Ray cluster at {address} refused this machine's authentication token: {_TOKEN_FIX}"
    first = next((ln for ln in str(exc).splitlines() if ln.strip()), type(exc).__name__)
    if address == "local":
        return f"cannot start a private Ray on this machine (--ray-address local): {first}"
    return f"cannot connect to the Ray cluster at {address!r}: {first}"


def _resolve_auto() -> str | None:
    """HOST:PORT that ``ray.init(address="auto")`` would join (RAY_ADDRESS, else the cluster ray start left here)."""
    try:
        from ray._private.services import canonicalize_bootstrap_address

        return canonicalize_bootstrap_address("auto")
    except Exception:  # none found (ray.init says so), or another Ray's private API
        return None


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
    from fedsim.jobs.execute import execute_job

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
    single-node Ray started for this run that declares every site it is given in ``check_sites``, plus
    ``site_resources``).

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
        self._site_resources = dict(site_resources or {})
        self._num_cpus = num_cpus
        self._board: Any = None
        # a private Ray starts in check_sites, once the sites it must declare are known
        self._local_pending = address in (None, "local") and not ray.is_initialized()
        if not self._local_pending:
            self._connect(address)
        self._closed = False
        self._lock = threading.Lock()
        self._nodes: list[dict[str, Any]] = []
        self._nodes_at = -NODES_TTL_S
        self._used: dict[str, list[float]] = {}  # node id -> [CPUs, GPUs] our running jobs hold there
        self._placed: dict[str, tuple[str, int]] = {}  # job key -> (node id, GPUs) from admit, for run
        self._warned_cpu_only = False

    def _connect(self, address: str | None) -> None:
        """Join the cluster at ``address`` (``auto``, HOST:PORT) in its authentication mode."""
        try:
            if not ray.is_initialized():
                probe = _resolve_auto() if address in (None, "auto") else address
                if probe and _HOST_PORT.fullmatch(probe):
                    match_cluster_auth(probe)
                ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
                self._owns_ray = True
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
            raise RuntimeUnavailable(_connect_error(address, exc)) from exc
        self._board = _StopBoard.remote()  # type: ignore[attr-defined]

    def _start_local(self, sites: list[SiteSpec]) -> None:
        """The private single-node Ray of ``address="local"``: it declares every site (as many units as the site
        has slots) and this machine's CPUs and GPUs (Ray detects them; CUDA_VISIBLE_DEVICES narrows them)."""
        if not getattr(self, "_local_pending", False):  # (an executor built without __init__, in unit tests)
            return
        self._local_pending = False
        resources = {site_resource(s.name): float(getattr(s.hardware, "slots", 1) or 1) for s in sites}
        resources.update(self._site_resources)
        try:
            ray.init(
                address="local",  # never an existing cluster (``ray.init()`` would join one started by ray start)
                num_cpus=self._num_cpus,
                resources=resources,
                include_dashboard=False,
                logging_level=logging.WARNING,
                log_to_driver=False,
            )
        except (ConnectionError, RuntimeError, ValueError, ray.exceptions.RayError) as exc:
            raise RuntimeUnavailable(_connect_error("local", exc)) from exc
        self._owns_ray = True
        self._board = _StopBoard.remote()  # type: ignore[attr-defined]

    # -- Executor seam -------------------------------------------------------------------------------------

    def check_sites(self, sites: list[SiteSpec]) -> None:
        try:
            self._check_sites(sites)
        except SpecError:
            self.close()  # refused before anything ran: nobody will enter or close this executor
            raise

    def _check_sites(self, sites: list[SiteSpec]) -> None:
        self._start_local(sites)
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
        cluster_gpus = any(n.get("Resources", {}).get("GPU", 0) > 0 for n in nodes)
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
            if gpus and cluster_gpus and not any(n["Resources"].get("GPU", 0) >= gpus for n in hosts):
                raise SpecError(
                    f"site {s.name!r} asks for {gpus} GPUs but no node declaring {res!r} has that many",
                    file=str(s.source or "") or None,
                    field="hardware.gpus",
                )

    def run(self, job: Job, stop_event: threading.Event | None = None) -> JobResult:
        with self._lock:
            placed = self._placed.pop(job.key, None)
        try:
            if self.shared_dir is not None and not job.log_path.resolve().is_relative_to(self.shared_dir):
                return JobResult(
                    job.site, job.name, job.kind.value, job.model, JobStatus.FAILED,
                    reason=f"the run directory is not under the shared directory {self.shared_dir}",
                )  # fmt: skip
            return self._run(job, stop_event, placed)
        finally:
            if placed is not None:
                with self._lock:
                    used = self._used[placed[0]]
                    used[0] -= 1
                    used[1] -= placed[1]

    def _run(self, job: Job, stop_event: threading.Event | None, placed: tuple[str, int] | None) -> JobResult:
        self._start_local([])
        token = f"{job.key}#{uuid.uuid4().hex[:8]}"
        options: dict[str, Any] = {"resources": {site_resource(job.site): SITE_SHARE}, "num_cpus": 1}
        gpus = placed[1] if placed is not None else self._gpus_for(job)
        if gpus:
            options["num_gpus"] = gpus
        elif job.limits.gpus:  # a cluster without GPUs: the job runs on the CPU
            job = dataclasses.replace(job, limits=dataclasses.replace(job.limits, gpus=0))
        if placed is not None:
            options["scheduling_strategy"] = NodeAffinitySchedulingStrategy(placed[0], soft=False)
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
            return ray.get(ref)
        except ray.exceptions.RayError as exc:  # the task died (node lost, worker killed): a record, not a raise
            return JobResult(
                job.site, job.name, job.kind.value, job.model, JobStatus.FAILED,
                reason=f"ray task failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                log=str(job.log_path),
            )  # fmt: skip
        finally:
            if stop_sent:
                self._board.forget.remote(token)

    def _alive_nodes(self) -> list[dict[str, Any]]:
        self._start_local([])  # used without check_sites: the private Ray declares site_resources only
        now = time.monotonic()
        if now - self._nodes_at > NODES_TTL_S:
            try:
                nodes = ray.nodes()
            except Exception as exc:  # the cluster is unreachable: keep the last view, the tasks report it
                log.debug("could not list the Ray nodes: %s", exc)
            else:
                self._nodes = sorted((n for n in nodes if n.get("Alive")), key=lambda n: str(n.get("NodeID")))
            self._nodes_at = now
        return self._nodes

    def _gpus_for(self, job: Job) -> int:
        if not job.limits.gpus:
            return 0
        if not any(n.get("Resources", {}).get("GPU", 0) > 0 for n in self._alive_nodes()):
            if not self._warned_cpu_only:
                log.warning("no GPU in the Ray cluster: GPU jobs run on the CPU")
                self._warned_cpu_only = True
            return 0
        return job.limits.gpus

    def slots(self) -> int:
        nodes = self._alive_nodes()
        hosting = [n for n in nodes if any(k.startswith("site:") for k in n.get("Resources", {}))] or nodes
        return max(1, int(sum(n.get("Resources", {}).get("CPU", 0) for n in hosting)))

    def admit(self, job: Job) -> bool:
        res, gpus = site_resource(job.site), self._gpus_for(job)
        hosts = [
            n
            for n in self._alive_nodes()
            if n.get("Resources", {}).get(res, 0) > 0 and n["Resources"].get("GPU", 0) >= gpus
        ]
        if not hosts:
            return True  # no node can ever run it: Ray reports it as before (check_sites refuses this up front)
        with self._lock:
            free = []
            for n in hosts:
                used = self._used.setdefault(n["NodeID"], [0.0, 0.0])
                cpu, gpu = n["Resources"].get("CPU", 0) - used[0], n["Resources"].get("GPU", 0) - used[1]
                if cpu >= 1 and gpu >= gpus:
                    free.append((cpu, gpu, n["NodeID"]))
            if not free:
                return False
            node = max(free, key=lambda f: (f[0], f[1]))[2]  # the emptiest node (the first of equals)
            self._used[node][0] += 1
            self._used[node][1] += gpus
            self._placed[job.key] = (node, gpus)
        return True

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if self._board is not None:
                ray.kill(self._board)
        except Exception as exc:  # the cluster may already be gone
            log.debug("could not kill the stop board: %s", exc)
        if self._owns_ray:
            ray.shutdown()
            self._owns_ray = False


__all__ = ["RayExecutor", "gpu_ids_from_ray", "site_resource"]
