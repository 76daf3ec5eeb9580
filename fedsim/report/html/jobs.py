"""The Jobs section: the build phase, every job (status, limits hit, peaks, how it was held), the failures with
the last lines of their logs."""

from __future__ import annotations

from html import escape

from fedsim.jobs.job import JobResult
from fedsim.report.html.markup import flag, num, section, size, table
from fedsim.report.runview import RunView, seconds_per_case

__all__ = ["builds", "containment", "image", "images", "jobs", "status"]


def status(job: JobResult) -> str:
    cls = "status-ok" if job.status.finished_ok else "status-bad"
    marker = ""
    if job.output_problems:
        n = len(job.output_problems)
        marker = flag(n, job.num_cases or n, "; ".join(f"{c}: {'; '.join(p)}" for c, p in job.output_problems.items()))
    return f'<span class="{cls}">{escape(job.status.value)}</span>{marker}'


def containment(job: JobResult) -> str:
    """A submission that ran unsandboxed (``none``, only with --allow-unsandboxed) is marked, never blended in."""
    if job.containment == "none" and job.kind == "infer":
        return '<span class="status-bad">none (unsandboxed)</span>'
    return escape(job.containment or "")


def image(job: JobResult) -> str:
    """The image a job ran, by tag and short id (the full id in the tooltip): a ranking traces to containers."""
    if not job.image:
        return ""
    tag, ident = job.image.get("image", ""), job.image.get("image_id", "")
    short = ident.removeprefix("sha256:")[:12]
    title = " · ".join(f"{k}: {v}" for k, v in job.image.items())
    return f'<span title="{escape(title)}">{escape(tag)}{" " + escape(short) if short else ""}</span>'


def images(data: RunView) -> str:
    """Each model's container as it ran: tag, image id, registry digest, and the archive's or SIF's hash."""
    seen: dict[str, dict[str, str]] = {}
    for j in data.jobs:
        if j.kind == "infer" and j.model and j.image and j.model not in seen:
            seen[j.model] = j.image
    if not seen:
        return ""
    rows = [
        [
            escape(model),
            escape(img.get("image", "")),
            escape(img.get("image_id", "")),
            escape(img.get("repo_digest", "")),
            escape(img.get("file_sha256", "")),
        ]
        for model, img in sorted(seen.items())
    ]
    return "<h3>Containers</h3>" + table(
        ["model", "image", "image id", "repo digest", "file sha256"], rows, [""] * len(rows)
    )


def builds(data: RunView) -> str:
    """The images the run prepared before its jobs: what was done, how long it took, what failed."""
    records = data.summary.builds
    if not records:
        return ""
    rows, classes = [], []
    for b in records:
        action = escape(b.action)
        rows.append(
            [
                escape(b.image),
                escape(b.cube),
                escape(b.runtime),
                f'<span class="status-bad">{action}</span>' if b.error else action,
                num(b.seconds, "{:.1f} s"),
                num(b.jobs, "{:d}"),
                escape(b.error or ""),
            ]
        )
        classes.append("failed" if b.error else "")
    total = data.summary.build_s or 0.0
    return (
        f"<h3>Image builds ({total:.1f} s, before the jobs; in no job's duration)</h3>"
        + table(["image", "cube", "runtime", "action", "time", "jobs", "error"], rows, classes)
        + "<h3>Jobs</h3>"
    )


def jobs(data: RunView) -> str:
    header = ["site", "job", "status", "reason", "exit", "duration", "s / case", "peak GPU mem", "peak RAM", "runtime"]
    header += ["containment", "image"]
    rows, classes = [], []
    for j in data.jobs:
        rows.append(
            [
                escape(j.site),
                escape(j.name),
                status(j),
                escape(j.reason),
                num(j.exit_code, "{:d}") if j.exit_code is not None else num(None),
                num(j.duration_s, "{:.1f} s"),
                num(seconds_per_case(j), "{:.2f}"),
                size(j.peak_gpu_memory_bytes),
                size(j.peak_rss_bytes),
                escape(j.runtime or ""),
                containment(j),
                image(j),
            ]
        )
        classes.append("failed" if not j.status.finished_ok else "flagged" if j.output_problems else "")
    failures = []
    for j in data.jobs:
        if j.status.finished_ok:
            continue
        log = data.logs.get(j.key)
        tail = f"<pre>{escape(log.tail)}</pre>" if log is not None and log.tail else '<p class="muted">no log</p>'
        where = f' <span class="muted">({escape(str(log.path))})</span>' if log is not None and log.path else ""
        failures.append(
            f'<div class="failure"><b>{escape(j.site)} / {escape(j.name)}</b> — {status(j)}: {escape(j.reason)}'
            f"<details open><summary>last lines of the log{where}</summary>{tail}</details></div>"
        )
    body = builds(data) + table(header, rows, classes) + images(data)
    if failures:
        body += f"<h3>Failures ({len(failures)})</h3>" + "".join(failures)
    else:
        body += '<p class="status-ok">Every job succeeded.</p>'
    flagged = [j for j in data.jobs if j.output_problems]
    if flagged:
        body += (
            f'<p><span class="flag">⚠ {len(flagged)} succeeded infer job(s) wrote invalid predictions</span> '
            '(listed under <a href="#ranking">Ranking</a>).</p>'
        )
    return section("jobs", "Jobs", body)
