"""The metrics give the host's numbers inside the cube base image (Debian bookworm: numpy 1.24, scipy 1.10,
nibabel 5.0), which is where the metrics cube really runs.

The image under test is built from *this* checkout's ``fedsim`` with the cube base's own Dockerfile text
(the stored ``fedsim/cube-base`` tag holds whatever snapshot built it, and its apt layer is reused from the
build cache). The container runs with no network as ``nobody``; the masks come in as ``.npy`` files.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy import ndimage

pytestmark = pytest.mark.docker

TEST_TAG = "fedsim-test/metrics-debian:current"
SHAPE = (64, 60, 48)

# Runs both on the host (exec) and in the container (python3 /work/snippet.py /work): one code path.
SNIPPET = r"""
import json, sys
from pathlib import Path

import numpy as np
import scipy

from fedsim.metrics import case_metrics, hd95, lesionwise_metrics


def compute(folder):
    folder = Path(folder)
    out = {"versions": {"numpy": np.__version__, "scipy": scipy.__version__}, "cases": {}}
    for truth_path in sorted(folder.glob("*_truth.npy")):
        name = truth_path.name[: -len("_truth.npy")]
        truth = np.load(truth_path)
        pred = np.load(folder / f"{name}_pred.npy")
        row = {"brats": case_metrics(pred, truth)}
        row["brats_fortran"] = case_metrics(np.asfortranarray(pred), np.asfortranarray(truth))
        t23 = np.where(truth == 4, 3, truth).astype(np.uint8)
        p23 = np.where(pred == 4, 3, pred).astype(np.uint8)
        row["lesionwise"] = lesionwise_metrics(p23, t23)
        a, b = pred > 0, truth > 0
        if a.any() and b.any():
            row["hd95_spacing"] = hd95(a, b, voxelspacing=(1.0, 0.8, 2.5))
        out["cases"][name] = row
    row = {"brats": case_metrics(None, np.load(folder / "blobs_truth.npy"))}
    out["cases"]["missing_prediction"] = row
    return out


if __name__ == "__main__":
    print(json.dumps(compute(sys.argv[1])))
"""


def _blob(rng: np.random.Generator, center: np.ndarray, radii: np.ndarray, rough: float) -> np.ndarray:
    grid = np.indices(SHAPE).astype(float)
    dist = np.sqrt((((grid - center[:, None, None, None]) / radii[:, None, None, None]) ** 2).sum(0))
    noise = ndimage.gaussian_filter(rng.standard_normal(SHAPE), 3)
    return dist + rough * noise / (noise.std() + 1e-12) < 1.0


def _labels(wt: np.ndarray, tc: np.ndarray, et: np.ndarray) -> np.ndarray:
    return np.where(et & tc & wt, 4, np.where(tc & wt, 1, np.where(wt, 2, 0))).astype(np.uint8)


def _cases() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(2022)
    c = np.array(SHAPE) / 2
    r = np.array([16.0, 15.0, 12.0])
    cases: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    truth = _labels(_blob(rng, c, r, 0.2), _blob(rng, c, r * 0.6, 0.2), _blob(rng, c, r * 0.4, 0.2))
    shift = c + np.array([1.5, -1.0, 0.5])
    pred = _labels(*(_blob(rng, shift, r * k, rough) for k, rough in ((1.05, 0.25), (0.55, 0.25), (0.45, 0.2))))
    pred[rng.random(SHAPE) < 0.001] = 2  # speckle: extra components far from the surface
    cases["blobs"] = (truth, pred)
    # a far false-positive component: HD95 large enough for the k-d tree fallback
    far = np.roll(truth, 9, axis=0)
    far[55:63, 2:12, 2:14] = 4
    cases["far_fp"] = (truth, far)
    # masks touching the volume border (MedPy's border_value=0 erosion)
    border_t = np.zeros(SHAPE, np.uint8)
    border_t[:10, :, 30:] = 2
    border_t[:4, 10:30, 40:] = 4
    border_p = np.zeros(SHAPE, np.uint8)
    border_p[:8, 3:, 28:] = 2
    border_p[:5, 12:31, 42:] = 4
    cases["border"] = (border_t, border_p)
    empty = np.zeros(SHAPE, np.uint8)
    cases["both_empty"] = (empty, empty)
    cases["truth_empty"] = (empty, pred)
    cases["pred_empty"] = (truth, empty)
    return cases


def _close(host: Any, box: Any, path: str = "") -> list[str]:
    """Paths where the two JSON trees differ by more than 1e-9 (NaN equals NaN, bools and ints exact)."""
    if isinstance(host, dict):
        if not isinstance(box, dict) or set(host) != set(box):
            return [f"{path}: keys {sorted(host)} vs {sorted(box) if isinstance(box, dict) else box!r}"]
        return [p for k in host for p in _close(host[k], box[k], f"{path}.{k}")]
    if isinstance(host, float) and isinstance(box, float):
        same = (math.isnan(host) and math.isnan(box)) or abs(host - box) <= 1e-9
    else:  # bools, counts: exact, and of the same type
        same = host == box and type(host) is type(box)
    return [] if same else [f"{path}: {host!r} vs {box!r}"]


@pytest.fixture(scope="module")
def image() -> Iterator[str]:
    import docker

    from fedsim.runtimes.images import CUBE_BASE_DOCKERFILE, DEFAULT_BASE_IMAGE, ImageBuilder

    client = docker.from_env()
    try:
        # the stored base (its apt layer is what makes the build below a cache hit)
        ImageBuilder(client).ensure_cube_base(None)
        package = Path(__file__).resolve().parents[2] / "fedsim"
        with tempfile.TemporaryDirectory(prefix="fedsim-metrics-debian-") as tmp:
            shutil.copytree(package, Path(tmp) / "fedsim", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            (Path(tmp) / "Dockerfile").write_text(CUBE_BASE_DOCKERFILE)
            client.images.build(
                path=tmp, tag=TEST_TAG, buildargs={"BASE_IMAGE": DEFAULT_BASE_IMAGE}, rm=True, forcerm=True
            )
        yield TEST_TAG
    finally:
        client.close()


@pytest.fixture(scope="module")
def results(image: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, Any], dict[str, Any]]:
    import docker

    folder = tmp_path_factory.mktemp("metrics-debian")
    for name, (truth, pred) in _cases().items():
        np.save(folder / f"{name}_truth.npy", truth)
        np.save(folder / f"{name}_pred.npy", pred)
    (folder / "snippet.py").write_text(SNIPPET)
    folder.chmod(0o755)  # the container user (nobody) must read the bind mount
    for f in folder.iterdir():
        f.chmod(0o644)

    namespace: dict[str, Any] = {"__name__": "snippet"}
    exec(compile(SNIPPET, "snippet.py", "exec"), namespace)
    host = json.loads(json.dumps(namespace["compute"](folder)))  # same float round trip as the container's

    client = docker.from_env()
    name = f"fedsim-test-metrics-debian-{uuid.uuid4().hex[:8]}"
    try:
        stdout = client.containers.run(
            image,
            ["python3", "/work/snippet.py", "/work"],
            name=name,
            network_mode="none",
            user="65534:65534",
            volumes={str(folder): {"bind": "/work", "mode": "ro"}},
            environment={"HOME": "/tmp", "PYTHONDONTWRITEBYTECODE": "1"},
            stdout=True,
            stderr=False,
            remove=True,
        )
    finally:
        with contextlib.suppress(docker.errors.NotFound):  # remove=True normally did it already
            client.containers.get(name).remove(force=True)
        client.close()
    return host, json.loads(stdout)


def test_runs_on_debian_numpy_and_scipy(results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    _, box = results
    numpy_version = tuple(int(x) for x in box["versions"]["numpy"].split(".")[:2])
    scipy_version = tuple(int(x) for x in box["versions"]["scipy"].split(".")[:2])
    assert numpy_version == (1, 24), box["versions"]
    assert scipy_version == (1, 10), box["versions"]


def test_container_matches_host(results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    host, box = results
    assert set(host["cases"]) == set(box["cases"])
    assert _close(host["cases"], box["cases"]) == []


def test_fortran_order_and_edge_rows_in_container(results: tuple[dict[str, Any], dict[str, Any]]) -> None:
    _, box = results
    cases = box["cases"]
    for name, row in cases.items():
        if "brats_fortran" in row:
            assert _close(row["brats"], row["brats_fortran"]) == [], name
    n = int(np.prod(SHAPE))
    both = cases["both_empty"]["brats"]
    for r in ("ET", "TC", "WT"):
        assert (both[f"Dice_{r}"], both[f"Hausdorff95_{r}"], both[f"Sensitivity_{r}"], both[f"Specificity_{r}"]) == (
            1.0,
            0.0,
            1.0,
            1.0,
        )
        assert math.isnan(both[f"Precision_{r}"])
        assert (both[f"TP_{r}"], both[f"FP_{r}"], both[f"TN_{r}"], both[f"FN_{r}"]) == (0, 0, n, 0)
    t_empty = cases["truth_empty"]["brats"]
    p_empty = cases["pred_empty"]["brats"]
    for r in ("ET", "TC", "WT"):
        assert t_empty[f"Hausdorff95_{r}"] == p_empty[f"Hausdorff95_{r}"] == 373.128664
        assert t_empty[f"Dice_{r}"] == p_empty[f"Dice_{r}"] == 0.0
        assert t_empty[f"Precision_{r}"] == 0.0 and math.isnan(p_empty[f"Precision_{r}"])
        assert p_empty[f"Specificity_{r}"] == 1.0
    missing = cases["missing_prediction"]["brats"]
    assert missing["missing_pred"] is True
    assert all(missing[f"Hausdorff95_{r}"] == 374.0 and missing[f"FN_{r}"] == n for r in ("ET", "TC", "WT"))
    far = cases["far_fp"]["brats"]
    assert far["Hausdorff95_ET"] > 6  # beyond the shell search: the k-d tree path ran in the container
