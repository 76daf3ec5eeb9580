#!/usr/bin/env bash
# Do two commits give the same numbers? Runs the bundled benchmark with each commit's code (the same runtime, the
# same sites, the same synthetic-data cache) and compares results/, ranking/ and the report's CSV byte for byte.
# Usage: scripts/same-results.sh [BASE_COMMIT] [--runtime docker|local] ; default base: the commit before HEAD's
# session work is not known here, so pass it (e.g. the last landed commit). Exit 0 when identical, 1 otherwise.
set -euo pipefail
cd "$(dirname "$0")/.."
base="${1:-HEAD}"
shift || true
runtime_args=("$@")
work="$(mktemp -d /tmp/fedsim-same.XXXXXX)"
trap 'git worktree remove --force "$work/base" >/dev/null 2>&1 || true; rm -rf "$work"' EXIT
git worktree add --detach "$work/base" "$base" >/dev/null
run() {  # run the bundled benchmark with the fedsim package found in $1, into $2
  (cd "$1" && PYTHONPATH="$1" python -c 'import sys; from fedsim.cli import main; main(sys.argv[1:])' \
    run benchmark --runs-dir "$2" --run-id same "${runtime_args[@]}" >"$2.log" 2>&1) || {
    echo "run with $1 failed:"; tail -20 "$2.log"; exit 1; }
}
run "$work/base" "$work/runs-base"
run "$PWD" "$work/runs-head"
status=0
for part in results ranking; do
  if diff -r "$work/runs-base/same/$part" "$work/runs-head/same/$part" >"$work/$part.diff"; then
    echo "$part/: identical ($(find "$work/runs-head/same/$part" -type f | wc -l) files)"
  else
    echo "$part/: DIFFERENT"; head -40 "$work/$part.diff"; status=1
  fi
done
# the report's numbers: results_long.csv holds every per-case value the report shows
if cmp -s "$work/runs-base/same/results_long.csv" "$work/runs-head/same/results_long.csv"; then
  echo "results_long.csv: identical"
else
  echo "results_long.csv: DIFFERENT"; diff "$work/runs-base/same/results_long.csv" "$work/runs-head/same/results_long.csv" | head -20
  status=1
fi
exit "$status"
