#!/usr/bin/env bash
# Build the fedsim orchestrator image (Dockerfile.orchestrator).
#
# Image builds cannot reach a package index here, so this gathers everything the image pip-installs on the
# host first: a wheel of this checkout plus wheels of every dependency in pyproject.toml that the image does not
# take from Debian (pydantic v2, typer, rich, docker>=7, spython, nvidia-ml-py, ...) for CPython 3.11 — bookworm's
# Python — whatever the host's Python is. numpy, scipy, nibabel, pyyaml and psutil come from Debian
# (the apt lines of Dockerfile.orchestrator); keep DEBIAN below in step with them.
#
#   scripts/build-orchestrator.sh [TAG] [--build-arg BASE_IMAGE=mirror/debian:bookworm-slim ...]
# Env: PYTHON (host python with pip, default python3), FEDSIM_ORCH_CONTEXT (default build/orchestrator).
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
tag="${1:-fedsim/orchestrator:$(cd "$root" && ${PYTHON:-python3} -c 'import fedsim; print(fedsim.__version__)')}"
shift || true
py="${PYTHON:-python3}"
ctx="${FEDSIM_ORCH_CONTEXT:-$root/build/orchestrator}"
case "$(uname -m)" in
  x86_64) plat=(--platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 --platform manylinux_2_28_x86_64) ;;
  aarch64) plat=(--platform manylinux_2_17_aarch64 --platform manylinux2014_aarch64 --platform manylinux_2_28_aarch64) ;;
  *) echo "build-orchestrator: unsupported architecture $(uname -m)" >&2; exit 1 ;;
esac

DEBIAN="numpy scipy nibabel pyyaml psutil"  # not matplotlib: bookworm has 3.6, fedsim's report needs 3.7+
EXTRA="click"  # fedsim/cli/app.py imports click, which recent typer no longer pulls in (undeclared dependency)
wheel_deps() {  # the project's dependencies minus those Debian provides in the image
  (cd "$root" && DEBIAN="$DEBIAN" "$py" - <<'PY'
import os, re
try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11
    from pip._vendor import tomli as tomllib
with open("pyproject.toml", "rb") as fh:
    deps = tomllib.load(fh)["project"]["dependencies"]
skip = set(os.environ["DEBIAN"].split())
# the image is Linux: environment markers hold there, and a marker's spaces would split the shell's word list
deps = [d.split(";")[0].strip() for d in deps]
print(" ".join(d for d in deps if re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0].lower() not in skip))
PY
  )
}

rm -rf "$ctx/wheels" "$ctx/benchmarks" "$ctx/sites"
mkdir -p "$ctx"
# resolve the wheels against what bookworm ships (e.g. matplotlib's deps must accept numpy 1.24)
printf '%s\n' "numpy==1.24.*" "scipy==1.10.*" "pyyaml==6.0.*" "nibabel==5.0.*" "psutil==5.9.*" > "$ctx/debian-constraints.txt"
mkdir -p "$ctx/wheels"
"$py" -m pip wheel -q --no-deps --no-build-isolation -w "$ctx/wheels" "$root" 2>/dev/null \
  || "$py" -m pip wheel -q --no-deps -w "$ctx/wheels" "$root"
"$py" -m pip download -q -d "$ctx/wheels" --only-binary=:all: --python-version 3.11 --implementation cp \
  --abi cp311 "${plat[@]}" -c "$ctx/debian-constraints.txt" $(wheel_deps) $EXTRA
printf '%s\n' fedsim $EXTRA > "$ctx/wheels/requirements.txt"  # by name: Debian's numpy/scipy stay in place
cp -r "$root/fedsim/bundled/benchmarks" "$root/fedsim/bundled/sites" "$ctx/"  # (the top-level ones are symlinks)
find "$ctx/benchmarks" -name __pycache__ -prune -exec rm -rf {} +
docker build -q -f "$root/Dockerfile.orchestrator" -t "$tag" "$@" "$ctx" >/dev/null
echo "$tag"
