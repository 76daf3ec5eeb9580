"""``fedsim dry-run``: check every submission, concurrently, and export one row per submission.

Checks run in threads; their ``infer`` jobs go through one :class:`LocalExecutor`, whose resource pool lets
them run as CPUs, RAM and (exclusive) GPUs allow. Every check has its own deadline, so one failing or hanging
submission never blocks the others, and an error inside one check becomes that row's ERROR verdict.
"""

from __future__ import annotations

import csv
import io
import os
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from fedsim.errors import FedsimError, SpecError
from fedsim.report.console import LiveDisplay
from fedsim.submission.check import Target, check_submission, resolve_target
from fedsim.submission.locate import cube_location
from fedsim.submission.options import CheckOptions
from fedsim.submission.report import SubmissionReport
from fedsim.submission.toydata import CheckData
from fedsim.yamlsafe import safe_load_file

CSV_COLUMNS = (
    "submission",
    "verdict",
    "reason",
    "seconds_per_case",
    "inference_s",
    "peak_gpu_memory_bytes",
    "peak_ram_bytes",
    "runtime",
    "target",
    "containment",
    "warnings",
    "time_headroom_pct",
    "tightest_site",
)


def load_submissions(path: Path) -> list[Target]:
    """A folder of cube folders (each with ``mlcube.yaml`` or MedPerf's ``container_config.yaml``), or a YAML list
    of entries: a path (relative to the list file: a cube folder or the file declaring it) or image reference, or
    ``{name: ..., cube: PATH}`` / ``{name: ..., image: REF}``."""
    path = Path(path)
    if path.is_dir():
        targets = [resolve_target(str(d)) for d in sorted(path.iterdir()) if d.is_dir() and cube_location(d)]
        if not targets:
            raise SpecError(
                "no cube folder (a folder with mlcube.yaml or container_config.yaml) in this directory",
                file=str(path),
            )
    elif path.is_file():
        entries = safe_load_file(path)
        if isinstance(entries, dict) and "submissions" in entries:
            entries = entries["submissions"]
        if not isinstance(entries, list) or not entries:
            raise SpecError("expected a non-empty YAML list of cubes or images", file=str(path))
        targets = [_entry(e, i, path) for i, e in enumerate(entries)]
    else:
        raise SpecError("no such file or directory", file=str(path), field="SUBMISSIONS")
    names = [t.name for t in targets]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise SpecError(f"submission names must be unique: {', '.join(duplicates)} (give each a name:)", file=str(path))
    return targets


def _entry(entry: Any, index: int, source: Path) -> Target:
    if isinstance(entry, str):
        return resolve_target(entry, base=source.parent)
    if isinstance(entry, dict):
        unknown = set(entry) - {"name", "cube", "image"}
        if unknown or ("cube" in entry) == ("image" in entry):
            raise SpecError(
                "each entry is a path, an image, or {name, cube: PATH} / {name, image: REF}",
                file=str(source),
                field=f"[{index}]",
            )
        name = str(entry["name"]) if entry.get("name") else None
        if "cube" in entry:
            return resolve_target(str(entry["cube"]), base=source.parent, name=name)
        target = resolve_target(str(entry["image"]), base=source.parent, name=name)
        if target.image is None:
            raise SpecError("not an image reference", file=str(source), field=f"[{index}].image")
        return target
    raise SpecError(f"unexpected entry {entry!r}", file=str(source), field=f"[{index}]")


def _error_report(target: Target, options: CheckOptions, data: CheckData, message: str) -> SubmissionReport:
    report = SubmissionReport(target.name, target.spec, limits=options.limits(), data=data.description)
    report.error = message
    return report


def dry_run(
    targets: list[Target],
    options: CheckOptions,
    data: CheckData,
    *,
    on_phase: Any = None,
    stop_event: threading.Event | None = None,
    max_parallel: int | None = None,
    executor: Any = None,
) -> list[SubmissionReport]:
    """Check every target; the reports come back in the targets' order."""
    from fedsim.executors.local import LocalExecutor

    phase = on_phase or (lambda _n, _p: None)
    own = executor is None
    executor = executor or LocalExecutor()

    def one(target: Target) -> SubmissionReport:
        try:
            report = check_submission(target, options, data, executor, on_phase=phase, stop_event=stop_event)
        except FedsimError as exc:
            report = _error_report(target, options, data, str(exc))
        except Exception as exc:  # a bug in one check must not take the others down
            report = _error_report(target, options, data, f"internal error: {type(exc).__name__}: {exc}")
            report.notes.append(traceback.format_exc())
        phase(target.name, report.verdict)
        return report

    workers = max_parallel or 2 * (os.cpu_count() or 1)
    try:
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(targets))), thread_name_prefix="check") as pool:
            return list(pool.map(one, targets))
    finally:
        if own:
            executor.close()


def csv_text(reports: list[SubmissionReport]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for r in reports:
        spc = r.seconds_per_case
        writer.writerow(
            [
                r.submission,
                r.verdict,
                r.reason,
                "" if spc is None else f"{spc:.3f}",
                "" if r.duration_s is None else f"{r.duration_s:.3f}",
                r.peak_gpu_memory_bytes if r.peak_gpu_memory_bytes is not None else "",
                r.peak_rss_bytes if r.peak_rss_bytes is not None else "",
                r.runtime,
                r.target,
                r.containment,
                " | ".join(f"{c.name}: {c.cause}" for c in r.warnings),
                *_tightest(r),
            ]
        )
    return buf.getvalue()


def _tightest(report: SubmissionReport) -> tuple[str, str]:
    """The smallest time headroom over the forecast's sites (in %) and that site; empty without a forecast."""
    sites = report.forecast.sites if report.forecast is not None else ()
    known = [s for s in sites if s.time_margin_pct is not None]
    if not known:
        return "", ""
    worst = min(known, key=lambda s: s.time_margin_pct)
    return f"{worst.time_margin_pct:.1f}", worst.site


def write_exports(reports: list[SubmissionReport], out_dir: Path) -> list[Path]:
    """``dry_run.csv`` (the table) and ``dry_run.json`` (every report in full), written atomically."""
    from fedsim.store import write_json_atomic

    out_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = out_dir / "dry_run.csv", out_dir / "dry_run.json"
    tmp = csv_path.with_name(csv_path.name + ".partial")
    tmp.write_text(csv_text(reports), encoding="utf-8")
    os.replace(tmp, csv_path)
    counts = {v: sum(r.verdict == v for r in reports) for v in ("PASS", "WARN", "FAIL", "ERROR")}
    write_json_atomic(json_path, {"counts": counts, "submissions": [r.to_dict() for r in reports]})
    return [csv_path, json_path]


class DryRunProgress(LiveDisplay):
    """Live view of the checks on a terminal (phase and elapsed time per submission); log lines otherwise."""

    def __init__(self, console: Any, names: list[str]) -> None:
        self.console = console
        self.live_mode = bool(console.is_terminal)
        self._lock = threading.Lock()
        self._state: dict[str, tuple[str, float, float | None]] = {n: ("queued", 0.0, None) for n in names}
        self._started = time.monotonic()
        self._live: Any = None

    def __call__(self, name: str, phase: str) -> None:
        with self._lock:
            now = time.monotonic()
            _, since, _ = self._state.get(name, ("queued", now, None))
            final = phase in {"PASS", "WARN", "FAIL", "ERROR"}
            if self._state.get(name, ("queued",))[0] == "queued":
                since = now
            self._state[name] = (phase, since, now - since if final else None)
            if not self.live_mode:
                done = sum(1 for s, _, d in self._state.values() if d is not None)
                suffix = f" in {now - since:.1f}s  [{done}/{len(self._state)}]" if final else ""
                self.console.print(
                    f"[{now - self._started:7.1f}s] {name:<24} {phase}{suffix}", highlight=False, soft_wrap=True
                )
            elif self._live is not None:
                self._live.update(self._render())

    def _render(self) -> Any:
        from rich.console import Group
        from rich.table import Table
        from rich.text import Text

        from fedsim.submission.render import VERDICT_STYLE

        now = time.monotonic()
        table = Table(show_edge=False)
        table.add_column("submission")
        table.add_column("state")
        table.add_column("time", justify="right")
        for name, (phase, since, duration) in self._state.items():
            elapsed = "" if phase == "queued" else f"{(duration if duration is not None else now - since):.1f}s"
            table.add_row(name, Text(phase, style=VERDICT_STYLE.get(phase, "cyan")), elapsed)
        done = sum(1 for _, _, d in self._state.values() if d is not None)
        head = Text(f"fedsim dry-run: {done}/{len(self._state)} checked · elapsed {now - self._started:.0f}s")
        return Group(head, table)
