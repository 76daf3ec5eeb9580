"""What the docker runtime costs on top of the work: image builds, per-job container overhead, a whole run.

Run: ``python perf/docker_overhead.py --jobs 20`` (add ``--scratch`` for a from-scratch build time without
touching the shared images, ``--rebuild`` to ``docker rmi`` the ``fedsim/*`` tags and rebuild them, and
``--skip-e2e`` to leave out the end-to-end run). Prints:

(a) image build time of the reference cubes, cached (and from scratch when asked);
(b) launch → exit → cleanup wall time of a no-op job through ``DockerRuntime.launch`` + ``supervise``, the same
    job through ``LocalRuntime``, and a raw SDK ``docker run --rm`` of the same image and command;
(c) wall time of the bundled benchmark with ``--runtime docker`` (optionally with the region_grow model too).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks" / "fets2022-task2"
CUBES = BENCH / "cubes"
REFERENCE = ("data_prep", "metrics", "baseline", "region_grow")
SCRATCH_TAG = "fedsim-perf/scratch-build:0"
NOOP_TAG = "fedsim-perf/noop:0.1"

# The no-op cube shares the reference cubes' apt line, so building it costs a COPY, not an apt install.
NOOP_DOCKERFILE = """\
ARG BASE_IMAGE=debian:bookworm-slim
FROM ${BASE_IMAGE}
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-numpy python3-scipy python3-nibabel python3-yaml && rm -rf /var/lib/apt/lists/*
COPY . /mlcube_project
RUN chmod -R a+rX /mlcube_project
ENTRYPOINT ["python3", "/mlcube_project/mlcube.py"]
"""  # noqa: E501 - the RUN line must stay byte-identical to the reference cubes' to share their layer
NOOP_MLCUBE = f"""\
name: noop
docker: {{image: {NOOP_TAG}, build_context: project, build_file: Dockerfile, build_strategy: auto}}
tasks:
  infer:
    parameters:
      inputs: {{data_path: {{type: directory, default: data/}}}}
      outputs: {{output_path: {{type: directory, default: predictions/}}}}
"""
NOOP_SCRIPT = "import sys\nsys.exit(0)\n"


def _stats(samples: list[float]) -> str:
    s = sorted(samples)
    p90 = s[min(len(s) - 1, round(0.9 * (len(s) - 1)))]
    return f"median {statistics.median(s) * 1000:7.1f} ms  p90 {p90 * 1000:7.1f} ms  (n={len(s)})"


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def build_times(client: Any, *, rebuild: bool, scratch: bool) -> None:
    """(a) Build every reference cube through fedsim's ImageBuilder; cached unless ``--rebuild``."""
    from fedsim.cube import load_cube
    from fedsim.runtimes.images import CUBE_BASE_TAG, ImageBuilder

    print("(a) image builds of the reference cubes")
    if rebuild:
        tags = sorted({t for img in client.images.list() for t in img.tags if t.startswith("fedsim/")})
        for tag in tags:
            client.images.remove(tag, force=True)
        print(f"    removed {len(tags)} fedsim/* tags: {', '.join(tags) or '-'}")
    builder = ImageBuilder(client)
    kind = "after rmi (layers other images share may still be cached)" if rebuild else "cached (layer cache hit)"
    total = 0.0
    base_t = _timed(lambda: builder.ensure_cube_base(None))
    total += base_t
    print(f"    {CUBE_BASE_TAG:<32} {base_t:7.2f} s  ensure_cube_base")
    for name in REFERENCE:
        cube = load_cube(CUBES / name)
        t = _timed(lambda cube=cube: builder.build(cube, None))
        total += t
        assert cube.docker is not None
        print(f"    {cube.docker.image:<32} {t:7.2f} s  build, {kind}")
    print(f"    total {total:.2f} s")
    ready = ImageBuilder(client)
    t = _timed(lambda: [ready.ensure(load_cube(CUBES / n), None) for n in REFERENCE])
    print(f"    ensure() of all {len(REFERENCE)} when present (what a run pays per runtime): {t * 1000:.0f} ms")
    if scratch:
        # A from-scratch build without removing the shared images: no layer cache, a throwaway tag.
        start = time.perf_counter()
        for chunk in client.api.build(
            path=str(CUBES / "baseline" / "project"), tag=SCRATCH_TAG, nocache=True, rm=True, forcerm=True, decode=True
        ):
            if "error" in chunk:
                raise SystemExit(f"scratch build failed: {chunk['error']}")
        scratch_t = time.perf_counter() - start
        client.images.remove(SCRATCH_TAG, force=True)
        print(f"    from scratch (nocache, baseline Dockerfile, apt install included): {scratch_t:.1f} s")
        print("    the other reference cubes share that apt layer, so a fresh engine pays it once, then ~1 s each")


def _noop_cube(tmp: Path) -> Any:
    from fedsim.cube import load_cube

    (tmp / "noop" / "project").mkdir(parents=True)
    (tmp / "noop" / "workspace").mkdir()
    (tmp / "noop" / "mlcube.yaml").write_text(NOOP_MLCUBE)
    (tmp / "noop" / "project" / "Dockerfile").write_text(NOOP_DOCKERFILE)
    (tmp / "noop" / "project" / "mlcube.py").write_text(NOOP_SCRIPT)
    return load_cube(tmp / "noop")


def job_overhead(client: Any, jobs: int) -> None:
    """(b) launch → exit → cleanup of a no-op job: fedsim docker, fedsim local, raw SDK docker run."""
    from fedsim.cube import Isolation, bind
    from fedsim.guard import DeadlineGuard, supervise
    from fedsim.runtimes import LocalRuntime
    from fedsim.runtimes.docker import DockerRuntime, container_config

    with tempfile.TemporaryDirectory(prefix="fedsim-perf-") as tmp_s:
        tmp = Path(tmp_s)
        cube = _noop_cube(tmp)
        docker_rt, local_rt = DockerRuntime(client), LocalRuntime()
        build_t = _timed(lambda: docker_rt.prepare(cube))
        run = f"perf-{uuid.uuid4().hex[:8]}"
        (tmp / "data").mkdir()

        def one(runtime: Any, i: int) -> float:
            inv = bind(
                cube,
                "infer",
                {"data_path": tmp / "data", "output_path": tmp / "out" / str(i)},
                isolation=Isolation(untrusted=True, ram_bytes=2 * 1024**3),
                pinned={"data_path", "output_path"},
                labels={"fedsim.run": run, "fedsim.job": f"noop-{i}"},
            )
            inv.create_directories()
            start = time.perf_counter()
            handle = runtime.launch(inv, tmp / "logs" / f"{runtime.name}-{i}.log", tmp / "work")
            try:
                outcome = supervise(handle, [DeadlineGuard(60)])
            finally:
                handle.cleanup()
            elapsed = time.perf_counter() - start
            if outcome.exit_code != 0:
                raise SystemExit(f"no-op job failed on {runtime.name}: {outcome}")
            return elapsed

        # Same image, command, mounts and hardening as fedsim's container, minus fedsim: the engine's floor.
        inv0 = bind(
            cube,
            "infer",
            {"data_path": tmp / "data", "output_path": tmp / "out" / "raw"},
            isolation=Isolation(untrusted=True, ram_bytes=2 * 1024**3),
            pinned={"data_path", "output_path"},
        )
        inv0.create_directories()
        cfg = container_config(inv0, NOOP_TAG, docker_rt.user)

        def raw_same() -> float:
            from docker.types import Mount

            kwargs = {k: v for k, v in cfg.items() if k not in {"mounts", "detach"}}
            kwargs["mounts"] = [Mount(target=d, source=s, type="bind", read_only=ro) for s, d, ro in cfg["mounts"]]
            kwargs["labels"] = {"fedsim-perf": run}
            return _timed(lambda: client.containers.run(**kwargs, remove=True))

        def raw_true() -> float:
            return _timed(
                lambda: client.containers.run(
                    NOOP_TAG, entrypoint=["true"], remove=True, labels={"fedsim-perf": run}, network_mode="none"
                )
            )

        for warm in range(2):  # warm the page cache and the engine before measuring
            one(docker_rt, -1 - warm)
            raw_true()
        samples: dict[str, list[float]] = {"docker": [], "local": [], "raw": [], "true": []}
        for i in range(jobs):  # interleaved, so drift in the engine hits every variant alike
            samples["docker"].append(one(docker_rt, i))
            samples["local"].append(one(local_rt, i))
            samples["raw"].append(raw_same())
            samples["true"].append(raw_true())
        left = client.containers.list(all=True, filters={"label": f"fedsim.run={run}"})

    print(f"(b) per-job overhead of a no-op job ({jobs} jobs each; image prepare {build_t:.2f} s, excluded)")
    print(f"    fedsim docker  (launch+supervise+cleanup)    {_stats(samples['docker'])}")
    print(f"    fedsim local   (launch+supervise+cleanup)    {_stats(samples['local'])}")
    print(f"    raw SDK run --rm, same image/cmd/hardening   {_stats(samples['raw'])}")
    print(f"    raw SDK run --rm IMAGE true                  {_stats(samples['true'])}")
    ratio = statistics.median(samples["docker"]) / statistics.median(samples["raw"])
    ratio_true = statistics.median(samples["docker"]) / statistics.median(samples["true"])
    extra = statistics.median(samples["docker"]) - statistics.median(samples["local"])
    print(f"    ratio fedsim-docker / raw-docker (medians): {ratio:.2f} (vs 'true': {ratio_true:.2f})")
    print(f"    docker costs {extra * 1000:.0f} ms more per job than local; containers left: {len(left)}")


def e2e(runtime: str, with_region_grow: bool, sites: list[Path]) -> None:
    """(c) The bundled benchmark end to end on the docker runtime (synthesis excluded, cached images)."""
    from fedsim.pipeline.observer import Callbacks
    from fedsim.pipeline.run import RunOptions, run_benchmark

    with tempfile.TemporaryDirectory(prefix="fedsim-perf-e2e-") as tmp_s:
        tmp = Path(tmp_s)
        bench = BENCH / "benchmark.yaml"
        if with_region_grow:
            spec = yaml.safe_load(bench.read_text())
            for part in ("data_prep", "metrics"):
                spec[part]["cube"] = str(BENCH / spec[part]["cube"])
            spec["models"] = [{"name": m["name"], "cube": str(BENCH / m["cube"])} for m in spec["models"]]
            spec["models"].append({"name": "region_grow", "cube": str(CUBES / "region_grow")})
            spec["sites"] = [str((BENCH / s).resolve()) for s in spec["sites"]]
            bench = tmp / "benchmark.yaml"
            bench.write_text(yaml.safe_dump(spec, sort_keys=False))
        start = time.perf_counter()
        report = run_benchmark(
            RunOptions(benchmark=bench, runtime=runtime, runs_dir=tmp / "runs", sites=tuple(sites)),
            Callbacks(on_message=lambda msg: print(f"    {msg}")),
        )
        wall = time.perf_counter() - start
        summary = json.loads((report.run.root / "summary.json").read_text())
        jobs = summary["jobs"]
        bad = [(j["site"], j["name"], j["status"]) for j in jobs if j["status"] != "succeeded"]
        print(f"(c) bundled benchmark, runtime {runtime}: {len(report.sites)} sites, {len(jobs)} jobs")
        print(f"    wall {wall:.1f} s (run_benchmark incl. synthesis/cache), jobs phase {report.duration_s:.1f} s")
        print(f"    job time sum {sum(j['duration_s'] or 0 for j in jobs):.1f} s; failed: {bad or 'none'}")
        by_kind: dict[str, list[float]] = {}
        for j in jobs:
            by_kind.setdefault(j["kind"], []).append(j["duration_s"] or 0.0)
        print("    per kind (median s): " + ", ".join(f"{k} {statistics.median(v):.2f}" for k, v in by_kind.items()))
        infer = {(j["site"], j["model"]): j["duration_s"] or 0.0 for j in jobs if j["kind"] == "infer"}
        for site, cases in report.site_metrics.items():
            dice: dict[str, dict[str, list[float]]] = {}
            for models in cases.values():
                for model, m in models.items():
                    for region in ("WT", "TC", "ET"):
                        dice.setdefault(model, {}).setdefault(region, []).append(m.get(f"Dice_{region}") or 0.0)
            for model, regions in dice.items():
                means = " ".join(f"{r} {statistics.mean(v):.3f}" for r, v in regions.items())
                print(f"    {site} {model:<12} mean Dice {means}  infer {infer.get((site, model), 0):.1f} s")
        if report.ranking is not None:
            print(f"    final ranks: {report.ranking.final_rank}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=20, help="no-op jobs per variant for (b) (at least 20)")
    parser.add_argument("--rebuild", action="store_true", help="docker rmi the fedsim/* tags, then rebuild them")
    parser.add_argument("--scratch", action="store_true", help="also time a nocache build under a throwaway tag")
    parser.add_argument("--skip-e2e", action="store_true", help="leave out (c)")
    parser.add_argument("--region-grow", action="store_true", help="(c): add the region_grow model to the run")
    parser.add_argument("--sites", type=Path, action="append", default=[], help="(c): site files or dirs")
    args = parser.parse_args(argv)
    if args.jobs < 20:
        parser.error("--jobs must be at least 20 for a meaningful p90")
    import docker

    from fedsim.runtimes import docker_available

    if not docker_available():
        print("no Docker engine answers", file=sys.stderr)
        return 1
    client = docker.from_env(timeout=600)
    build_times(client, rebuild=args.rebuild, scratch=args.scratch)
    job_overhead(client, args.jobs)
    if not args.skip_e2e:
        e2e("docker", args.region_grow, args.sites)
    return 0


if __name__ == "__main__":
    sys.exit(main())
