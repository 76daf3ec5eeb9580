"""The HTML report and exports, built from a hand-made run directory (no containers, no run)."""

from __future__ import annotations

import base64
import csv
import io
import json
from html.parser import HTMLParser
from pathlib import Path

import pytest
import yaml

from fedsim.report.html import build_report, write_report

SITES = ("site_x", "site_y")
MODELS = ("good", "okay", "broken")
REGIONS = ("ET", "TC", "WT")
EVIL = "<script>alert('x')</script> & \"quotes\""


def _metrics(dice: float, hd: float, missing: bool = False) -> dict[str, object]:
    out: dict[str, object] = {}
    for r in REGIONS:
        out |= {f"Dice_{r}": dice, f"Hausdorff95_{r}": hd, f"Sensitivity_{r}": dice, f"Specificity_{r}": 1.0}
        out |= {f"Precision_{r}": None if missing else dice, f"TP_{r}": 10, f"FP_{r}": 1, f"TN_{r}": 100, f"FN_{r}": 2}
    out["missing_pred"] = missing
    return out


def make_run(root: Path) -> Path:
    run = root / "run-1"
    jobs = []
    for s_index, site in enumerate(SITES):
        results = {}
        for c in range(3):
            results[f"FeTS22_Patient{c:04d}"] = {
                "good": _metrics(0.9 - 0.05 * c, 1.0 + c),
                "okay": _metrics(0.7 + 0.02 * c * s_index, 3.0),
                "broken": _metrics(0.0, 374.0, missing=True),
            }
        (run / "results").mkdir(parents=True, exist_ok=True)
        (run / "results" / f"{site}.yaml").write_text(yaml.safe_dump(results))
        logs = run / "sites" / site / "logs"
        logs.mkdir(parents=True)
        for model in MODELS:
            ok = model != "broken"
            log = logs / f"infer.{model}.log"
            log.write_text("".join(f"line {i}\n" for i in range(100)) + ("done\n" if ok else f"Traceback\n{EVIL}\n"))
            jobs.append(
                {
                    "site": site, "name": f"infer.{model}", "kind": "infer", "model": model,
                    "status": "succeeded" if ok else "failed", "reason": "" if ok else f"exited with code 1: {EVIL}",
                    "exit_code": 0 if ok else 1, "duration_s": 12.5, "num_cases": 3, "runtime": "local",
                    "peak_rss_bytes": 300 * 2**20, "peak_gpu_memory_bytes": 3 * 2**30 if ok else None,
                    "gpu_ids": ["GPU-1"], "log": f"/elsewhere/{site}/infer.{model}.log",
                }
            )  # fmt: skip
        config = {
            "name": site,
            "runtime": "local",
            "hardware": {"gpus": 1, "gpu_memory_gb": 11, "ram_gb": 32, "cpus": 4},
        }
        config["data"] = {
            "synthesize": {"cases": 3, "seed": s_index, "shift": {"intensity_scale": 1.2, "noise_std": 0.0}}
        }
        (run / "config" / "sites").mkdir(parents=True, exist_ok=True)
        (run / "config" / "sites" / f"{site}.yaml").write_text(yaml.safe_dump(config))
    bench = {
        "name": "unit-bench",
        "models": [{"name": m, "cube": f"cubes/{m}"} for m in MODELS],
        "limits": {"timeout_per_case_s": 180, "gpu_memory_gb": 11, "ram_gb": 40},
        "metrics": {"metric_set": "brats2021"},
        "ranking": {"method": "rankThenMean"},
    }
    (run / "config" / "benchmark.yaml").write_text(yaml.safe_dump(bench))
    summary = {
        "run_id": "run-1", "fedsim_version": "0.1.0", "benchmark": "unit-bench", "sites": list(SITES),
        "models": list(MODELS), "started_at": "2026-01-01T00:00:00Z", "duration_s": 42.0, "interrupted": False,
        "jobs": jobs,
    }  # fmt: skip
    (run / "summary.json").write_text(json.dumps(summary))
    return run


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.images: list[str] = []
        self.tags: list[str] = []
        self.text: list[str] = []
        self.failed_rows = 0
        self.scripts = 0
        self.external: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "img":
            self.images.append(a["src"] or "")
        if tag == "script":
            self.scripts += 1
        if tag == "tr" and a.get("class") == "failed":
            self.failed_rows += 1
        for attr in ("src", "href"):
            value = a.get(attr) or ""
            if value.startswith(("http:", "https:", "//")):
                self.external.append(value)

    def handle_data(self, data: str) -> None:
        self.text.append(data)


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str, _Collector]:
    run = make_run(tmp_path_factory.mktemp("report"))
    files = write_report(run, resamples=200, seed=1)
    assert files.html == run / "report.html"
    html = files.html.read_text(encoding="utf-8")
    parser = _Collector()
    parser.feed(html)
    parser.close()
    return run, html, parser


def test_html_parses_and_is_self_contained(built: tuple[Path, str, _Collector]) -> None:
    _, html, parser = built
    assert html.startswith("<!DOCTYPE html>") and "<style>" in html
    assert {"html", "head", "body", "table", "section", "img"} <= set(parser.tags)
    assert parser.scripts == 0 and parser.external == []
    sections = ("overview", "ranking", "heatmaps", "distributions", "jobs", "configuration")
    assert all(f'id="{s}"' in html for s in sections)


def test_every_model_and_site_appears(built: tuple[Path, str, _Collector]) -> None:
    _, _, parser = built
    text = " ".join(parser.text)
    for name in (*MODELS, *SITES, "unit-bench", "rankThenMean", "timeout_per_case_s"):
        assert name in text, name


def test_images_are_embedded_pngs_that_decode(built: tuple[Path, str, _Collector]) -> None:
    from matplotlib.image import imread

    _, _, parser = built
    # stability + 5 heatmaps (Dice, HD95, sensitivity, specificity, precision) + distributions
    assert len(parser.images) == 7
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        png = base64.b64decode(src.split(",", 1)[1], validate=True)
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        pixels = imread(io.BytesIO(png), format="png")
        assert pixels.ndim == 3 and pixels.shape[0] > 100 and pixels.shape[1] > 100


def test_failures_are_highlighted_and_logs_escaped(built: tuple[Path, str, _Collector]) -> None:
    _, html, parser = built
    assert parser.failed_rows == len(SITES)  # one broken infer per site
    assert parser.scripts == 0
    assert "<script>" not in html
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; &quot;quotes&quot;" in html
    text = "".join(parser.text)
    assert "Traceback\n" + EVIL in text  # the tail of the log, read from the run directory
    assert "line 99" in text and "line 10\n" not in text  # only the tail
    assert "Failures (2)" in text


def test_ranking_and_stability_in_the_report(built: tuple[Path, str, _Collector]) -> None:
    run, _, parser = built
    text = " ".join(parser.text)
    assert "200 bootstrap resamples" in text and "seed 1" in text
    summary = json.loads((run / "summary_report.json").read_text())
    assert summary["ranking"]["algorithms"] == ["good", "okay", "broken"]
    assert summary["ranking"]["final_rank"] == {"good": 1.0, "okay": 2.0, "broken": 3.0}
    stability = summary["stability"]
    assert stability["resamples"] == 200 and stability["seed"] == 1
    assert stability["algorithms"]["broken"]["keep_rate"] == 1.0
    assert sum(stability["algorithms"]["good"]["distribution"].values()) == 200
    assert summary["failures"][0]["status"] == "failed" and summary["jobs"]["by_status"] == {
        "succeeded": 4,
        "failed": 2,
    }
    assert summary["site_means"]["Dice_ET"]["broken"] == {"site_x": 0.0, "site_y": 0.0}
    assert summary["site_means"]["Precision_ET"]["broken"] == {"site_x": None, "site_y": None}


def test_results_long_csv(built: tuple[Path, str, _Collector]) -> None:
    run, _, _ = built
    with (run / "results_long.csv").open(newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == ["site", "case", "model", "region", "metric", "value"]
    # 2 sites × 3 cases × 3 models × (3 regions × 9 metrics + missing_pred)
    assert len(rows) == 2 * 3 * 3 * (3 * 9 + 1)
    assert {r["site"] for r in rows} == set(SITES) and {r["model"] for r in rows} == set(MODELS)
    assert {r["region"] for r in rows} == {"ET", "TC", "WT", ""}
    first = next(r for r in rows if r["site"] == "site_x" and r["model"] == "good" and r["metric"] == "Dice")
    assert first["case"] == "FeTS22_Patient0000" and float(first["value"]) == pytest.approx(0.9)
    na = next(r for r in rows if r["model"] == "broken" and r["metric"] == "Precision")
    assert na["value"] == ""
    missing = next(r for r in rows if r["model"] == "broken" and r["metric"] == "missing_pred")
    assert missing["value"] == "1" and missing["region"] == ""


def test_out_option_and_a_run_without_metrics(tmp_path: Path) -> None:
    run = make_run(tmp_path)
    for path in (run / "results").iterdir():
        path.unlink()
    out = build_report(run, tmp_path / "elsewhere" / "r.html")
    assert out == tmp_path / "elsewhere" / "r.html"
    html = out.read_text()
    assert "nothing to rank" in html and (tmp_path / "elsewhere" / "results_long.csv").is_file()
    assert json.loads((tmp_path / "elsewhere" / "summary_report.json").read_text())["ranking"] is None


def test_missing_summary_is_a_store_error(tmp_path: Path) -> None:
    from fedsim.errors import StoreError

    with pytest.raises(StoreError, match=r"summary\.json"):
        build_report(tmp_path)
